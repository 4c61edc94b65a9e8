package bus_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/liveroom/liveroom/internal/bus"
	"github.com/liveroom/liveroom/internal/lockfile"
	"github.com/liveroom/liveroom/internal/testutil"
)

func newLogRecorder() (*slog.Logger, *testutil.SyncBuffer) {
	var b testutil.SyncBuffer
	return slog.New(slog.NewTextHandler(&b, &slog.HandlerOptions{Level: slog.LevelDebug})), &b
}

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

// TestCleanCloseIsNoWarning: closing a connection logs no "nats
// disconnected" warning (nats.go reports a Close as a disconnect with a nil
// error); losing the server still does.
func TestCleanCloseIsNoWarning(t *testing.T) {
	e := testutil.StartNATS(t)
	log, buf := newLogRecorder()
	nc, err := bus.Connect(testutil.NATSURL(t, e, bus.RoleUplink, ""), "t", log)
	if err != nil {
		t.Fatal(err)
	}
	nc.Close()
	if strings.Contains(buf.String(), "disconnected") {
		t.Errorf("a clean close logged:\n%s", buf.String())
	}
	nc, err = bus.Connect(testutil.NATSURL(t, e, bus.RoleUplink, ""), "t", log)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	e.Close()
	testutil.Eventually(t, 10*time.Second, "a warning for the lost server", func() bool {
		return strings.Contains(buf.String(), `level=WARN msg="nats disconnected" err=`)
	})
}

// TestRouteDialErrorsWhileForming: a node whose peers are not up yet logs
// its route dial errors at INFO, saying the cluster is forming, never at
// ERROR.
func TestRouteDialErrorsWhileForming(t *testing.T) {
	log, buf := newLogRecorder()
	peer := testutil.FreePort(t)
	_, err := startBounded(t, bus.EmbeddedConfig{Host: "127.0.0.1", Port: -1, DataDir: t.TempDir(), Logger: log, Keys: testutil.NATSKeys(),
		Name: "n1", ClusterName: "lr", ClusterHost: "127.0.0.1", ClusterPort: testutil.FreePort(t), Routes: []string{"nats://" + testutil.Addr(peer)}})
	if err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "a route dial error in the log", func() bool {
		return strings.Contains(buf.String(), "Error trying to connect to route")
	})
	for _, line := range strings.Split(buf.String(), "\n") {
		if strings.Contains(line, "Error trying to connect to route") &&
			(!strings.Contains(line, "level=INFO") || !strings.Contains(line, "the cluster is forming")) {
			t.Errorf("route dial error logged as %q", line)
		}
	}
}

// TestWaitStreamsSaysWhatItWaitsFor: a role waiting for streams nobody
// created says which and why, instead of staying silent.
func TestWaitStreamsSaysWhatItWaitsFor(t *testing.T) {
	e := testutil.StartNATS(t)
	nc, err := bus.Connect(testutil.NATSURL(t, e, bus.RoleGateway, "gw-1"), "t", testutil.Logger())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	log, buf := newLogRecorder()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
	defer cancel()
	err = bus.WaitStreamsExist(ctx, js, log, bus.StreamsOf(bus.RoleGateway)...)
	if err == nil || !strings.Contains(err.Error(), "not created yet") {
		t.Errorf("err = %v", err)
	}
	if got := buf.String(); !strings.Contains(got, `msg="waiting for liveroom's streams" stream=LR_RELIABLE reason="not created yet: an uplink (or serve) creates them"`) {
		t.Errorf("log:\n%s", got)
	}
}
