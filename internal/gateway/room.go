package gateway

import (
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/liveroom/liveroom/internal/protocol"
)

// Message kinds inside a merge window.
const (
	kindLive      uint8 = iota // may be sampled away
	kindPrio                   // live, from an anchor or admin: kept
	kindAggregate              // like and count totals: kept
	kindReliable               // gift, notice: kept, sequenced
)

type pendingMsg struct {
	b    []byte
	seq  uint64
	kind uint8
}

// relMsg is a reliable message as pushed to viewers (seq already inserted).
type relMsg struct {
	seq uint64
	b   []byte
}

type remoteCount struct {
	n  int64
	at time.Time
}

// room is one room hosted on this gateway. Only its shard's flusher flushes
// it, so flushes of one room never overlap.
type room struct {
	id    protocol.Room
	srv   *Server
	shard *shard

	mu         sync.Mutex
	members    []*conn
	deflaters  int // members that negotiated compression
	joining    int
	emptySince time.Time
	dead       bool

	pending []pendingMsg
	spare   []pendingMsg
	dirty   bool

	allow     float64 // live-message allowance of the sampling budget
	lastFlush time.Time
	// sentAt is when members were last written a frame (unix nanos): a
	// flush or a heartbeat (heartbeat.go).
	sentAt atomic.Int64
	// mergeWin is the room's merge window, chosen at each flush from its
	// member count (Config.RoomWriteBudget). Flusher goroutine only.
	mergeWin time.Duration

	// Reliable window: window holds the most recent reliable messages pushed
	// to members, in order; floor is the sequence below which the window is
	// incomplete (no message of this room lies in (floor, window[0].seq)).
	lastSeq uint64
	floor   uint64
	window  []relMsg

	// The reliable path (reliable.go): relSeq is the highest sequence up to
	// which every reliable message of the room was received, in order (and
	// queued in pending); want is the highest sequence known to exist;
	// repairing is set while a repair is queued or running, since
	// repairSince.
	relSeq      uint64
	want        uint64
	repairing   bool
	repairSince time.Time
	// started is set once the room's subscription and sequence are in
	// place (starter.go); until then reliable messages only raise want.
	started bool

	// hist holds the room's last danmaku and gifts for the history frame
	// of first joins (history.go); nil while the room has no traffic.
	hist *history

	likes        int64
	remote       map[string]remoteCount
	pushedOnline int64
	lastCount    time.Time
	pubCount     int64
	pubAt        time.Time

	// Set up by start, torn down by stop.
	ready    chan struct{}
	readyErr error
	sub      *nats.Subscription
}

func newRoom(srv *Server, id protocol.Room, sh *shard) *room {
	return &room{id: id, srv: srv, shard: sh, ready: make(chan struct{}), pushedOnline: -1, pubCount: -1}
}

// add queues a message for the next flush.
func (r *room) add(m pendingMsg) {
	r.mu.Lock()
	mark := r.addLocked(m)
	r.mu.Unlock()
	if mark {
		r.shard.markDirty(r)
	}
}

// addLocked queues m with r.mu held and reports whether the room must be
// marked dirty (after unlocking). Reliable messages are queued in the same
// critical section that advances relSeq (reliable.go), so that two
// goroutines delivering consecutive messages cannot queue them out of
// order: a client drops a reliable message whose seq is not above the last
// it saw.
func (r *room) addLocked(m pendingMsg) bool {
	if r.dead {
		return false
	}
	if m.kind == kindReliable && m.seq <= r.lastSeq {
		return false // already pushed
	}
	r.pending = append(r.pending, m)
	mark := !r.dirty
	r.dirty = true
	return mark
}

// flush merges the pending messages into one frame, encoded once, and writes
// the same bytes to every member. scratch is the flusher's reusable member
// buffer; it is returned for reuse.
func (r *room) flush(now time.Time, scratch []*conn) []*conn {
	cfg := &r.srv.cfg
	r.mu.Lock()
	msgs := r.pending
	r.pending = r.spare[:0]
	r.dirty = false
	if r.lastFlush.IsZero() {
		r.lastFlush = now.Add(-cfg.MergeWindow)
	}
	window := r.windowFor(len(r.members))
	// The allowance accrues the budget over the time since the last flush
	// (at most one window: a room that was quiet gets no burst), and
	// carries at most one message's worth over, so fractional budgets
	// (1.5 messages per 50 ms window at 30/s) average out exactly.
	r.allow = min(r.allow, 1) + cfg.ViewerBudget*min(now.Sub(r.lastFlush), max(window, r.mergeWin)).Seconds()
	r.lastFlush = now
	r.mergeWin = window
	kept, reliable := r.sample(msgs)
	history := r.srv.historyOn()
	for _, m := range msgs {
		switch {
		case m.kind == kindReliable && m.seq > r.lastSeq:
			r.window = append(r.window, relMsg{seq: m.seq, b: m.b})
			r.lastSeq = m.seq
			if history {
				r.noteHistory(m, now)
			}
		case m.kind != kindReliable && history:
			r.noteHistory(m, now)
		}
	}
	if len(r.window) > 2*cfg.ReliableWindow {
		cut := len(r.window) - cfg.ReliableWindow
		r.floor = r.window[cut-1].seq
		r.window = append([]relMsg(nil), r.window[cut:]...)
	}
	scratch = append(scratch[:0], r.members...)
	deflaters := r.deflaters
	r.mu.Unlock()
	// msgs is this flush's own slice now (add appends to r.pending): read
	// the messages' timestamps without holding up add.
	r.srv.observeDelays(msgs, now)

	if len(kept) > 0 && len(scratch) > 0 {
		f := &frame{msgs: len(kept), reliable: reliable}
		wms := window.Milliseconds()
		f.b = newTextFrame(func(b []byte) []byte { return protocol.AppendBatch(b, r.id, wms, kept) }, batchSize(kept, r.id))
		r.srv.stats.FramesEncoded.Add(1)
		if deflaters > 0 {
			r.srv.compress(f)
		}
		r.sentAt.Store(now.UnixNano())
		r.srv.writeAll(f, scratch)
	}
	// Hand the message slice back for reuse by the next window.
	clear(msgs)
	r.mu.Lock()
	r.spare = msgs[:0]
	r.mu.Unlock()
	clear(scratch)
	return scratch[:0]
}

