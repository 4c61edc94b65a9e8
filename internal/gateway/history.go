package gateway

import (
	"bytes"
	"context"
	"sync"
	"time"

	"github.com/liveroom/liveroom/internal/bus"
	"github.com/liveroom/liveroom/internal/protocol"
)

// History on join (docs/PROTOCOL.md, "history").
//
// A viewer who joins a room without since= gets, right after the welcome,
// one history frame: the room's last HistoryDanmaku danmaku and
// HistoryGifts gifts, merged oldest first by ts. The room keeps them in a
// small ring that exists only while the room has traffic: a room is created
// without one, gets it at its first danmaku or gift (growing to its bound),
// and drops it after HistoryIdle without either, so a hosted idle room
// costs one nil pointer (the per-room memory goal of issue 13).
//
// The ring is filled in two ways:
//   - flush adds every danmaku the room received, sampled or not (history
//     is one frame per join, not the per-second viewer budget), and every
//     gift it pushes. Both happen under the room's lock, like admit, so a
//     joiner's history ends exactly where its live traffic begins: nothing
//     is missing between them, nothing is in both.
//   - when the gateway starts the room (starter.go), from the streams, in
//     the same batch as the sequences: the multi-last requests of the batch
//     tell which rooms have stored messages at all (most of a long tail
//     have none and cost nothing more), and for those, bus.Direct.Tail
//     reads the last gifts from LR_RELIABLE and the last danmaku from the
//     live buffer LR_LIVE (a request or two for a busy room, up to four for
//     a quiet one; the server scans at most historyMaxSpan sequences). The
//     batch's rooms wait for these reads at most HistoryWait; a read that
//     ends later fills the history then, one that fails leaves the room's
//     last message of that kind (from the multi-last). It never fails a
//     start.
//
// History gifts have seq at most the welcome's: they were pushed before
// the join (or stored before the room started here), and what comes later
// arrives as batches.

// historyReadTimeout bounds the history reads of one start batch.
const historyReadTimeout = 2 * time.Second

// historyReaders bounds the history reads in flight on a gateway, whatever
// the rooms starting: each costs the NATS server a scan (historyMaxSpan),
// and a join storm into rooms with traffic must not take its CPU from the
// room starts' and repairs' requests. Reads that cannot start within
// historyReadTimeout are skipped (the rooms keep their last messages).
const historyReaders = 4

// historyReadRate and historyReadBurst bound the history reads a gateway
// starts per second: each costs the NATS server about 0.5–1.5 ms of CPU
// (historyMaxSpan), so 100/s is at most ~0.1–0.15 core of the server. A
// join storm into rooms with recent traffic goes past it; the rooms it
// leaves out keep the last gift and danmaku their start read anyway, and
// fill with what they receive.
const (
	historyReadRate  = 100
	historyReadBurst = 100
)

// historyMaxSpan is how many stream sequences back a history read may look
// (bus.Direct.Tail). The server's work for one read is about the span it
// scans, ~90 ns per sequence (BenchmarkDirectTail: 1 ms for 8,192, 5.6 ms
// for 65,536, in-process on this 2-core machine under load), so a quiet
// room in a busy stream shows what it got in the last 4,096 messages of
// the stream, and at least its own last one; a room with a share of the
// stream's traffic of 0.5 % or more shows its full history.
const historyMaxSpan = 1 << 12

// historyFrameKeep is how long an encoded history frame is kept for the
// next joiner after the last one used it.
const historyFrameKeep = 5 * time.Second

type history struct {
	danmaku msgRing
	gifts   msgRing
	// last is when a message was last added; the ring goes after
	// HistoryIdle without one.
	last time.Time
	// frame is the encoded history frame until the ring changes (a join
	// storm encodes it once), n its message count, zTried whether its
	// compressed form was tried; usedAt is when a join last sent it.
	frame  *frame
	n      int
	zTried bool
	usedAt time.Time
}

// msgRing holds a room's last messages of one kind: it grows up to its
// bound, then overwrites its oldest (at head).
type msgRing struct {
	msgs [][]byte
	head int
}

func (g *msgRing) add(b []byte, bound int) {
	if len(g.msgs) < bound {
		if len(g.msgs) == cap(g.msgs) {
			grown := make([][]byte, len(g.msgs), min(max(2*cap(g.msgs), 4), bound))
			copy(grown, g.msgs)
			g.msgs = grown
		}
		g.msgs = append(g.msgs, b)
		return
	}
	g.msgs[g.head] = b
	g.head = (g.head + 1) % bound
}

// ordered appends the messages to dst, oldest first.
func (g *msgRing) ordered(dst [][]byte) [][]byte {
	dst = append(dst, g.msgs[g.head:]...)
	return append(dst, g.msgs[:g.head]...)
}

// prepend puts older messages before the ring's own, keeping the last
// bound of them all.
func (g *msgRing) prepend(older [][]byte, bound int) {
	all := g.ordered(older)
	all = all[max(0, len(all)-bound):]
	g.msgs = append(make([][]byte, 0, len(all)), all...)
	g.head = 0
}

