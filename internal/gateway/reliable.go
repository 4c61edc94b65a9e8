package gateway

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/liveroom/liveroom/internal/bus"
	"github.com/liveroom/liveroom/internal/protocol"
)

// The reliable path (docs/RELIABILITY.md).
//
// Gifts and notices are stored in the stream LR_RELIABLE, which republishes
// each one on the core subject lr.room.<room>.reliable with two headers: its
// stream sequence and the sequence of the room's previous reliable message.
// A gateway hears them through the one subscription it holds per hosted
// room (lr.room.<room>.>), like live traffic: nothing on JetStream is created
// per room or per viewer.
//
// Each room keeps relSeq, the highest sequence up to which it has every
// reliable message of the room, in order. A message whose previous sequence
// is relSeq extends it. Any other new message means something was missed
// (a core message dropped, a disconnect, a stream leader that died between
// storing and republishing): the room is repaired from the stream with
// Direct Get, a batch of the room's messages after relSeq per request, from
// any replica. The message that showed the gap is not kept: the repair reads
// it again, in order.
//
// A repair also runs when a viewer reconnects with a since= newer than the
// room knows, and a check of every hosted room runs when the NATS
// connection comes back, when the stream elects a new leader, when the
// subscription dropped messages, and every CheckInterval while the stream
// moves: one multi-last Direct Get per 256 rooms compares each room's last
// stored sequence with relSeq (only for rooms whose last message is newer
// than the previous check), and only rooms behind are repaired.

// repairBatch is how many messages one repair request asks for.
const repairBatch = 256

// repairWorkers bounds the repair requests in flight.
const repairWorkers = 8

// repairGiveUp is how long a repair keeps retrying a room that cannot
// reach the sequence it wants (a replica lagging behind, or a since= the
// stream never had) before it settles for what the stream holds.
const repairGiveUp = 10 * time.Second

// relSubjectOf is the subject a room's messages are stored under, which
// Direct Get reads by.
func relSubjectOf(id protocol.Room) string { return bus.StoreSubject(id) }

// onReliable handles a message the stream republished for r.
func (s *Server) onReliable(r *room, m *nats.Msg) {
	seq, prev, ok := bus.SeqHeaders(m.Header)
	if !ok {
		return // not from the stream: no role may publish here
	}
	if s.dropReliable != nil && s.dropReliable(r.id, seq) {
		return // a test losing core deliveries
	}
	s.stats.ReliableIn.Add(1)
	r.mu.Lock()
	switch {
	case r.dead || seq <= r.relSeq:
		// Old news (already read by a repair), or a room going away.
		r.mu.Unlock()
	case r.started && !r.repairing && prev <= r.relSeq:
		// In order. prev < relSeq only when relSeq came from a snapshot
		// taken after prev was stored: nothing lies between.
		r.relSeq = seq
		mark := r.addLocked(pendingMsg{b: protocol.WithSeq(m.Data, seq), seq: seq, kind: kindReliable})
		r.mu.Unlock()
		if mark {
			r.shard.markDirty(r)
		}
	default:
		// A gap, a repair under way, or a room still starting: remember
		// that seq exists and let the repair read it in order.
		r.want = max(r.want, seq)
		start := r.started && !r.repairing
		if start {
			s.stats.ReliableGaps.Add(1)
		}
		r.mu.Unlock()
		if start {
			s.repairs.enqueue(r)
		}
	}
}

// repairQueue runs repairs with a few workers; a room is queued at most
// once at a time.
type repairQueue struct {
	s  *Server
	mu sync.Mutex
	q  []*room
	wk chan struct{}
	wg sync.WaitGroup
}

func newRepairQueue(s *Server) *repairQueue {
	return &repairQueue{s: s, wk: make(chan struct{}, 1)}
}

// enqueue schedules a repair of r unless one is queued or running.
func (rq *repairQueue) enqueue(r *room) {
	r.mu.Lock()
	if r.repairing || r.dead || !r.started {
		r.mu.Unlock()
		return
	}
	r.repairing = true
	r.repairSince = time.Now()
	r.mu.Unlock()
	rq.mu.Lock()
	rq.q = append(rq.q, r)
	rq.mu.Unlock()
	select {
	case rq.wk <- struct{}{}:
	default:
	}
}

func (rq *repairQueue) take() *room {
	rq.mu.Lock()
	defer rq.mu.Unlock()
	if len(rq.q) == 0 {
		return nil
	}
	r := rq.q[0]
	rq.q[0] = nil
	rq.q = rq.q[1:]
	return r
}

// run starts the workers; they stop with ctx.
func (rq *repairQueue) run(ctx context.Context) {
	for range repairWorkers {
		rq.wg.Add(1)
		go func() {
			defer rq.wg.Done()
			for {
				r := rq.take()
				if r == nil {
					select {
					case <-ctx.Done():
						return
					case <-rq.wk:
					}
					continue
				}
				// Others may be waiting too: pass the wake-up on.
				select {
				case rq.wk <- struct{}{}:
				default:
				}
				rq.s.repair(ctx, r)
			}
		}()
	}
}