// windowFor returns the merge window of a room with members local members:
// members / RoomWriteBudget, rounded up to whole flush ticks, between
// MergeWindow and MaxMergeWindow.
func (r *room) windowFor(members int) time.Duration {
	cfg := &r.srv.cfg
	if cfg.RoomWriteBudget <= 0 || cfg.MaxMergeWindow <= cfg.MergeWindow {
		return cfg.MergeWindow
	}
	w := time.Duration(float64(members) / cfg.RoomWriteBudget * float64(time.Second))
	if w <= cfg.MergeWindow {
		return cfg.MergeWindow
	}
	ticks := (w + cfg.MergeWindow - 1) / cfg.MergeWindow
	return min(ticks*cfg.MergeWindow, cfg.MaxMergeWindow)
}

// due reports whether the room's window has passed at now. A tick that
// fires a little early still counts (half a tick of slack).
func (r *room) due(now time.Time) bool {
	return r.mergeWin <= r.srv.cfg.MergeWindow || now.Sub(r.lastFlush) >= r.mergeWin-r.srv.cfg.MergeWindow/2
}

// sample picks the messages of one window that fit the viewer budget:
// reliable, staff and aggregate messages always; the newest plain live
// messages up to the allowance. Called with r.mu held.
func (r *room) sample(msgs []pendingMsg) (kept [][]byte, reliable bool) {
	var live int
	for _, m := range msgs {
		switch m.kind {
		case kindLive:
			live++
		case kindPrio:
			r.allow--
		}
	}
	take := 0
	if r.allow >= 1 && live > 0 {
		take = min(live, int(r.allow))
		r.allow -= float64(take)
	}
	if drop := live - take; drop > 0 {
		r.srv.stats.DroppedSampled.Add(int64(drop))
	}
	kept = make([][]byte, 0, len(msgs)-live+take)
	// Keep the newest take live messages of the window. They have waited
	// least: in a long window (a big room's 200 ms) spreading the kept
	// ones evenly made the oldest of them wait the whole window, and the
	// viewer reads them over the next window either way. Every sender's
	// comment is as likely to be among the newest, so no one is favoured.
	skip := live - take
	li := 0
	for _, m := range msgs {
		if m.kind != kindLive {
			kept = append(kept, m.b)
			if m.kind == kindReliable {
				reliable = true
			}
			continue
		}
		if li >= skip {
			kept = append(kept, m.b)
		}
		li++
	}
	return kept, reliable
}

func batchSize(msgs [][]byte, id protocol.Room) int {
	n := 40 + len(id)
	for _, m := range msgs {
		n += len(m) + 1
	}
	return n
}

// catchUpFrames encodes reliable messages as batch frames of at most 500
// messages each.
func catchUpFrames(id protocol.Room, msgs []relMsg) []*frame {
	var out []*frame
	for len(msgs) > 0 {
		n := min(len(msgs), 500)
		part := make([][]byte, n)
		for i := range part {
			part[i] = msgs[i].b
		}
		f := &frame{msgs: n, reliable: true}
		f.b = newTextFrame(func(b []byte) []byte { return protocol.AppendBatch(b, id, 0, part) }, batchSize(part, id))
		out = append(out, f)
		msgs = msgs[n:]
	}
	return out
}

// countMessage encodes an online-count message.
func countMessage(gw string, online int64, now time.Time) []byte {
	b := make([]byte, 0, 96)
	b = append(b, `{"id":"c-`...)
	b = append(b, gw...)
	b = append(b, '-')
	b = strconv.AppendInt(b, now.UnixNano(), 36)
	b = append(b, `","type":"count","ts":`...)
	b = strconv.AppendInt(b, now.UnixMilli(), 10)
	b = append(b, `,"online":`...)
	b = strconv.AppendInt(b, online, 10)
	return append(b, '}')
}

// observeDelays records, once per message and room, the time from the
// uplink's accept (the message's ts) to this flush. Sampled-away messages
// are recorded too: their delay is what a kept one would have had.
func (s *Server) observeDelays(msgs []pendingMsg, now time.Time) {
	ms := now.UnixMilli()
	for _, m := range msgs {
		ts := messageTS(m.b)
		if ts <= 0 || ts > ms {
			continue
		}
		s.delays.observe(time.Duration(ms-ts) * time.Millisecond)
		if s.delayLive == nil {
			continue
		}
		d := float64(ms-ts) / 1000
		switch m.kind {
		case kindReliable:
			s.delayReliable.Observe(d)
		case kindAggregate:
			s.delayAggregate.Observe(d)
		default:
			s.delayLive.Observe(d)
		}
	}
}
