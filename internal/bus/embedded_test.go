package bus_test

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/liveroom/liveroom/internal/bus"
	"github.com/liveroom/liveroom/internal/lockfile"
	"github.com/liveroom/liveroom/internal/testutil"
)

// startBounded runs StartEmbedded and fails the test if it has not
// returned within 20 s: a failed start must not wait for the 30 s
// readiness timeout.
func startBounded(t *testing.T, cfg bus.EmbeddedConfig) (*bus.Embedded, error) {
	t.Helper()
	type result struct {
		e   *bus.Embedded
		err error
	}
	done := make(chan result, 1)
	go func() {
		e, err := bus.StartEmbedded(cfg)
		done <- result{e, err}
	}()
	select {
	case r := <-done:
		if r.e != nil {
			t.Cleanup(r.e.Close)
		}
		return r.e, r.err
	case <-time.After(20 * time.Second):
		t.Fatal("StartEmbedded still waiting after 20 s")
		return nil, nil
	}
}

// TestStartEmbeddedPortTaken: a client or cluster port another process
// holds fails at once, naming the port.
func TestStartEmbeddedPortTaken(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	taken := ln.Addr().(*net.TCPAddr).Port
	for _, tc := range []struct {
		name     string
		cfg      bus.EmbeddedConfig
		listener string
	}{
		{"client", bus.EmbeddedConfig{Port: taken}, "client"},
		{"cluster", bus.EmbeddedConfig{Port: -1, ClusterName: "lr", ClusterHost: "127.0.0.1", ClusterPort: taken}, "cluster"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			cfg.Host, cfg.DataDir, cfg.Logger, cfg.Keys = "127.0.0.1", t.TempDir(), testutil.Logger(), testutil.NATSKeys()
			_, err := startBounded(t, cfg)
			var le *bus.ListenError
			if !errors.As(err, &le) || !le.Taken() || le.Listener != tc.listener || le.Addr != testutil.Addr(taken) {
				t.Fatalf("err = %v, want a taken %s port %d", err, tc.listener, taken)
			}
			if !strings.Contains(err.Error(), "port "+testutil.Addr(taken)+" is taken by another process") {
				t.Errorf("message %q", err)
			}
			// The failed start released the data directory.
			cfg.Port, cfg.ClusterName = -1, ""
			if _, err := startBounded(t, cfg); err != nil {
				t.Errorf("start on the same data directory after the failure: %v", err)
			}
		})
	}
}

// TestStartEmbeddedFatalFailsAtOnce: a server that cannot start (here its
// JetStream store cannot be created) fails with the server's own reason,
// not after the 30 s readiness timeout with none.
func TestStartEmbeddedFatalFailsAtOnce(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "jetstream"), []byte("not a directory"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := startBounded(t, bus.EmbeddedConfig{Host: "127.0.0.1", Port: -1, DataDir: dir, Logger: testutil.Logger(), Keys: testutil.NATSKeys()})
	if err == nil || !strings.Contains(err.Error(), "JetStream") {
		t.Fatalf("err = %v, want the server's JetStream error", err)
	}
}

// TestDataDirLocked: a second server on a data directory in use fails at
// once, naming the process that holds it; once the first stops, the
// directory is free.
func TestDataDirLocked(t *testing.T) {
	dir := t.TempDir()
	cfg := bus.EmbeddedConfig{Host: "127.0.0.1", Port: -1, DataDir: dir, Logger: testutil.Logger(), Keys: testutil.NATSKeys()}
	first, err := bus.StartEmbedded(cfg)
	if err != nil {
		t.Fatal(err)
	}
	_, err = startBounded(t, cfg)
	var held *lockfile.HeldError
	if !errors.As(err, &held) || held.PID != os.Getpid() || !strings.Contains(err.Error(), "data directory "+dir+" is in use by pid ") {
		t.Fatalf("second server: %v, want the directory held by this process", err)
	}
	first.Close()
	if _, err := startBounded(t, cfg); err != nil {
		t.Fatalf("after the first stopped: %v", err)
	}
}
