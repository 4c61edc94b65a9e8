package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/liveroom/liveroom/internal/autoscale"
	"github.com/liveroom/liveroom/internal/bus"
	"github.com/liveroom/liveroom/internal/gateway"
	"github.com/liveroom/liveroom/internal/testutil"
)

func parsePolicy(t *testing.T, args ...string) (autoscale.Policy, error) {
	t.Helper()
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var ev envs
	var pf policyFlags
	pf.register(newFlagTable(fs, &ev), "autoscale-")
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	if err := ev.err(); err != nil {
		return autoscale.Policy{}, err
	}
	return pf.policy(autoscale.Capacity{})
}

func TestPolicyFlags(t *testing.T) {
	file := filepath.Join(t.TempDir(), "capacity.json")
	if err := os.WriteFile(file, []byte(`{"conns":12000,"cpu":1.5,"bytes_out":4e7,"msgs_out":500000,"target_utilisation":0.6,"steps":[]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name  string
		env   map[string]string
		args  []string
		want  autoscale.Capacity
		min   int
		max   int
		spare int
		err   string
	}{
		{name: "defaults", want: autoscale.Capacity{Conns: 19000, Target: 0.7}, min: 1, max: 10, spare: 1},
		{name: "no spare", args: []string{"--autoscale-spare", "0"}, want: autoscale.Capacity{Conns: 19000, Target: 0.7}, min: 1, max: 10},
		{name: "spare variable", env: map[string]string{"LIVEROOM_AUTOSCALE_SPARE": "3"}, want: autoscale.Capacity{Conns: 19000, Target: 0.7}, min: 1, max: 10, spare: 3},
		{name: "negative spare", args: []string{"--autoscale-spare", "-1"}, err: "spare"},
		{name: "flags", args: []string{"--gateway-max-conns", "3000", "--autoscale-min", "2", "--autoscale-max", "4"},
			want: autoscale.Capacity{Conns: 3000, Target: 0.7}, min: 2, max: 4, spare: 1},
		{name: "the file", args: []string{"--capacity-file", file},
			want: autoscale.Capacity{Conns: 12000, CPU: 1.5, BytesOut: 4e7, MsgsOut: 500000, Target: 0.6}, min: 1, max: 10, spare: 1},
		{name: "flags override the file", args: []string{"--capacity-file", file, "--gateway-max-conns", "3000", "--autoscale-target", "0.8"},
			want: autoscale.Capacity{Conns: 3000, CPU: 1.5, BytesOut: 4e7, MsgsOut: 500000, Target: 0.8}, min: 1, max: 10, spare: 1},
		{name: "variables override the file", env: map[string]string{"LIVEROOM_GATEWAY_MAX_CPU": "2", "LIVEROOM_CAPACITY_FILE": file},
			want: autoscale.Capacity{Conns: 12000, CPU: 2, BytesOut: 4e7, MsgsOut: 500000, Target: 0.6}, min: 1, max: 10, spare: 1},
		{name: "bad target", args: []string{"--autoscale-target", "1.5"}, err: "target"},
		{name: "min above max", args: []string{"--autoscale-min", "5", "--autoscale-max", "2"}, err: "min"},
		{name: "missing file", args: []string{"--capacity-file", file + ".none"}, err: "capacity file"},
		{name: "bad variable", env: map[string]string{"LIVEROOM_AUTOSCALE_MAX": "four"}, err: "AUTOSCALE_MAX"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			p, err := parsePolicy(t, tc.args...)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want one about %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p.Capacity != tc.want || p.Min != tc.min || p.Max != tc.max || p.Spare != tc.spare {
				t.Errorf("policy %+v (min %d max %d spare %d), want %+v (min %d max %d spare %d)", p.Capacity, p.Min, p.Max, p.Spare, tc.want, tc.min, tc.max, tc.spare)
			}
		})
	}
}

func TestParsePorts(t *testing.T) {
	if lo, hi, err := parsePorts("9100-9199"); err != nil || lo != 9100 || hi != 9199 {
		t.Errorf("parsePorts = %d, %d, %v", lo, hi, err)
	}
	if lo, hi, err := parsePorts(""); err != nil || lo != 0 || hi != 0 {
		t.Errorf("empty: %d, %d, %v", lo, hi, err)
	}
	for _, bad := range []string{"9100", "9199-9100", "a-b", "0-10", "1-70000"} {
		if _, _, err := parsePorts(bad); err == nil {
			t.Errorf("parsePorts(%q): want an error", bad)
		}
	}
}

func TestServeGatewayArgsForChildren(t *testing.T) {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	var ev envs
	fs.String("addr", ":8080", "")
	gatewayFlags(newFlagTable(fs, &ev), &gateway.Config{})
	var lf logFlags
	lf.register(newFlagTable(fs, &ev))
	if err := fs.Parse([]string{"--addr", ":9", "--drain-window", "3s", "--merge-window=20ms", "--log-format", "json"}); err != nil {
		t.Fatal(err)
	}
	got := childGatewayArgs(fs)
	want := []string{"--drain-window=3s", "--log-format=json", "--merge-window=20ms"}
	if !slices.Equal(got, want) {
		t.Errorf("child args %q, want %q (serve's own flags stay out)", got, want)
	}
}

// TestAutoscaleCommand runs `liveroom autoscale` (dry-run) against a NATS
// with two pretend gateways beating, and reads its decisions and metrics.
func TestAutoscaleCommand(t *testing.T) {
	e := testutil.StartNATS(t)
	nc, err := bus.Connect(testutil.NATSURL(t, e, bus.RoleGateway, ""), "test", testutil.Logger())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			for _, id := range []string{"g1", "g2"} {
				b, _ := json.Marshal(bus.Beat{ID: id, URL: "ws://127.0.0.1:1/v1/ws", State: bus.StateActive, Conns: 2900, IntervalMS: 1000, Started: 1})
				_ = nc.Publish(bus.BeatSubject(id), b)
			}
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
	port := testutil.FreePort(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	stderr := &lockedWriter{w: &bytes.Buffer{}}
	go func() {
		done <- run(ctx, []string{"autoscale", "--nats-url", testutil.NATSURL(t, e, bus.RoleAutoscale, ""), "--addr", testutil.Addr(port),
			"--gateway-max-conns", "3000", "--max", "5", "--interval", "100ms"}, io.Discard, stderr)
	}()
	base := "http://" + testutil.Addr(port)
	var ans autoscale.DecisionsAnswer
	testutil.Eventually(t, 10*time.Second, "a scale-out decision", func() bool {
		resp, err := http.Get(base + autoscale.DecisionsPath)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		ans = autoscale.DecisionsAnswer{}
		return json.NewDecoder(resp.Body).Decode(&ans) == nil && ans.Latest != nil && ans.Latest.Action == autoscale.ActionScaleOut &&
			ans.Latest.Current == 2
	})
	// 5,800 connections at 2,100 per gateway: three, and the default spare:
	// four; two beat.
	if d := ans.Latest; d.Desired != 4 || d.Figures.Spare != 1 || d.Current != 2 || d.Reason != autoscale.DimConns || ans.Policy.Actuator != "dry-run" {
		t.Errorf("latest %+v, policy %+v", d, ans.Policy)
	}
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `liveroom_autoscale_decisions_total{action="scale_out",reason="conns"}`) ||
		!strings.Contains(string(body), "liveroom_autoscale_desired_gateways 4") {
		t.Errorf("metrics lack the decision:\n%s", body)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("autoscale: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("autoscale did not stop")
	}
	if !strings.Contains(stderr.String(), "dry-run: would start gateways") {
		t.Errorf("log lacks the dry-run action:\n%s", stderr.String())
	}
}

func TestAutoscaleCommandErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"autoscale", "--actuator", "magic", "--nats-url", "nats://127.0.0.1:1"}, "--actuator"},
		{[]string{"autoscale", "--min", "3", "--max", "2"}, "min"},
		{[]string{"autoscale", "--target", "0"}, "target"},
	} {
		err := run(context.Background(), tc.args, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: err %v, want one about %q", tc.args, err, tc.want)
		}
	}
}

// lockedWriter serialises writes to w and reads of it.
type lockedWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func (l *lockedWriter) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.String()
}
