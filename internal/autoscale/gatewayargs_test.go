package autoscale

import (
	"flag"
	"slices"
	"strings"
	"testing"
)

// TestCapacityGatewayArgs: the args a process actuator gives its children
// parse, as gateway flags, back into the capacity's limits, and a limit
// that is not set is not passed.
func TestCapacityGatewayArgs(t *testing.T) {
	for _, c := range []Capacity{
		{Conns: 3000},
		{Conns: 42, CPU: 1.5, BytesOut: 100e6, MsgsOut: 250000},
		{CPU: 0.25},
		{},
	} {
		args := c.GatewayArgs()
		fs := flag.NewFlagSet("gateway", flag.ContinueOnError)
		conns := fs.Int("max-conns", 0, "")
		cpu := fs.Float64("max-cpu", 0, "")
		bytesOut := fs.Float64("max-bytes-out", 0, "")
		msgsOut := fs.Float64("max-msgs-out", 0, "")
		if err := fs.Parse(args); err != nil {
			t.Fatalf("%+v: args %q do not parse: %v", c, args, err)
		}
		got := Capacity{Conns: *conns, CPU: *cpu, BytesOut: *bytesOut, MsgsOut: *msgsOut}
		if got != c {
			t.Fatalf("args %q parse to %+v, want %+v", args, got, c)
		}
		if c == (Capacity{}) && len(args) != 0 {
			t.Fatalf("no limit, yet args %q", args)
		}
		if c.CPU == 0 && slices.Contains(args, "--max-cpu") {
			t.Fatalf("an unset CPU limit is passed: %q", args)
		}
	}
}

// TestDefaultPolicyIsWhatZeroTakes: the flags' defaults are the policy's
// own, Spare aside (its zero means none).
func TestDefaultPolicyIsWhatZeroTakes(t *testing.T) {
	d := DefaultPolicy()
	z := Policy{Spare: d.Spare}.WithDefaults()
	if d.WithDefaults() != z {
		t.Fatalf("DefaultPolicy %+v resolves to %+v; a zero policy to %+v", d, d.WithDefaults(), z)
	}
}

// TestGatewayEnv: a gateway child inherits the tunables, never the
// starting process's own addresses or NATS credential, and the variables
// given replace the inherited ones.
func TestGatewayEnv(t *testing.T) {
	t.Setenv("LIVEROOM_MERGE_WINDOW", "20ms")
	t.Setenv("LIVEROOM_INTERNAL_ADDR", "127.0.0.1:9090")
	t.Setenv("LIVEROOM_ADDR", ":8080")
	t.Setenv("LIVEROOM_NATS_PASSWORD", "serve's own")
	t.Setenv("LIVEROOM_JWT_SECRET", "old")
	env := GatewayEnv("LIVEROOM_JWT_SECRET=new")
	count := func(prefix string) int {
		n := 0
		for _, kv := range env {
			if strings.HasPrefix(kv, prefix) {
				n++
			}
		}
		return n
	}
	for _, c := range []struct {
		prefix string
		want   int
	}{
		{"LIVEROOM_MERGE_WINDOW=20ms", 1}, {"LIVEROOM_INTERNAL_ADDR=", 0}, {"LIVEROOM_ADDR=", 0},
		{"LIVEROOM_NATS_PASSWORD=", 0}, {"LIVEROOM_JWT_SECRET=", 1}, {"LIVEROOM_JWT_SECRET=new", 1},
	} {
		if got := count(c.prefix); got != c.want {
			t.Errorf("%d variables %s…, want %d", got, c.prefix, c.want)
		}
	}
}
