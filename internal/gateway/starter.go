package gateway

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/liveroom/liveroom/internal/bus"
)

// Starting a room costs one core subscription and a share of two requests.
// The rooms whose first viewer arrived while the previous batch was being
// started are started together: each gets its subscription (no round trip:
// the requests that follow on the same connection reach the server after
// it), then one multi-last Direct Get reads the last reliable sequence of
// every room of the batch and another their like totals. Under a join storm
// into thousands of new rooms the batches grow; when rooms start one at a
// time each is started at once.

// startBatch is the most rooms started together.
const startBatch = bus.MaxMultiLast

// startLoops is how many batches may be in flight at once.
const startLoops = 2

// startAttempts and startAttemptTimeout bound the tries of one batch before
// its joins fail with a retry hint (about 5 s in all).
const (
	startAttempts       = 3
	startAttemptTimeout = 1500 * time.Millisecond
)

// errNATSDown fails room starts while the gateway's NATS connection is
// down.
var errNATSDown = errors.New("the gateway's NATS connection is down")

type starter struct {
	mu   sync.Mutex
	q    []*room
	wake chan struct{}

	// recent are rooms started lately, checked once more a moment later:
	// in a cluster, the subscription may reach the server that republishes
	// after that server stored a message the snapshot did not have yet.
	recentMu sync.Mutex
	recent   []startedRoom
}

type startedRoom struct {
	r  *room
	at time.Time
}

func newStarter() *starter { return &starter{wake: make(chan struct{}, 1)} }

// startRoom queues r for the next batch; r.ready closes when it started (or
// failed, with r.readyErr).
func (s *Server) startRoom(r *room) {
	st := s.starter
	st.mu.Lock()
	st.q = append(st.q, r)
	st.mu.Unlock()
	select {
	case st.wake <- struct{}{}:
	default:
	}
}

func (s *Server) startLoop() {
	st := s.starter
	for {
		st.mu.Lock()
		n := min(len(st.q), startBatch)
		batch := append([]*room(nil), st.q[:n]...)
		clear(st.q[:n])
		st.q = st.q[n:]
		more := len(st.q) > 0
		st.mu.Unlock()
		if n == 0 {
			select {
			case <-s.ctx.Done():
				s.failStarts()
				return
			case <-st.wake:
			}
			continue
		}
		if more {
			select {
			case st.wake <- struct{}{}:
			default:
			}
		}
		s.startRooms(batch)
	}
}

// failStarts ends the joins still waiting for a start when the gateway
// stops.
func (s *Server) failStarts() {
	st := s.starter
	st.mu.Lock()
	q := st.q
	st.q = nil
	st.mu.Unlock()
	for _, r := range q {
		r.readyErr = fmt.Errorf("cannot start room %s: the gateway is stopping", r.id)
		close(r.ready)
	}
}

