package app

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/liveroom/liveroom/internal/bus"
)

// TestServeNATSRequiresCredentials: serve's embedded NATS refuses an
// anonymous client, generates its key file in the data directory (mode
// 0600), and accepts a credential minted from it with the role's
// permissions only.
func TestServeNATSRequiresCredentials(t *testing.T) {
	dir := t.TempDir()
	n := startNodeWith(t, func(c *Config) { c.DataDir = dir })
	if nc, err := nats.Connect(n.NATSURL()); err == nil {
		nc.Close()
		t.Fatal("an anonymous client connected to serve's NATS")
	} else if !errors.Is(err, nats.ErrAuthorization) {
		t.Fatalf("anonymous client: %v, want an authorization violation", err)
	}
	st, err := os.Stat(filepath.Join(dir, "nats.key"))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, want 0600", st.Mode().Perm())
	}
	cred, err := n.NATSCredential(bus.RoleMonitor, "")
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(n.NATSURL(), cred.Option())
	if err != nil {
		t.Fatalf("monitor credential: %v", err)
	}
	defer nc.Close()
	sub, err := nc.SubscribeSync(bus.BeatWildcard)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sub.NextMsg(5 * time.Second); err != nil {
		t.Fatalf("monitor hears no beat: %v", err)
	}
}