func (rq *repairQueue) wait() { rq.wg.Wait() }

// repair reads r's messages after relSeq from the stream until it has
// reached want (or the stream's end), then ends the repair; messages that
// arrived meanwhile and lie beyond start another. Errors retry with backoff
// while the room is hosted.
func (s *Server) repair(ctx context.Context, r *room) {
	backoff := 50 * time.Millisecond
	for {
		r.mu.Lock()
		from, want, since, dead := r.relSeq, r.want, r.repairSince, r.dead
		r.mu.Unlock()
		if dead || ctx.Err() != nil {
			s.endRepair(r, false)
			return
		}
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		msgs, more, err := s.direct.After(rctx, bus.ReliableStream, relSubjectOf(r.id), from+1, repairBatch)
		cancel()
		s.stats.RepairRequests.Add(1)
		if err != nil {
			s.stats.RepairErrors.Add(1)
			if time.Since(since) > repairGiveUp {
				s.log.Warn("cannot repair a room's reliable messages; retrying", "room", r.id, "from", from+1, "err", err)
				r.mu.Lock()
				r.repairSince = time.Now()
				r.mu.Unlock()
			}
			if !sleepCtx(ctx, backoff) {
				s.endRepair(r, false)
				return
			}
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 50 * time.Millisecond
		mark := false
		r.mu.Lock()
		for _, m := range msgs {
			if m.Seq > r.relSeq && !r.dead {
				r.relSeq = m.Seq
				s.stats.ReliableRepaired.Add(1)
				mark = r.addLocked(pendingMsg{b: protocol.WithSeq(m.Data, m.Seq), seq: m.Seq, kind: kindReliable}) || mark
			}
		}
		r.mu.Unlock()
		if mark {
			r.shard.markDirty(r)
		}
		if more {
			continue
		}
		r.mu.Lock()
		reached := r.relSeq >= want
		r.mu.Unlock()
		if reached || time.Since(since) > repairGiveUp {
			if !reached {
				// The stream has nothing up to want: a since= from another
				// system, or a message that aged out.
				s.log.Debug("repair settles below the wanted sequence", "room", r.id, "have", from, "want", want)
			}
			if s.endRepair(r, reached) {
				continue // more arrived meanwhile
			}
			return
		}
		// A replica may lag the leader by a moment: ask again.
		if !sleepCtx(ctx, backoff) {
			s.endRepair(r, false)
			return
		}
		backoff = min(2*backoff, time.Second)
	}
}

// endRepair ends r's repair, or reports true (repair on) when messages
// beyond what was read arrived meanwhile. Without reached, what is wanted
// is forgotten.
func (s *Server) endRepair(r *room, reached bool) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if reached && r.want > r.relSeq && !r.dead {
		r.repairSince = time.Now()
		return true
	}
	r.want = r.relSeq
	r.repairing = false
	return false
}

// reachSince makes r read what the stream holds beyond relSeq (a viewer knows
// of since), and waits until r has flushed it or ctx ends.
func (s *Server) reachSince(ctx context.Context, r *room, since uint64) {
	if !s.cfg.NC.IsConnected() {
		return // nothing can be read now; the join goes on from memory
	}
	r.mu.Lock()
	r.want = max(r.want, since)
	r.mu.Unlock()
	s.repairs.enqueue(r)
	deadline := time.Now().Add(3 * time.Second)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	for time.Now().Before(deadline) {
		r.mu.Lock()
		done := r.lastSeq >= since || (!r.repairing && r.relSeq <= r.lastSeq)
		r.mu.Unlock()
		if done {
			return
		}
		if !sleepCtx(ctx, 5*time.Millisecond) {
			return
		}
	}
}

// checkRooms compares every hosted room's relSeq with the last message the
// stream holds for it, in multi-last requests of up to 256 rooms, and
// repairs the rooms behind. Only rooms whose last message has a sequence of
// at least minSeq are answered (0: all); known is the stream's last
// sequence read before the check. It returns the stream position up to
// which every room was checked.
func (s *Server) checkRooms(ctx context.Context, rooms []*room, minSeq, known uint64) (uint64, error) {
	var subjects []string
	byS := make(map[string]*room, len(rooms))
	for _, r := range rooms {
		r.mu.Lock()
		ok := r.started && !r.dead
		r.mu.Unlock()
		if ok {
			subj := relSubjectOf(r.id)
			subjects = append(subjects, subj)
			byS[subj] = r
		}
	}
	if len(subjects) == 0 {
		return known, nil
	}
	s.stats.Checks.Add(1)
	s.stats.CheckRequests.Add(int64((len(subjects) + bus.MaxMultiLast - 1) / bus.MaxMultiLast))
	last, upTo, err := s.direct.LastSince(ctx, bus.ReliableStream, subjects, minSeq, known)
	if err != nil {
		return 0, err
	}
	for subj, m := range last {
		r := byS[subj]
		if r == nil {
			continue
		}
		r.mu.Lock()
		behind := m.Seq > r.relSeq && !r.dead
		if behind {
			r.want = max(r.want, m.Seq)
		}
		r.mu.Unlock()
		if behind {
			s.stats.ReliableGaps.Add(1)
			s.repairs.enqueue(r)
		}
	}
	return upTo, nil
}