// startRooms subscribes the batch's rooms and reads their reliable
// sequences and like totals in two requests.
func (s *Server) startRooms(batch []*room) {
	s.stats.StartBatches.Add(1)
	var ok []*room
	for _, r := range batch {
		sub, err := s.cfg.NC.ChanSubscribe(bus.RoomWildcard(r.id), s.natsChOf(r.id))
		if err != nil {
			s.failStart(r, err)
			continue
		}
		r.mu.Lock()
		r.sub = sub
		r.mu.Unlock()
		ok = append(ok, r)
	}
	if len(ok) == 0 {
		return
	}
	rel := make([]string, len(ok))
	likes := make([]string, len(ok))
	var live []string
	for i, r := range ok {
		rel[i] = relSubjectOf(r.id)
		likes[i] = likesSubject(r)
		if s.cfg.HistoryDanmaku > 0 {
			live = append(live, bus.LiveSubject(r.id))
		}
	}
	var lastRel, lastLikes, lastLive map[string]bus.StoredMsg
	var err error
	for attempt := 1; attempt <= startAttempts; attempt++ {
		if !s.cfg.NC.IsConnected() {
			// Waiting for NATS would hold the joins for seconds: fail them
			// now with a retry hint, and their clients try another gateway.
			err = errNATSDown
			break
		}
		ctx, cancel := context.WithTimeout(s.ctx, startAttemptTimeout)
		lastRel, lastLikes, lastLive, err = s.readStarts(ctx, rel, likes, live)
		cancel()
		if err == nil || s.ctx.Err() != nil {
			break
		}
		s.log.Debug("room start read failed, retrying", "rooms", len(ok), "attempt", attempt, "err", err)
		if !sleepCtx(s.ctx, time.Duration(attempt)*100*time.Millisecond) {
			break
		}
	}
	if err != nil {
		s.log.Warn("cannot start rooms: their reliable sequence cannot be read", "rooms", len(ok), "err", err)
		for _, r := range ok {
			s.failStart(r, err)
		}
		return
	}
	now := time.Now()
	var behind []*room
	for i, r := range ok {
		var last uint64
		if m, found := lastRel[rel[i]]; found {
			last = m.Seq
		}
		var total int64
		if m, found := lastLikes[likes[i]]; found {
			total, _ = strconv.ParseInt(string(m.Data), 10, 64)
		}
		r.mu.Lock()
		r.relSeq, r.lastSeq, r.floor = last, last, last
		r.likes = max(r.likes, total)
		r.started = true
		if r.want > last {
			behind = append(behind, r)
		}
		r.mu.Unlock()
	}
	if s.historyOn() {
		// Before the rooms are ready: their first joiners are the late
		// joiners history is for.
		s.readHistory(ok, lastRel, lastLive)
	}
	for _, r := range ok {
		close(r.ready)
	}
	for _, r := range behind {
		s.repairs.enqueue(r)
	}
	s.stats.RoomsStarted.Add(int64(len(ok)))
	st := s.starter
	st.recentMu.Lock()
	for _, r := range ok {
		st.recent = append(st.recent, startedRoom{r: r, at: now})
	}
	st.recentMu.Unlock()
}

// readStarts reads, for a batch, the last stored reliable message and the
// likes total of every room, and, when live is not empty, the last message
// of each room's live subjects in the live buffer (which rooms have any
// danmaku to show in history): multi-last requests, in parallel. The
// live read is only a hint: its failure (a live stream without direct
// gets, from an older version) leaves lastLive empty, not the start
// failed.
func (s *Server) readStarts(ctx context.Context, rel, likes, live []string) (lastRel, lastLikes, lastLive map[string]bus.StoredMsg, err error) {
	var wg sync.WaitGroup
	var likesErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		lastLikes, likesErr = s.direct.LastOf(ctx, "KV_"+bus.RoomStateKV, likes)
	}()
	if len(live) > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var lerr error
			lastLive, lerr = s.direct.LastOf(ctx, bus.LiveStream, live)
			s.stats.HistoryRequests.Add(int64((len(live) + bus.MaxMultiLast - 1) / bus.MaxMultiLast))
			if lerr != nil {
				s.log.Debug("cannot read the rooms' last live messages; their history starts with what they receive", "rooms", len(live), "err", lerr)
			}
		}()
	}
	lastRel, err = s.direct.LastOf(ctx, bus.ReliableStream, rel)
	wg.Wait()
	s.stats.StartRequests.Add(2)
	if err == nil {
		err = likesErr
	}
	return lastRel, lastLikes, lastLive, err
}

func (s *Server) failStart(r *room, err error) {
	r.mu.Lock()
	sub := r.sub
	r.sub = nil
	r.mu.Unlock()
	if sub != nil {
		_ = sub.Unsubscribe()
	}
	r.readyErr = fmt.Errorf("cannot start room %s: %w", r.id, err)
	close(r.ready)
}

// takeRecentStarts returns the rooms started at least half a second ago
// that were not checked since.
func (s *Server) takeRecentStarts() []*room {
	st := s.starter
	cut := time.Now().Add(-500 * time.Millisecond)
	st.recentMu.Lock()
	defer st.recentMu.Unlock()
	i := 0
	for i < len(st.recent) && st.recent[i].at.Before(cut) {
		i++
	}
	out := make([]*room, i)
	for j := range out {
		out[j] = st.recent[j].r
	}
	st.recent = append(st.recent[:0], st.recent[i:]...)
	return out
}

// likesSubject is the subject of a room's likes total in the room-state
// bucket (a key-value bucket stores key k of bucket b under $KV.b.k).
func likesSubject(r *room) string { return "$KV." + bus.RoomStateKV + "." + bus.LikesKey(r.id) }
