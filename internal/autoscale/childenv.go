package autoscale

import (
	"os"
	"strings"
)

// perProcessEnv are the LIVEROOM_* variables that name one process's own
// things (its addresses, its id, its NATS credential): a gateway child
// never inherits them from the process that starts it.
var perProcessEnv = []string{"ADDR", "PUBLIC_URL", "GATEWAY_ID", "METRICS_ADDR", "INTERNAL_ADDR", "DEBUG_ADDR", "ADMIN_ADDR",
	"NATS_URL", "NATS_USER", "NATS_PASSWORD", "NATS_KEY_FILE"}

// GatewayEnv is the environment of a gateway child process: this process's
// environment without its per-process LIVEROOM_* variables and without the
// variables that set names, then set (NAME=value lines; e.g. the token
// configuration the gateways verify with). Each child then gets its own
// NATS credential (ProcessConfig.ChildEnv, bus.Credential.Env).
func GatewayEnv(set ...string) []string {
	drop := map[string]bool{}
	for _, n := range perProcessEnv {
		drop["LIVEROOM_"+n] = true
	}
	for _, kv := range set {
		name, _, _ := strings.Cut(kv, "=")
		drop[name] = true
	}
	var env []string
	for _, kv := range os.Environ() {
		if name, _, _ := strings.Cut(kv, "="); !drop[name] {
			env = append(env, kv)
		}
	}
	return append(env, set...)
}
