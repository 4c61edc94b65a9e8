package gateway

import (
	"encoding/json"
	"math"
	"sort"
	"time"

	"github.com/gobwas/ws"

	"github.com/liveroom/liveroom/internal/bus"
)

// flushLoop flushes, every merge window, the dirty rooms of the shards it
// owns (shard i, i+F, i+2F, ... for F flushers).
func (s *Server) flushLoop(i int) {
	t := time.NewTicker(s.cfg.MergeWindow)
	defer t.Stop()
	var dirty, spare []*room
	var scratch []*conn
	for {
		select {
		case <-s.ctx.Done():
			return
		case now := <-t.C:
			for j := i; j < len(s.hub.shards); j += s.cfg.Flushers {
				sh := s.hub.shards[j]
				dirty = sh.takeDirty(spare)
				for k, r := range dirty {
					dirty[k] = nil
					if !r.due(now) {
						// A large room's longer window: it stays dirty
						// (add will not mark it again) until a later tick.
						sh.markDirty(r)
						continue
					}
					scratch = r.flush(now, scratch)
				}
				spare = dirty
			}
		}
	}
}

// tickLoop runs once a second: online counts and presence, keepalive, and
// removal of rooms that have had no viewer for RoomLinger.
func (s *Server) tickLoop() {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	var rooms []*room
	var conns []*conn
	for {
		select {
		case <-s.ctx.Done():
			return
		case now := <-t.C:
			rooms = s.hub.allRooms(rooms[:0])
			for _, r := range rooms {
				s.tickRoom(r, now)
			}
			clear(rooms)
			conns = s.hub.allConns(conns[:0])
			s.keepalive(conns, now)
			clear(conns)
		}
	}
}

func (s *Server) tickRoom(r *room, now time.Time) {
	select {
	case <-r.ready:
	default:
		return
	}
	r.mu.Lock()
	local := int64(len(r.members))
	online := local + r.remoteSum(now)
	pushCount := online != r.pushedOnline && now.Sub(r.lastCount) >= s.cfg.CountInterval && local > 0
	if pushCount {
		r.pushedOnline, r.lastCount = online, now
	}
	r.tickHistory(now)
	publish := local != r.pubCount || now.Sub(r.pubAt) >= presenceRefresh
	if publish {
		r.pubCount, r.pubAt = local, now
	}
	expired := r.readyErr != nil ||
		(local == 0 && r.joining == 0 && !r.emptySince.IsZero() && now.Sub(r.emptySince) >= s.cfg.RoomLinger)
	r.mu.Unlock()
	if publish && r.readyErr == nil {
		s.publishPresence(r.id, local)
	}
	if pushCount {
		r.add(pendingMsg{b: countMessage(s.cfg.ID, online, now), kind: kindAggregate})
	}
	if expired {
		s.removeRoom(r)
	}
}

// removeRoom takes an empty room out of the registry and unsubscribes.
func (s *Server) removeRoom(r *room) {
	sh := r.shard
	sh.mu.Lock()
	r.mu.Lock()
	ok := sh.rooms[r.id] == r && len(r.members) == 0 && r.joining == 0
	if ok {
		delete(sh.rooms, r.id)
	}
	r.mu.Unlock()
	sh.mu.Unlock()
	if ok {
		s.stopRoom(r)
		s.log.Debug("room stopped", "room", r.id)
	}
}

// keepalive pings quiet connections and closes dead and stalled ones.
func (s *Server) keepalive(conns []*conn, now time.Time) {
	n := now.UnixNano()
	idle := int64(s.cfg.IdleTimeout)
	ping := int64(s.cfg.PingInterval)
	stallBefore := n - int64(s.cfg.WriteTimeout)
	for _, c := range conns {
		quiet := n - c.lastRead.Load()
		switch {
		case quiet > idle:
			s.stats.ClosedIdle.Add(1)
			c.close(ws.StatusGoingAway)
		case c.stalled(stallBefore):
			s.stats.ClosedStalled.Add(1)
			c.close(ws.StatusGoingAway)
		case quiet > ping && n-c.pingAt > ping:
			c.pingAt = n
			c.send(pingFrame)
		}
	}
}

// beatLoop publishes the load beat every interval, and at once when asked
// (beatNow).
func (s *Server) beatLoop() {
	t := time.NewTicker(s.cfg.BeatInterval)
	defer t.Stop()
	prev := s.sampleLoad()
	s.publishBeat(s.beat(prev, prev))
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-s.beatNow:
			t.Reset(s.cfg.BeatInterval)
		case <-t.C:
		}
		cur := s.sampleLoad()
		s.publishBeat(s.beat(prev, cur))
		prev = cur
	}
}

