package autoscale

import (
	"flag"
	"slices"
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
