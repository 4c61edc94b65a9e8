package main

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"testing"
)

// flagHelp is one flag as a command's -h prints it.
type flagHelp struct{ name, typ, usage string }

// helpFlags runs `liveroom <cmd> -h` and returns its flags.
func helpFlags(t *testing.T, cmd string) []flagHelp {
	t.Helper()
	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{cmd, "-h"}, &out, &errOut); err != nil {
		t.Fatalf("%s -h: %v", cmd, err)
	}
	var flags []flagHelp
	head := regexp.MustCompile(`^  -([a-z0-9-]+)(?: (\w+))?$`)
	for _, line := range strings.Split(errOut.String(), "\n") {
		if m := head.FindStringSubmatch(line); m != nil {
			flags = append(flags, flagHelp{name: m[1], typ: m[2]})
		} else if len(flags) > 0 && strings.HasPrefix(line, "    \t") {
			flags[len(flags)-1].usage += strings.TrimSpace(line) + " "
		}
	}
	if len(flags) == 0 {
		t.Fatalf("%s -h lists no flag:\n%s", cmd, errOut.String())
	}
	return flags
}

// TestEveryFlagHasItsVariable holds the flag table's rule on every command
// that runs a process: each flag's usage names its variable, which is
// $LIVEROOM_ + the flag's name in capitals (after the command's prefix),
// but for the few that predate the rule; and a string flag's variable
// becomes its default. Secrets read their own variables (--jwt-secret,
// --nats-password) and are not listed with one.
func TestEveryFlagHasItsVariable(t *testing.T) {
	prefix := map[string]string{"nats": "NATS_", "autoscale": "AUTOSCALE_"}
	// The flags outside their command's prefix, and the flags whose
	// variable predates the rule.
	exceptions := map[string]string{
		"gateway/id": "GATEWAY_ID", "dispatch/replicas-dispatch": "DISPATCH_REPLICAS", "serve/replicas-dispatch": "DISPATCH_REPLICAS",
		"nats/data-dir": "DATA_DIR", "nats/log-level": "LOG_LEVEL", "nats/log-format": "LOG_FORMAT",
		"autoscale/addr": "ADDR", "autoscale/nats-url": "NATS_URL", "autoscale/log-level": "LOG_LEVEL", "autoscale/log-format": "LOG_FORMAT",
		"autoscale/kubeconfig": "KUBECONFIG", "autoscale/namespace": "K8S_NAMESPACE", "autoscale/deployment": "K8S_DEPLOYMENT",
		"autoscale/capacity-file": "CAPACITY_FILE", "autoscale/nats-key-file": "NATS_KEY_FILE", "autoscale/nats-user": "NATS_USER",
		"autoscale/nats-ca": "NATS_CA",
	}
	for _, c := range []string{"gateway-max-conns", "gateway-max-cpu", "gateway-max-bytes-out", "gateway-max-msgs-out"} {
		exceptions["autoscale/"+c] = strings.ToUpper(strings.ReplaceAll(c, "-", "_"))
	}
	secrets := map[string]bool{"jwt-secret": true, "nats-password": true}
	varRE := regexp.MustCompile(`\(\$LIVEROOM_([A-Z0-9_]+)\)`)
	for _, cmd := range []string{"serve", "gateway", "uplink", "dispatch", "archive", "autoscale", "nats"} {
		t.Run(cmd, func(t *testing.T) {
			want := map[string]string{}
			for _, f := range helpFlags(t, cmd) {
				if secrets[f.name] {
					continue
				}
				v := prefix[cmd] + strings.ToUpper(strings.ReplaceAll(f.name, "-", "_"))
				if e, ok := exceptions[cmd+"/"+f.name]; ok {
					v = e
				}
				m := varRE.FindAllStringSubmatch(f.usage, -1)
				if len(m) == 0 || m[len(m)-1][1] != v {
					t.Errorf("--%s: usage %q does not end with ($LIVEROOM_%s)", f.name, f.usage, v)
				}
				if f.typ == "string" {
					want[f.name] = v
				}
			}
			for _, v := range want {
				t.Setenv("LIVEROOM_"+v, "probe-"+strings.ToLower(v))
			}
			for _, f := range helpFlags(t, cmd) {
				if v, ok := want[f.name]; ok && !strings.Contains(f.usage, `(default "probe-`+strings.ToLower(v)+`")`) {
					t.Errorf("--%s: $LIVEROOM_%s did not become its default: %q", f.name, v, f.usage)
				}
			}
		})
	}
}
