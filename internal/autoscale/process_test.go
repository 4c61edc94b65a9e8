package autoscale

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/liveroom/liveroom/internal/bus"
	"github.com/liveroom/liveroom/internal/testutil"
)

// TestProcessActuatorRunsRealGateways starts gateway processes of the real
// binary, checks they beat with the ids and URLs the actuator gave them,
// drains one (it exits by itself and leaves the members), and kills one that
// does not exit (SIGSTOP) after the stop timeout.
func TestProcessActuatorRunsRealGateways(t *testing.T) {
	e, _, _ := testutil.StartBackbone(t)
	nc, err := bus.Connect(testutil.NATSURL(t, e, bus.RoleAll, ""), "process-test", testutil.Logger())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	var mu sync.Mutex
	beats := map[string]bus.Beat{}
	sub, _ := nc.Subscribe(bus.BeatWildcard, func(m *nats.Msg) {
		var b bus.Beat
		if json.Unmarshal(m.Data, &b) == nil {
			mu.Lock()
			beats[b.ID] = b
			mu.Unlock()
		}
	})
	defer sub.Unsubscribe()
	beat := func(id string) (bus.Beat, bool) {
		mu.Lock()
		defer mu.Unlock()
		b, ok := beats[id]
		return b, ok
	}

	var out testutil.SyncBuffer
	p, err := NewProcess(ProcessConfig{
		Binary:   testutil.Binary(t),
		Args:     []string{"--nats-url", testutil.NATSURL(t, e, bus.RoleGateway, ""), "--max-conns", "3000", "--drain-delay", "100ms", "--drain-window", "200ms", "--drain-grace", "200ms"},
		Env:      []string{"LIVEROOM_JWT_SECRET=" + testutil.Secret},
		IDPrefix: "pt-", StopTimeout: 500 * time.Millisecond,
		Stdout: &out, Stderr: &out, Logger: testutil.Logger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(time.Second)
	ctx := context.Background()
	if err := p.Add(ctx, 2); err != nil {
		t.Fatal(err)
	}
	ms, _ := p.Members(ctx)
	if len(ms) != 2 || ms[0].ID != "pt-1" || ms[1].ID != "pt-2" {
		t.Fatalf("members %+v, want pt-1 and pt-2", ms)
	}
	testutil.Eventually(t, 30*time.Second, "both children beat", func() bool {
		_, a := beat("pt-1")
		_, b := beat("pt-2")
		return a && b
	})
	b1, _ := beat("pt-1")
	if b1.URL != p.URL("pt-1") || b1.MaxConns != 3000 || !strings.HasPrefix(b1.URL, "ws://127.0.0.1:") {
		t.Errorf("pt-1 beats url %q max_conns %d; actuator says %q", b1.URL, b1.MaxConns, p.URL("pt-1"))
	}

	// Drain pt-1 as the Scaler does: it exits by itself, then Remove.
	req, _ := json.Marshal(bus.Control{Cmd: "drain"})
	if _, err := nc.Request(bus.ControlSubject("pt-1"), req, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 20*time.Second, "the drained child exits and leaves the members", func() bool {
		ms, _ := p.Members(ctx)
		return len(ms) == 1 && ms[0].ID == "pt-2"
	})
	if err := p.Remove(ctx, "pt-1"); err != nil {
		t.Errorf("remove of an exited child: %v", err)
	}

	// A child that does not exit is killed after the stop timeout.
	p.mu.Lock()
	pid := p.children["pt-2"].cmd.Process.Pid
	p.mu.Unlock()
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := p.Remove(ctx, "pt-2"); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < 400*time.Millisecond || took > 10*time.Second {
		t.Errorf("removing a stopped child took %v, want about the 500ms stop timeout", took)
	}
	if ms, _ := p.Members(ctx); len(ms) != 0 {
		t.Errorf("members %+v after removing both", ms)
	}
	if !strings.Contains(out.String(), "drain") {
		t.Errorf("children's output not passed through:\n%s", out.String())
	}
	// Closed: no more children.
	_ = p.Close(time.Second)
	if err := p.Add(ctx, 1); err == nil {
		t.Error("Add after Close: want an error")
	}
}

func TestProcessPorts(t *testing.T) {
	port := testutil.FreePort(t)
	if _, err := NewProcess(ProcessConfig{Binary: "x", PortMin: 10, PortMax: 5}); err == nil {
		t.Error("bad range: want an error")
	}
	p, err := NewProcess(ProcessConfig{Binary: "x", PortMin: port, PortMax: port, Host: "0.0.0.0"})
	if err != nil {
		t.Fatal(err)
	}
	got, err := p.freePort()
	if err != nil || got != port {
		t.Fatalf("freePort = %d, %v; want %d", got, err, port)
	}
	if u := p.publicURL(got); u != "ws://localhost:"+strconv.Itoa(port)+"/v1/ws" {
		t.Errorf("public URL %q for an unspecified host", u)
	}
	p.children["x"] = &child{id: "x", port: port}
	if _, err := p.freePort(); err == nil {
		t.Error("range exhausted: want an error")
	}
}

// TestProcessStartDelay: a child held by StartDelay is a member from the
// moment it was asked for, starts (and beats) only after the delay, and is
// never started when removed while held.
func TestProcessStartDelay(t *testing.T) {
	e, _, _ := testutil.StartBackbone(t)
	nc, err := bus.Connect(testutil.NATSURL(t, e, bus.RoleAll, ""), "process-delay-test", testutil.Logger())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	first := make(chan time.Time, 10)
	sub, _ := nc.Subscribe(bus.BeatWildcard, func(m *nats.Msg) {
		var b bus.Beat
		if json.Unmarshal(m.Data, &b) == nil && b.ID == "sd-1" {
			select {
			case first <- time.Now():
			default:
			}
		}
	})
	defer sub.Unsubscribe()
	const delay = 1500 * time.Millisecond
	p, err := NewProcess(ProcessConfig{
		Binary: testutil.Binary(t), Args: []string{"--nats-url", testutil.NATSURL(t, e, bus.RoleGateway, "")},
		Env: []string{"LIVEROOM_JWT_SECRET=" + testutil.Secret}, IDPrefix: "sd-", StartDelay: delay,
		StopTimeout: 5 * time.Second, Logger: testutil.Logger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(time.Second)
	ctx := context.Background()
	asked := time.Now()
	if err := p.Add(ctx, 2); err != nil {
		t.Fatal(err)
	}
	if ms, _ := p.Members(ctx); len(ms) != 2 || p.PID("sd-1") != 0 || p.URL("sd-1") == "" {
		t.Fatalf("held children: members %+v, pid %d, url %q", ms, p.PID("sd-1"), p.URL("sd-1"))
	}
	// sd-2 is removed while held: it never runs.
	if err := p.Remove(ctx, "sd-2"); err != nil {
		t.Fatal(err)
	}
	select {
	case at := <-first:
		if at.Sub(asked) < delay {
			t.Errorf("sd-1 beat %v after it was asked for, before the %v start delay", at.Sub(asked), delay)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("sd-1 never beat")
	}
	ms, _ := p.Members(ctx)
	if len(ms) != 1 || ms[0].ID != "sd-1" || p.PID("sd-1") == 0 {
		t.Errorf("after the delay: members %+v, pid %d", ms, p.PID("sd-1"))
	}
	if !ms[0].Since.Before(asked.Add(100 * time.Millisecond)) {
		t.Errorf("member since %v: want when it was asked for (%v), not when it started", ms[0].Since, asked)
	}
}