// checkLoop runs checkRooms when asked (a reconnect, a new stream leader,
// dropped messages: twice, a second apart, since a replica may answer
// before it has what the old leader stored), for the rooms started in the
// last second (a subscription that reaches another server of a cluster
// after the room's snapshot), and every CheckInterval when the stream's
// last sequence moved. Checks of every room are incremental: they ask only
// for rooms whose last message is newer than what the previous check
// covered, so a check where little changed costs little.
func (s *Server) checkLoop() {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	var checked uint64 // every hosted room was checked up to this stream sequence
	var lastFull time.Time
	var again time.Time // a second check after a triggered one
	for {
		full := false
		select {
		case <-s.ctx.Done():
			return
		case <-s.checkNow:
			full = true
			again = time.Now().Add(time.Second)
		case now := <-t.C:
			if !again.IsZero() && now.After(again) {
				full, again = true, time.Time{}
			}
			full = full || now.Sub(lastFull) >= s.cfg.CheckInterval
		}
		var known uint64
		if full {
			ctx, cancel := context.WithTimeout(s.ctx, 2*time.Second)
			m, found, err := s.direct.Last(ctx, bus.ReliableStream, bus.StoreWildcard)
			cancel()
			switch {
			case err != nil:
				// Check anyway, from the last position: the stream may be
				// electing a leader, and Direct Get is answered by replicas.
			case !found || m.Seq <= checked:
				full = false // nothing was stored since the last check
				lastFull = time.Now()
			default:
				known = m.Seq
			}
		}
		if full {
			ctx, cancel := context.WithTimeout(s.ctx, 5*time.Second)
			upTo, err := s.checkRooms(ctx, s.hub.allRooms(nil), checked+1, max(known, checked))
			cancel()
			if err != nil {
				if s.ctx.Err() == nil {
					s.log.Warn("cannot check the rooms' reliable messages; will retry", "err", err)
					again = time.Now().Add(time.Second)
				}
			} else {
				checked, lastFull = max(checked, upTo), time.Now()
			}
		}
		if rooms := s.takeRecentStarts(); len(rooms) > 0 {
			ctx, cancel := context.WithTimeout(s.ctx, 5*time.Second)
			_, err := s.checkRooms(ctx, rooms, 0, 0)
			cancel()
			if err != nil && s.ctx.Err() == nil {
				s.log.Warn("cannot check newly started rooms; checking every room soon", "rooms", len(rooms), "err", err)
				again = time.Now().Add(time.Second)
			}
		}
	}
}

// requestCheck asks checkLoop for a check of every room.
func (s *Server) requestCheck() {
	select {
	case s.checkNow <- struct{}{}:
	default:
	}
}

// watchNATS requests a check when the NATS connection comes back and when
// the reliable stream elects a new leader; it returns a function that stops
// watching.
func (s *Server) watchNATS() (func(), error) {
	status := s.cfg.NC.StatusChanged(nats.CONNECTED)
	sub, err := s.cfg.NC.Subscribe(bus.ReliableLeaderElected, func(*nats.Msg) {
		s.log.Info("reliable stream has a new leader: checking every room")
		s.requestCheck()
	})
	if err != nil {
		s.cfg.NC.RemoveStatusListener(status)
		return nil, err
	}
	// Messages the client library dropped for a slow subscription would
	// show as a gap only when the room's next message comes.
	prev := s.cfg.NC.ErrorHandler()
	s.cfg.NC.SetErrorHandler(func(nc *nats.Conn, sub *nats.Subscription, err error) {
		if errors.Is(err, nats.ErrSlowConsumer) {
			s.requestCheck()
		}
		if prev != nil {
			prev(nc, sub, err)
		}
	})
	done := make(chan struct{})
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			select {
			case <-done:
				return
			case _, ok := <-status:
				if !ok {
					return
				}
				s.log.Info("nats connection back: checking every room")
				s.requestCheck()
				// Dispatch may have heard nothing from this gateway for a
				// while: say it is alive now, not an interval later.
				select {
				case s.beatNow <- struct{}{}:
				default:
				}
			}
		}
	}()
	return func() {
		_ = sub.Unsubscribe()
		s.cfg.NC.SetErrorHandler(prev)
		s.cfg.NC.RemoveStatusListener(status)
		close(done)
	}, nil
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
