package gateway

import (
	"encoding/json"
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
					scratch = r.flush(now, scratch)
					dirty[k] = nil
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
	publish := local != r.pubCount || now.Sub(r.pubAt) >= presenceRefresh
	if publish {
		r.pubCount, r.pubAt = local, now
	}
	expired := r.readyErr != nil ||
		(local == 0 && r.joining == 0 && !r.emptySince.IsZero() && now.Sub(r.emptySince) >= s.cfg.RoomLinger)
	r.mu.Unlock()
	if publish && r.readyErr == nil {
		b, _ := json.Marshal(presenceMsg{GW: s.cfg.ID, N: local})
		_ = s.cfg.NC.Publish(bus.PresenceSubject(r.id), b)
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

// beatLoop publishes the load beat.
func (s *Server) beatLoop() {
	t := time.NewTicker(s.cfg.BeatInterval)
	defer t.Stop()
	s.publishBeat(time.Now(), 0, 0, 0)
	lastF, lastM := s.stats.FramesOut.Load(), s.stats.MsgsOut.Load()
	last := time.Now()
	for {
		select {
		case <-s.ctx.Done():
			return
		case now := <-t.C:
			f, m := s.stats.FramesOut.Load(), s.stats.MsgsOut.Load()
			s.publishBeat(now, now.Sub(last).Seconds(), f-lastF, m-lastM)
			lastF, lastM, last = f, m, now
		}
	}
}

// Beat returns the gateway's current load report.
func (s *Server) Beat() bus.Beat {
	return s.beat(time.Now(), 0, 0, 0)
}

func (s *Server) beat(now time.Time, secs float64, frames, msgs int64) bus.Beat {
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
	b := bus.Beat{
		ID: s.cfg.ID, URL: s.cfg.PublicURL, State: s.state.Load().(string),
		Started: s.started.UnixMilli(), TS: now.UnixMilli(),
		Conns: int(s.stats.Conns.Load()), Rooms: len(top), MaxConns: s.cfg.MaxConns,
	}
	b.Load = min(1, float64(b.Conns)/float64(max(1, s.cfg.MaxConns)))
	if secs > 0 {
		b.FramesOut = float64(frames) / secs
		b.MsgsOut = float64(msgs) / secs
	}
	if len(top) > 0 {
		b.RoomConns = make(map[string]int, min(16, len(top)))
		for _, t := range top[:min(16, len(top))] {
			b.RoomConns[t.id] = t.n
		}
	}
	return b
}

func (s *Server) publishBeat(now time.Time, secs float64, frames, msgs int64) {
	b, err := json.Marshal(s.beat(now, secs, frames, msgs))
	if err != nil {
		return
	}
	_ = s.cfg.NC.Publish(bus.BeatSubject, b)
}
