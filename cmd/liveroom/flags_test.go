package main

import (
	"bytes"
	"context"
	"flag"
	"io"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/liveroom/liveroom/internal/gateway"
)

func TestEnvParseErrorsStopTheCommand(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want []string
	}{
		{
			name: "serve duration without unit",
			args: []string{"serve", "--addr", "127.0.0.1:0", "--nats-port", "-1"},
			env:  map[string]string{"LIVEROOM_MERGE_WINDOW": "50"},
			want: []string{`$LIVEROOM_MERGE_WINDOW="50"`, "duration with a unit such as 50ms"},
		},
		{
			name: "serve reports every bad variable",
			args: []string{"serve", "--addr", "127.0.0.1:0", "--nats-port", "-1"},
			env:  map[string]string{"LIVEROOM_VIEWER_BUDGET": "thirty", "LIVEROOM_NATS_PORT": "port", "LIVEROOM_USER_BURST": "1.5"},
			want: []string{`$LIVEROOM_VIEWER_BUDGET="thirty": want a number such as 30`, `$LIVEROOM_NATS_PORT="port": want an integer such as 4222`, `$LIVEROOM_USER_BURST="1.5": want an integer such as 5`},
		},
		{
			name: "serve flag given, environment still wrong",
			args: []string{"serve", "--addr", "127.0.0.1:0", "--nats-port", "-1", "--ping-interval", "10s"},
			env:  map[string]string{"LIVEROOM_PING_INTERVAL": "10"},
			want: []string{`$LIVEROOM_PING_INTERVAL="10"`},
		},
		{
			name: "gateway",
			args: []string{"gateway", "--nats-url", "nats://127.0.0.1:1"},
			env:  map[string]string{"LIVEROOM_MAX_CONNS": "lots"},
			want: []string{`$LIVEROOM_MAX_CONNS="lots": want an integer such as 19000`},
		},
		{
			name: "uplink",
			args: []string{"uplink", "--nats-url", "nats://127.0.0.1:1"},
			env:  map[string]string{"LIVEROOM_ROOM_RATE": "1k"},
			want: []string{`$LIVEROOM_ROOM_RATE="1k": want a number such as 1000`},
		},
		{
			name: "dispatch",
			args: []string{"dispatch", "--nats-url", "nats://127.0.0.1:1"},
			env:  map[string]string{"LIVEROOM_REPLICAS": "three"},
			want: []string{`$LIVEROOM_REPLICAS="three": want an integer such as 1`},
		},
		{
			name: "nats",
			args: []string{"nats", "--port", "-1", "--cluster-port", "-1"},
			env:  map[string]string{"LIVEROOM_NATS_CLUSTER_PORT": "62 22"},
			want: []string{`$LIVEROOM_NATS_CLUSTER_PORT="62 22": want an integer such as 6222`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Without a secret a role refuses to start, and serve would run in
			// dev mode: either way a missing check shows as another answer.
			unsetEnv(t, envSecret)
			t.Setenv("LIVEROOM_DATA_DIR", t.TempDir())
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			// A command that wrongly starts runs until this deadline and
			// returns nil.
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			var out, errOut bytes.Buffer
			err := run(ctx, tt.args, &out, &errOut)
			if err == nil {
				t.Fatalf("run %v with %v = nil, want an error", tt.args, tt.env)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Fatalf("error %q does not mention %q", err, w)
				}
			}
			if out.Len() != 0 {
				t.Fatalf("the command started: %q", out.String())
			}
		})
	}
}

func TestEnvValuesBecomeDefaults(t *testing.T) {
	t.Setenv("LIVEROOM_MERGE_WINDOW", "75ms")
	t.Setenv("LIVEROOM_MAX_CONNS", "0x10")
	t.Setenv("LIVEROOM_VIEWER_BUDGET", "12.5")
	t.Setenv("LIVEROOM_QUEUE_FRAMES", "") // empty counts as unset
	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"gateway", "-h"}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"(default 75ms)", "(default 16)", "(default 12.5)", "(default 64)"} {
		if !strings.Contains(errOut.String(), w) {
			t.Fatalf("gateway -h does not show %q:\n%s", w, errOut.String())
		}
	}
}

func TestEnvs(t *testing.T) {
	t.Setenv("LIVEROOM_T_INT", "7")
	t.Setenv("LIVEROOM_T_BAD", "7s")
	var ev envs
	if got := ev.int("T_INT", 1); got != 7 {
		t.Fatalf("int = %d, want 7", got)
	}
	if got := ev.int("T_UNSET", 3); got != 3 {
		t.Fatalf("unset int = %d, want the default 3", got)
	}
	if err := ev.err(); err != nil {
		t.Fatalf("err = %v after good values", err)
	}
	if got := ev.int("T_BAD", 2); got != 2 {
		t.Fatalf("bad int = %d, want the default 2", got)
	}
	if got := ev.dur("T_INT", time.Second); got != time.Second {
		t.Fatalf("bad duration = %v, want the default", got)
	}
	err := ev.err()
	if err == nil || !strings.Contains(err.Error(), `$LIVEROOM_T_BAD="7s": want an integer such as 2`) ||
		!strings.Contains(err.Error(), `$LIVEROOM_T_INT="7": want a duration with a unit such as 1s`) {
		t.Fatalf("err = %v, want both variables named with the expected form", err)
	}
}

// unsetEnv removes a variable for the test's duration (t.Setenv restores it
// afterwards): unset and set-but-empty mean different things to some flags.
func unsetEnv(t *testing.T, name string) {
	t.Helper()
	t.Setenv(name, "")
	if err := os.Unsetenv(name); err != nil {
		t.Fatal(err)
	}
}

// TestHistoryFlags: the history bounds reach the gateway config, 0 turning
// a kind off (negative there), and are repeated to serve --autoscale's
// gateway processes as given; a bad count is refused.
func TestHistoryFlags(t *testing.T) {
	parse := func(args ...string) (gateway.Config, *flag.FlagSet, error) {
		fs := flag.NewFlagSet("serve", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		c := gateway.DefaultConfig()
		gatewayFlags(newFlagTable(fs, &envs{}), &c)
		return c, fs, fs.Parse(args)
	}
	c, _, err := parse()
	if err != nil || c.HistoryDanmaku != gateway.DefaultHistoryDanmaku || c.HistoryGifts != gateway.DefaultHistoryGifts {
		t.Fatalf("defaults: %d danmaku, %d gifts, %v", c.HistoryDanmaku, c.HistoryGifts, err)
	}
	c, fs, err := parse("--history-danmaku", "0", "--history-gifts", "3")
	if err != nil || c.HistoryDanmaku >= 0 || c.HistoryGifts != 3 {
		t.Fatalf("--history-danmaku 0 --history-gifts 3: %d danmaku, %d gifts, %v", c.HistoryDanmaku, c.HistoryGifts, err)
	}
	if child := childGatewayArgs(fs); !slices.Contains(child, "--history-danmaku=0") || !slices.Contains(child, "--history-gifts=3") {
		t.Fatalf("child args %v", child)
	}
	for _, bad := range []string{"-1", "x", "100000"} {
		if _, _, err := parse("--history-gifts", bad); err == nil {
			t.Errorf("--history-gifts %s accepted", bad)
		}
	}
	t.Setenv("LIVEROOM_HISTORY_GIFTS", "0")
	if c, _, err := parse(); err != nil || c.HistoryGifts >= 0 {
		t.Fatalf("LIVEROOM_HISTORY_GIFTS=0: %d gifts, %v", c.HistoryGifts, err)
	}
}
