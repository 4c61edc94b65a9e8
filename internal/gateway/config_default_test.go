package gateway

import (
	"reflect"
	"testing"
	"time"
)

// TestDefaultConfigIsWhatZeroTakes: a gateway started from DefaultConfig
// (as the command line's flags are) runs with exactly the tunables of one
// started from a zero Config, derived ones included (IdleTimeout follows
// PingInterval, so DefaultConfig must leave it zero).
func TestDefaultConfigIsWhatZeroTakes(t *testing.T) {
	z, d := Config{ID: "gw-a"}, DefaultConfig()
	d.ID = "gw-a"
	if err := z.resolve(); err != nil {
		t.Fatal(err)
	}
	if err := d.resolve(); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(z, d) {
		t.Fatalf("from DefaultConfig:\n%+v\nfrom zero:\n%+v", d, z)
	}
	// A flag that changes the ping interval still moves the idle timeout.
	p := DefaultConfig()
	p.PingInterval = 4 * time.Second
	if err := p.resolve(); err != nil {
		t.Fatal(err)
	}
	if p.IdleTimeout != 10*time.Second {
		t.Fatalf("idle timeout %v with pings every 4s, want 10s", p.IdleTimeout)
	}
}
