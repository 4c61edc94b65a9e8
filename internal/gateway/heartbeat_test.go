package gateway

import (
	"testing"
	"time"

	"github.com/liveroom/liveroom/internal/protocol"
	"github.com/liveroom/liveroom/internal/testutil"
)

// TestHeartbeatsReachViewersOfAQuietRoom: the welcome promises a frame every
// hb_ms, and a viewer of a room where nothing happens gets heartbeats.
func TestHeartbeatsReachViewersOfAQuietRoom(t *testing.T) {
	e := newEnv(t)
	g := e.gateway(func(c *Config) { c.HeartbeatInterval = 200 * time.Millisecond })
	v := g.dial(t, "quiet", "v1", "")
	defer v.close()
	v.heartbeats = true
	if w := v.welcome(t); w.HeartbeatMS != 200 {
		t.Fatalf("welcome hb_ms = %d, want 200", w.HeartbeatMS)
	}
	for i := range 3 {
		typ, raw := v.next(t, 5*time.Second)
		for typ == protocol.FrameBatch { // an online count
			typ, raw = v.next(t, 5*time.Second)
		}
		if typ != protocol.FrameHeartbeat || string(raw) != `{"type":"hb"}` {
			t.Fatalf("frame %d of a quiet room: %q %s, want a heartbeat", i, typ, raw)
		}
	}
	if n := g.Stats().Heartbeats.Load(); n < 3 {
		t.Fatalf("heartbeats counted %d, want at least the 3 read", n)
	}
}

// TestHeartbeatOnlyAfterQuiet: a room whose members were just sent a frame
// gets no heartbeat; one quiet for the interval's half does, once.
func TestHeartbeatOnlyAfterQuiet(t *testing.T) {
	e := newEnv(t)
	// An interval the loop never reaches: the test drives heartbeatRoom.
	g := e.gateway(func(c *Config) { c.HeartbeatInterval = time.Hour })
	v := g.dial(t, "busy", "v1", "")
	defer v.close()
	v.welcome(t)
	r := g.hub.lookup("busy")
	if r == nil {
		t.Fatal("room not hosted")
	}
	half := 500 * time.Millisecond
	now := time.Now()
	r.sentAt.Store(now.Add(-half / 2).UnixNano())
	g.heartbeatRoom(r, now, half, nil)
	if n := g.Stats().Heartbeats.Load(); n != 0 {
		t.Fatalf("%d heartbeats to a room that got a frame %s ago", n, half/2)
	}
	g.heartbeatRoom(r, now.Add(half), half, nil)
	if n := g.Stats().Heartbeats.Load(); n != 1 {
		t.Fatalf("%d heartbeats after a quiet half interval, want 1", n)
	}
	g.heartbeatRoom(r, now.Add(half+time.Millisecond), half, nil)
	if n := g.Stats().Heartbeats.Load(); n != 1 {
		t.Fatalf("%d heartbeats: a heartbeat did not count as the room's last frame", n)
	}
	v.heartbeats = true
	if typ, raw := v.next(t, 5*time.Second); typ != protocol.FrameHeartbeat {
		t.Fatalf("got %q %s, want the heartbeat", typ, raw)
	}
}

// TestNoHeartbeatPromiseWhenOff: with heartbeats off the welcome promises
// nothing, so clients fall back to their own timeout.
func TestNoHeartbeatPromiseWhenOff(t *testing.T) {
	e := newEnv(t)
	g := e.gateway(func(c *Config) { c.HeartbeatInterval = -1 })
	v := g.dial(t, "off", "v1", "")
	defer v.close()
	if w := v.welcome(t); w.HeartbeatMS != 0 {
		t.Fatalf("welcome hb_ms = %d with heartbeats off", w.HeartbeatMS)
	}
}

// TestHeartbeatsStopWhenCutOffFromNATS: a gateway that cannot reach NATS
// past the grace stops proving it is alive, so its viewers go where
// messages still flow.
func TestHeartbeatsStopWhenCutOffFromNATS(t *testing.T) {
	e := newEnv(t)
	g := e.gateway(func(c *Config) {
		c.HeartbeatInterval, c.HeartbeatNATSGrace = 100*time.Millisecond, 300*time.Millisecond
	})
	v := g.dial(t, "cut", "v1", "")
	defer v.close()
	v.welcome(t)
	testutil.Eventually(t, 5*time.Second, "heartbeats flow", func() bool { return g.Stats().Heartbeats.Load() >= 2 })
	e.srv.Close()
	testutil.Eventually(t, 10*time.Second, "the gateway notices NATS is gone", func() bool { return !g.nc.IsConnected() })
	// Past the grace the count stops moving: sample it until it stayed put
	// for ten intervals.
	testutil.Eventually(t, 10*time.Second, "heartbeats stop", func() bool {
		before := g.Stats().Heartbeats.Load()
		time.Sleep(time.Second)
		return g.Stats().Heartbeats.Load() == before
	})
}
