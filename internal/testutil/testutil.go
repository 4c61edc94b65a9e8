// Package testutil holds helpers shared by liveroom tests: a real embedded
// NATS server on a random port, polling with a deadline, and token minting.
package testutil

import (
	"context"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/liveroom/liveroom/internal/auth"
	"github.com/liveroom/liveroom/internal/bus"
	"github.com/liveroom/liveroom/internal/protocol"
)

// Secret is the HS256 secret tests sign tokens with.
const Secret = "liveroom-test-secret-0123456789"

// Logger returns a logger that is silent unless LIVEROOM_TEST_LOG is set.
func Logger() *slog.Logger {
	if os.Getenv("LIVEROOM_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// NATSKey is the NATS authentication key of the servers tests start
// (StartNATS): tests authenticate like production, with per-role
// credentials and permissions.
const NATSKey = "liveroom-test-nats-key-0123456789abcdef"

// NATSKeys is NATSKey as bus.Keys.
func NATSKeys() bus.Keys { return bus.Keys{[]byte(NATSKey)} }

// StartNATS starts an embedded NATS server with JetStream on a random port,
// authentication on (NATSKey), and stops it when the test ends.
func StartNATS(t testing.TB) *bus.Embedded {
	t.Helper()
	e, err := bus.StartEmbedded(bus.EmbeddedConfig{
		Host:    "127.0.0.1",
		Port:    -1,
		DataDir: t.TempDir(),
		Logger:  Logger(),
		Keys:    NATSKeys(),
	})
	if err != nil {
		t.Fatalf("start nats: %v", err)
	}
	t.Cleanup(e.Close)
	return e
}

// NATSKeyFile writes NATSKey into a key file (mode 0600) for processes
// started by a test: NATS nodes take it as --key-file, roles as
// $LIVEROOM_NATS_KEY_FILE.
func NATSKeyFile(t testing.TB) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "nats.key")
	if err := os.WriteFile(p, []byte(NATSKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// NATSURL is the URL of e with the credential of role (and gateway id)
// in it, for a connection or a role process's --nats-url.
func NATSURL(t testing.TB, e *bus.Embedded, role bus.Role, id string) string {
	t.Helper()
	return CredURL(t, e.ClientURL(), role, id)
}

// CredURL puts the credential of role (and gateway id), minted from
// NATSKey, into a NATS URL.
func CredURL(t testing.TB, natsURL string, role bus.Role, id string) string {
	t.Helper()
	c, err := NATSKeys().Credential(role, id)
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(natsURL)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(c.User, c.Password)
	return u.String()
}

// Verifier returns a verifier for Secret.
func Verifier(t testing.TB) *auth.Verifier {
	t.Helper()
	v, err := auth.NewHS256([]byte(Secret), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// Token mints a token for user with role, signed with Secret.
func Token(t testing.TB, user, role string) string {
	t.Helper()
	s, err := auth.NewSigner([]byte(Secret))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := s.Mint(protocol.User(user), user, role, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// Eventually polls cond every 10ms until it is true or timeout passes, then
// fails the test with msg. Use it instead of sleeping.
func Eventually(t testing.TB, timeout time.Duration, msg string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v: %s", timeout, msg)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// StartBackbone starts an embedded NATS server, connects to it and creates
// liveroom's streams and buckets; everything stops when the test ends.
func StartBackbone(t testing.TB) (*bus.Embedded, *nats.Conn, jetstream.JetStream) {
	t.Helper()
	e := StartNATS(t)
	nc, err := nats.Connect(NATSURL(t, e, bus.RoleAll, ""))
	if err != nil {
		t.Fatalf("connect nats: %v", err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := bus.EnsureStreams(ctx, js, bus.StreamConfig{}); err != nil {
		t.Fatalf("ensure streams: %v", err)
	}
	return e, nc, js
}