func (g *msgRing) contains(b []byte) bool {
	for _, m := range g.msgs {
		if bytes.Equal(m, b) {
			return true
		}
	}
	return false
}

var (
	danmakuType = []byte(`"type":"` + protocol.TypeDanmaku + `"`)
	giftType    = []byte(`"type":"` + protocol.TypeGift + `"`)
)

// hasType recognises a message's type without decoding it (see
// isAggregate: the bytes "type":"x" can only be the type field).
func hasType(b, typ []byte) bool { return bytes.Contains(b, typ) }

var userField = []byte(`"user":"`)

// messageUser returns the sender of an encoded message ("" for none).
// User ids are validated to characters JSON does not escape, and the bytes
// "user":" can only be the field (see hasType).
func messageUser(b []byte) protocol.User {
	i := bytes.Index(b, userField)
	if i < 0 {
		return ""
	}
	rest := b[i+len(userField):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 {
		return ""
	}
	return protocol.User(rest[:j])
}

// forgetUser drops user's danmaku from r's history: when a user is banned,
// late joiners do not get to see what got them banned. (Their gifts stay:
// paid, and already shown to everyone.)
func (r *room) forgetUser(user protocol.User) {
	r.mu.Lock()
	defer r.mu.Unlock()
	h := r.hist
	if h == nil {
		return
	}
	all := h.danmaku.ordered(nil)
	kept := all[:0]
	for _, b := range all {
		if messageUser(b) != user {
			kept = append(kept, b)
		}
	}
	if len(kept) == len(all) {
		return
	}
	clear(all[len(kept):])
	h.danmaku.msgs, h.danmaku.head = kept, 0
	h.frame = nil
}

// bannedHere reports whether the sender of b is banned from r now; r.mu
// held.
func (r *room) bannedHere(b []byte, now time.Time) bool {
	if r.srv.mod == nil {
		return false
	}
	_, banned := r.srv.mod.Banned(r.id, messageUser(b), now)
	return banned
}

// historyOn reports whether the gateway keeps any history.
func (s *Server) historyOn() bool { return s.cfg.HistoryDanmaku > 0 || s.cfg.HistoryGifts > 0 }

// hist returns r's history ring, creating it; r.mu held.
func (r *room) histRing(now time.Time) *history {
	if r.hist == nil {
		r.hist = &history{}
	}
	r.hist.last = now
	r.hist.frame = nil
	return r.hist
}

// noteHistory adds m, a message of this flush, to the history if it is a
// danmaku or a gift (a gift only the first time it is pushed); r.mu held.
func (r *room) noteHistory(m pendingMsg, now time.Time) {
	cfg := &r.srv.cfg
	switch m.kind {
	case kindLive, kindPrio:
		if cfg.HistoryDanmaku > 0 && hasType(m.b, danmakuType) {
			r.histRing(now).danmaku.add(m.b, cfg.HistoryDanmaku)
		}
	case kindReliable:
		if cfg.HistoryGifts > 0 && hasType(m.b, giftType) {
			r.histRing(now).gifts.add(m.b, cfg.HistoryGifts)
		}
	}
}

// historyFrame returns the history frame for a joiner and how many
// messages it carries (nil, 0: none); r.mu held.
func (r *room) historyFrame(now time.Time, deflate bool) (*frame, int) {
	h := r.hist
	if h == nil {
		return nil, 0
	}
	if h.frame == nil {
		d := h.danmaku.ordered(nil)
		g := h.gifts.ordered(nil)
		if len(d)+len(g) == 0 {
			return nil, 0
		}
		msgs := mergeByTS(d, g)
		h.frame = &frame{msgs: len(msgs)}
		h.frame.b = newTextFrame(func(b []byte) []byte { return protocol.AppendHistory(b, r.id, msgs) }, batchSize(msgs, r.id))
		h.n, h.zTried = len(msgs), false
	}
	if deflate && !h.zTried {
		// A new frame rather than setting z on the one that connections
		// may still hold queued: frames never change once sent.
		f := &frame{b: h.frame.b, msgs: h.frame.msgs}
		r.srv.compress(f)
		h.frame, h.zTried = f, true
	}
	h.usedAt = now
	return h.frame, h.n
}

// mergeByTS merges two oldest-first lists by their messages' ts, keeping
// each list's own order (gifts stay in seq order).
func mergeByTS(a, b [][]byte) [][]byte {
	out := make([][]byte, 0, len(a)+len(b))
	for len(a) > 0 && len(b) > 0 {
		if messageTS(b[0]) < messageTS(a[0]) {
			out, b = append(out, b[0]), b[1:]
		} else {
			out, a = append(out, a[0]), a[1:]
		}
	}
	out = append(out, a...)
	return append(out, b...)
}

// tickHistory drops an idle room's ring, and an encoded frame no joiner
// used lately; r.mu held.
func (r *room) tickHistory(now time.Time) {
	h := r.hist
	if h == nil {
		return
	}
	if now.Sub(h.last) >= r.srv.cfg.HistoryIdle {
		r.hist = nil
		return
	}
	if h.frame != nil && now.Sub(h.usedAt) >= historyFrameKeep {
		h.frame = nil
	}
}

// historyRead is one room's read of its recent messages from a stream at
// start. last is the subject's last message, from the batch's multi-last:
// the history holds at least that one, even before the read ends.
type historyRead struct {
	r      *room
	stream string
	subj   string
	last   bus.StoredMsg
	want   int
}

// historyBatch is how many messages of a subject one read may return: a
// room whose last messages are mostly of another kind (notices among the
// gifts, likes among the danmaku) still yields some.
func historyBatch(want int) int { return min(max(4*want, 32), 256) }

// readHistory fills the history of a batch of rooms being started from the
// streams: lastRel and lastLive are the last stored message of each room's
// reliable and live subjects (rooms without one have nothing to read). It
// returns once every read ended or HistoryWait passed; the reads still
// running then go on (until historyReadTimeout) and fill their rooms'
// history when they end. Errors are logged: a room then starts with its
// last message of that kind and what it receives.
func (s *Server) readHistory(rooms []*room, lastRel, lastLive map[string]bus.StoredMsg) {
	var reads []*historyRead
	// A room whose last message is older than HistoryIdle would drop its
	// history here at once: it is not read.
	recent := time.Now().Add(-s.cfg.HistoryIdle)
	for _, r := range rooms {
		if n := s.cfg.HistoryGifts; n > 0 {
			subj := relSubjectOf(r.id)
			if m, ok := lastRel[subj]; ok && m.Time.After(recent) {
				reads = append(reads, &historyRead{r: r, stream: bus.ReliableStream, subj: subj, last: m, want: n})
			}
		}
		if n := s.cfg.HistoryDanmaku; n > 0 {
			subj := bus.LiveSubject(r.id)
			if m, ok := lastLive[subj]; ok && m.Time.After(recent) {
				reads = append(reads, &historyRead{r: r, stream: bus.LiveStream, subj: subj, last: m, want: n})
			}
		}
	}
	if len(reads) == 0 {
		return
	}
	// The last message of each kind is known already (the multi-last):
	// in the history at once, whatever the reads do.
	now := time.Now()
	for _, hr := range reads {
		hr.r.seedHistory(hr.stream, []bus.StoredMsg{hr.last}, now)
	}
	done := make(chan struct{})
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer close(done)
		ctx, cancel := context.WithTimeout(s.ctx, historyReadTimeout)
		defer cancel()
		var wg sync.WaitGroup
		next := make(chan *historyRead)
		for range min(historyReaders, len(reads)) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for hr := range next {
					if !s.histRate.Allow() {
						s.stats.HistorySkipped.Add(1)
						continue
					}
					select {
					case s.histSlots <- struct{}{}:
					case <-ctx.Done():
						continue
					}
					msgs, n, err := s.histDirect.Tail(ctx, hr.stream, hr.subj, hr.last.Seq, hr.want, historyBatch(hr.want), historyMaxSpan)
					<-s.histSlots
					s.stats.HistoryRequests.Add(int64(n))
					if err != nil {
						s.log.Debug("cannot read a room's history; it starts with its last message", "room", hr.r.id, "stream", hr.stream, "err", err)
						continue
					}
					hr.r.seedHistory(hr.stream, msgs, time.Now())
				}
			}()
		}
		for _, hr := range reads {
			next <- hr
		}
		close(next)
		wg.Wait()
	}()
	t := time.NewTimer(s.cfg.HistoryWait)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		s.log.Debug("room history still loading; starting the rooms", "reads", len(reads))
	}
}