// cpuWarmup is how long after start CPU does not count in the load score.
const cpuWarmup = 10 * time.Second

// loadSample holds the counters rates are computed from.
type loadSample struct {
	proc                   procSample
	frames, msgs, bytesOut int64
	dropped, closedSlow    int64
	delays                 delayCounts
}

func (s *Server) sampleLoad() loadSample {
	return loadSample{
		proc: sampleProc(), frames: s.stats.FramesOut.Load(), msgs: s.stats.MsgsOut.Load(), bytesOut: s.stats.BytesOut.Load(),
		dropped:    s.stats.DroppedSampled.Load() + s.stats.DroppedQueueFull.Load(),
		closedSlow: s.stats.ClosedSlow.Load(),
		delays:     s.delays.snapshot(),
	}
}

// Beat returns the gateway's current load report (rates over the last
// beat interval are those of the last published beat).
func (s *Server) Beat() bus.Beat {
	cur := s.sampleLoad()
	return s.beat(cur, cur)
}

func (s *Server) beat(prev, cur loadSample) bus.Beat {
	rooms := s.hub.allRooms(nil)
	type rc struct {
		id string
		n  int
	}
	top := make([]rc, 0, len(rooms))
	for _, r := range rooms {
		r.mu.Lock()
		n := len(r.members)
		r.mu.Unlock()
		if n > 0 {
			top = append(top, rc{string(r.id), n})
		}
	}
	sort.Slice(top, func(i, j int) bool { return top[i].n > top[j].n })
	cfg := &s.cfg
	b := bus.Beat{
		ID: cfg.ID, URL: cfg.PublicURL, State: s.state.Load().(string),
		Started: s.started.UnixMilli(), TS: cur.proc.at.UnixMilli(),
		Conns: int(s.stats.Conns.Load()), Rooms: len(top), MaxConns: cfg.MaxConns,
		RSS:        cur.proc.rss,
		IntervalMS: cfg.BeatInterval.Milliseconds(),
		Capacity:   bus.Capacity{Conns: cfg.MaxConns, CPU: cfg.MaxCPU, BytesOut: cfg.MaxBytesOut, MsgsOut: cfg.MaxMsgsOut},
	}
	if secs := cur.proc.at.Sub(prev.proc.at).Seconds(); secs > 0 {
		b.FramesOut = float64(cur.frames-prev.frames) / secs
		b.PacketsOut = b.FramesOut
		b.MsgsOut = float64(cur.msgs-prev.msgs) / secs
		b.BytesOut = float64(cur.bytesOut-prev.bytesOut) / secs
		b.Dropped = float64(cur.dropped-prev.dropped) / secs
		b.ClosedSlow = float64(cur.closedSlow-prev.closedSlow) / secs
		b.DelayP50MS = quantile(prev.delays, cur.delays, 0.50)
		b.DelayP99MS = quantile(prev.delays, cur.delays, 0.99)
		// CPU is smoothed (about a 3-beat time constant): the handshakes of
		// a join burst spike a fresh gateway's CPU for a second, and an
		// unsmoothed load score would then turn dispatch away from the very
		// gateway that should fill up.
		inst := (cur.proc.cpu - prev.proc.cpu).Seconds() / secs
		avg := 0.3*inst + 0.7*math.Float64frombits(s.cpuAvg.Load())
		s.cpuAvg.Store(math.Float64bits(avg))
	}
	b.CPU = math.Float64frombits(s.cpuAvg.Load())
	cpuLoad := b.CPU / cfg.MaxCPU
	if cur.proc.at.Sub(s.started) < cpuWarmup {
		// A process's first seconds (runtime start, NATS and JetStream
		// setup) say nothing about its capacity; counting them made fresh
		// gateways look busy exactly when dispatch should fill them.
		cpuLoad = 0
	}
	b.Load = min(1, max(
		float64(b.Conns)/float64(cfg.MaxConns),
		cpuLoad,
		b.BytesOut/cfg.MaxBytesOut,
		b.MsgsOut/cfg.MaxMsgsOut,
	))
	if len(top) > 0 {
		b.RoomConns = make(map[string]int, min(16, len(top)))
		for _, t := range top[:min(16, len(top))] {
			b.RoomConns[t.id] = t.n
		}
	}
	return b
}

func (s *Server) publishBeat(b bus.Beat) {
	data, err := json.Marshal(b)
	if err != nil {
		return
	}
	_ = s.cfg.NC.Publish(bus.BeatSubject(s.cfg.ID), data)
}
