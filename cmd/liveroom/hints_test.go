package main

import (
	"context"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/liveroom/liveroom/internal/bus"
	"github.com/liveroom/liveroom/internal/testutil"
)

// TestStartFailuresSayTheFix: serve and nats fail at once when a port is
// taken or their data directory is in use, and say how to get past it.
func TestStartFailuresSayTheFix(t *testing.T) {
	unsetEnv(t, envSecret)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	taken := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	held := t.TempDir()
	e, err := bus.StartEmbedded(bus.EmbeddedConfig{Host: "127.0.0.1", Port: -1, DataDir: held, Logger: testutil.Logger(), Keys: testutil.NATSKeys()})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	inUse := "data directory " + held + " is in use by pid " + strconv.Itoa(os.Getpid())
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"serve: NATS port", []string{"serve", "--addr", "127.0.0.1:0", "--nats-port", taken, "--data-dir", t.TempDir()},
			[]string{"the client port 127.0.0.1:" + taken + " is taken by another process", "choose another port with --nats-port N (--nats-port -1: any free port)"}},
		{"serve: HTTP address", []string{"serve", "--addr", "127.0.0.1:" + taken, "--nats-port", "-1", "--data-dir", t.TempDir()},
			[]string{"cannot listen on 127.0.0.1:" + taken + ": the address is taken by another process", "--addr HOST:PORT"}},
		{"serve: data directory", []string{"serve", "--addr", "127.0.0.1:0", "--nats-port", "-1", "--data-dir", held},
			[]string{inUse, "give this one its own --data-dir"}},
		{"nats: port", []string{"nats", "--port", taken, "--data-dir", t.TempDir()},
			[]string{"the client port 127.0.0.1:" + taken + " is taken", "choose another port with --port N (--port -1: any free port)"}},
		{"nats: cluster port", []string{"nats", "--port", "-1", "--cluster", "lr", "--cluster-port", taken, "--key-file", testutil.NATSKeyFile(t), "--data-dir", t.TempDir()},
			[]string{"the cluster port 127.0.0.1:" + taken + " is taken", "--cluster-port N"}},
		{"nats: data directory", []string{"nats", "--port", "-1", "--data-dir", held}, []string{inUse, "--data-dir"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			err := run(ctx, append(tc.args, "--log-level", "error"), io.Discard, io.Discard)
			if ctx.Err() != nil {
				t.Fatal("the command did not fail at once")
			}
			for _, w := range tc.want {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("err = %v\nwant it to say %q", err, w)
				}
			}
		})
	}
}