// seedHistory puts msgs, read from stream when the room started, before
// what the room's history holds, without what it holds already.
func (r *room) seedHistory(stream string, msgs []bus.StoredMsg, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.dead {
		return
	}
	var older [][]byte
	if stream == bus.ReliableStream {
		for _, m := range msgs {
			if !hasType(m.Data, giftType) {
				continue
			}
			// The ring holds the gifts pushed since the start (seq above
			// the stream's answer) and those seeded before (the last one):
			// equal bytes, the same gift.
			b := protocol.WithSeq(m.Data, m.Seq)
			if r.hist == nil || !r.hist.gifts.contains(b) {
				older = append(older, b)
			}
		}
		if len(older) > 0 {
			r.histRing(now).gifts.prepend(older, r.srv.cfg.HistoryGifts)
		}
		return
	}
	// A danmaku received on the room's subscription while the start read
	// the stream may be in both: the stream stored the very bytes that
	// were published, so equal bytes are the same message.
	for _, m := range msgs {
		if !hasType(m.Data, danmakuType) || r.hist != nil && r.hist.danmaku.contains(m.Data) || r.pendingHas(m.Data) || r.bannedHere(m.Data, now) {
			continue
		}
		older = append(older, m.Data)
	}
	if len(older) > 0 {
		r.histRing(now).danmaku.prepend(older, r.srv.cfg.HistoryDanmaku)
	}
}

// pendingHas reports whether b waits in r's pending messages; r.mu held.
func (r *room) pendingHas(b []byte) bool {
	for _, m := range r.pending {
		if bytes.Equal(m.b, b) {
			return true
		}
	}
	return false
}
