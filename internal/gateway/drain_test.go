package gateway

import (
	"context"
	"encoding/json"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/liveroom/liveroom/internal/bus"
	"github.com/liveroom/liveroom/internal/protocol"
	"github.com/liveroom/liveroom/internal/testutil"
)

func TestDrainSpreadsReconnectsAndClosesStragglers(t *testing.T) {
	e := newEnv(t)
	g := e.gateway(func(c *Config) {
		c.DrainWindow = time.Second
		c.DrainDelay = 100 * time.Millisecond
		c.DrainGrace = 300 * time.Millisecond
		c.DrainRate = 1000
	})
	beats := make(chan bus.Beat, 64)
	sub, err := e.nc.Subscribe(bus.BeatWildcard, func(m *nats.Msg) {
		var b bus.Beat
		if json.Unmarshal(m.Data, &b) == nil && b.ID == g.ID() {
			select {
			case beats <- b:
			default:
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	const n = 40
	var vs []*viewer
	for i := range n {
		v := g.dial(t, "r"+strconv.Itoa(i%4), "v"+strconv.Itoa(i), "")
		defer v.close()
		v.welcome(t)
		vs = append(vs, v)
	}
	done := make(chan error, 1)
	go func() { done <- g.Drain(context.Background()) }()

	// The draining state is announced at once (not at the next beat).
	testutil.Eventually(t, 5*time.Second, "a draining beat", func() bool {
		select {
		case b := <-beats:
			return b.State == bus.StateDraining
		default:
			return false
		}
	})
	// New upgrades are refused with 503 draining.
	checkUpgradeError(t, g, "room=r0&token="+testutil.Token(t, "late", protocol.RoleViewer), true, 503, protocol.CodeDraining)

	// Every viewer is told to reconnect, at times spread over the window.
	var afters []int64
	for i, v := range vs {
		typ, raw := v.next(t, 5*time.Second)
		for typ == protocol.FrameBatch {
			typ, raw = v.next(t, 5*time.Second)
		}
		if typ != protocol.FrameReconnect {
			t.Fatalf("viewer %d got %s %s, want reconnect", i, typ, raw)
		}
		var rc protocol.Reconnect
		_ = json.Unmarshal(raw, &rc)
		afters = append(afters, rc.AfterMS)
		// Half the viewers leave as told; the others stay and must be closed.
		if i%2 == 0 {
			v.close()
		}
	}
	sort.Slice(afters, func(i, j int) bool { return afters[i] < afters[j] })
	if afters[0] != 0 || afters[n-1] < 900 || afters[n-1] > 1000 {
		t.Fatalf("reconnect times %v, want spread over [0, 1000) ms", afters)
	}
	for i := 1; i < n; i++ {
		if afters[i]-afters[i-1] < 1 { // 1000 / s rate: at least 1 ms apart
			t.Fatalf("two viewers told to reconnect at the same time: %v", afters)
		}
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("drain did not finish")
	}
	if g.Stats().Conns.Load() != 0 {
		t.Fatalf("%d connections left after the drain", g.Stats().Conns.Load())
	}
	if closed := g.Stats().DrainClosed.Load(); closed < n/2-2 || closed > n/2 {
		t.Fatalf("drain closed %d stragglers, want the %d that stayed", closed, n/2)
	}
	select {
	case <-g.Drained():
	default:
		t.Fatal("Drained not closed")
	}
}

func TestDrainThroughControlSubject(t *testing.T) {
	e := newEnv(t)
	g := e.gateway(func(c *Config) { c.DrainDelay = 10 * time.Millisecond; c.DrainWindow = 10 * time.Millisecond })
	req, _ := json.Marshal(bus.Control{Cmd: "drain"})
	m, err := e.nc.Request(bus.ControlSubject(g.ID()), req, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var r bus.ControlReply
	if err := json.Unmarshal(m.Data, &r); err != nil || r.State != bus.StateDraining || r.Gateway != g.ID() {
		t.Fatalf("reply %s", m.Data)
	}
	select {
	case <-g.Drained():
	case <-time.After(10 * time.Second):
		t.Fatal("not drained")
	}
	bad, _ := json.Marshal(bus.Control{Cmd: "explode"})
	m, err = e.nc.Request(bus.ControlSubject(g.ID()), bad, 5*time.Second)
	if err != nil || !json.Valid(m.Data) || json.Unmarshal(m.Data, &r) != nil || r.Error == "" {
		t.Fatalf("unknown command answered %s %v", m.Data, err)
	}
}
