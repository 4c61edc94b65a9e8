package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"
)

// Direct reads stored messages with JetStream's Direct Get: any replica of
// a stream answers, nothing is created on the server (no consumer), and one
// request returns many messages (a batch of one subject after a sequence,
// or the last message of each of many subjects). It is how gateways read
// the reliable stream: to start rooms, to repair gaps and to replay
// reconnects.
//
// A Direct holds one wildcard subscription for all its replies (like the
// nats.go request mux), so a request costs one publish and no SUB. Safe
// for concurrent use; Close it when done.
type Direct struct {
	nc     *nats.Conn
	prefix string
	sub    *nats.Subscription
	seq    atomic.Uint64

	mu    sync.Mutex
	waits map[string]*directWait
}

type directWait struct {
	ch       chan *nats.Msg
	overflow atomic.Bool
}

// StoredMsg is one message read from a stream.
type StoredMsg struct {
	Subject string
	Seq     uint64
	Data    []byte
	Time    time.Time
}

// Errors of Direct reads.
var (
	// ErrDirectOverflow: more replies than the request asked for arrived
	// (a bug, or a server that ignores the batch size).
	ErrDirectOverflow = errors.New("direct get: too many replies")
)

// NewDirect subscribes to its reply subjects on nc.
func NewDirect(nc *nats.Conn) (*Direct, error) {
	d := &Direct{nc: nc, prefix: nc.NewInbox() + ".", waits: map[string]*directWait{}}
	sub, err := nc.Subscribe(d.prefix+"*", d.route)
	if err != nil {
		return nil, fmt.Errorf("cannot subscribe to direct get replies: %w", err)
	}
	sub.SetPendingLimits(-1, 64<<20)
	d.sub = sub
	return d, nil
}

// Close unsubscribes; requests in flight fail with their context.
func (d *Direct) Close() {
	_ = d.sub.Unsubscribe()
}

func (d *Direct) route(m *nats.Msg) {
	token := m.Subject[len(d.prefix):]
	d.mu.Lock()
	w := d.waits[token]
	d.mu.Unlock()
	if w == nil {
		return // a late reply of a request that gave up
	}
	select {
	case w.ch <- m:
	default:
		w.overflow.Store(true)
	}
}

// directAttempt bounds one Direct Get: any replica answers, within
// milliseconds, unless the one NATS picked hangs (a frozen node keeps its
// subscription); the next attempt most likely reaches another.
const directAttempt = 750 * time.Millisecond

// request sends req to the stream's direct get subject and hands each
// stored message to each, in order, until the server's end of batch (or
// the only reply of a single get). An attempt that gets no answer within
// directAttempt is repeated until ctx ends: replies of the abandoned one are
// dropped, and each only sees the replies of the attempt that answered.
func (d *Direct) request(ctx context.Context, stream string, req directRequest, maxReplies int, each func(StoredMsg)) (eob directEOB, err error) {
	body, err := json.Marshal(req)
	if err != nil {
		return eob, err
	}
	for {
		var got []StoredMsg
		actx, cancel := context.WithTimeout(ctx, directAttempt)
		eob, err = d.attempt(actx, stream, body, req.isBatch(), maxReplies, func(sm StoredMsg) { got = append(got, sm) })
		cancel()
		if err == nil {
			for _, sm := range got {
				each(sm)
			}
			return eob, nil
		}
		if ctx.Err() != nil || !errors.Is(err, context.DeadlineExceeded) {
			return eob, err
		}
	}
}

// attempt is one try of request.
func (d *Direct) attempt(ctx context.Context, stream string, body []byte, batch bool, maxReplies int, each func(StoredMsg)) (eob directEOB, err error) {
	token := strconv.FormatUint(d.seq.Add(1), 36) + nuid.Next()[:6]
	w := &directWait{ch: make(chan *nats.Msg, maxReplies+2)}
	d.mu.Lock()
	d.waits[token] = w
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		delete(d.waits, token)
		d.mu.Unlock()
	}()
	if err := d.nc.PublishRequest(jsAPI+"DIRECT.GET."+stream, d.prefix+token, body); err != nil {
		return eob, fmt.Errorf("cannot send direct get to %s: %w", stream, err)
	}
	for {
		select {
		case <-ctx.Done():
			return eob, fmt.Errorf("direct get on %s: %w", stream, ctx.Err())
		case m := <-w.ch:
			if w.overflow.Load() {
				return eob, ErrDirectOverflow
			}
			status := m.Header.Get("Status")
			switch status {
			case "":
				sm, perr := parseStored(m)
				if perr != nil {
					return eob, perr
				}
				each(sm)
				if !batch {
					return eob, nil
				}
			case "204": // end of batch
				eob.pending, _ = strconv.ParseUint(m.Header.Get("Nats-Num-Pending"), 10, 64)
				eob.upTo, _ = strconv.ParseUint(m.Header.Get("Nats-UpTo-Sequence"), 10, 64)
				return eob, nil
			case "404": // nothing (left) to return
				return eob, nil
			case "503":
				return eob, fmt.Errorf("direct get on %s: %w", stream, nats.ErrNoResponders)
			default:
				return eob, fmt.Errorf("direct get on %s: status %s %s", stream, status, m.Header.Get("Description"))
			}
		}
	}
}

type directRequest struct {
	// Seq is the first sequence of a batch; with MultiLast, the lowest
	// sequence a subject's last message may have to be returned.
	Seq       uint64   `json:"seq,omitempty"`
	NextFor   string   `json:"next_by_subj,omitempty"`
	LastFor   string   `json:"last_by_subj,omitempty"`
	Batch     int      `json:"batch,omitempty"`
	MultiLast []string `json:"multi_last,omitempty"`
}

func (r directRequest) isBatch() bool { return r.Batch > 0 || len(r.MultiLast) > 0 }

type directEOB struct {
	pending uint64 // messages matching the request after the batch
	upTo    uint64 // multi_last: the stream sequence the answer is valid up to
}

func parseStored(m *nats.Msg) (StoredMsg, error) {
	seq, err := strconv.ParseUint(m.Header.Get("Nats-Sequence"), 10, 64)
	if err != nil {
		return StoredMsg{}, fmt.Errorf("direct get reply without a sequence: %w", err)
	}
	sm := StoredMsg{Subject: m.Header.Get("Nats-Subject"), Seq: seq, Data: m.Data}
	sm.Time, _ = time.Parse(time.RFC3339Nano, m.Header.Get("Nats-Time-Stamp"))
	return sm, nil
}

// MaxMultiLast is the most subjects one LastOf request asks for; more are
// split into several requests (the server answers at most 1024 messages
// per request).
const MaxMultiLast = 256

// LastOf returns the last stored message of each subject that has one, in
// as few requests as MaxMultiLast allows.
func (d *Direct) LastOf(ctx context.Context, stream string, subjects []string) (map[string]StoredMsg, error) {
	out, _, err := d.LastSince(ctx, stream, subjects, 0, 0)
	return out, err
}

// LastSince is LastOf for the subjects whose last message has a sequence of
// at least minSeq: what changed since a stream position, so that checking
// many subjects costs replies only for those that moved. It also returns
// the stream position the answer is complete up to, the lowest of its
// requests' (a replica answers as of its own position); a request whose
// subjects hold no message at all says none, and counts as known, the
// position the caller read before asking: the next check may start after
// the result.
func (d *Direct) LastSince(ctx context.Context, stream string, subjects []string, minSeq, known uint64) (map[string]StoredMsg, uint64, error) {
	out := make(map[string]StoredMsg)
	var upTo uint64
	first := true
	for len(subjects) > 0 {
		part := subjects[:min(len(subjects), MaxMultiLast)]
		subjects = subjects[len(part):]
		eob, err := d.request(ctx, stream, directRequest{MultiLast: part, Seq: minSeq}, len(part), func(sm StoredMsg) {
			out[sm.Subject] = sm
		})
		if err != nil {
			return nil, 0, err
		}
		at := eob.upTo
		if at == 0 {
			at = known
		}
		if first || at < upTo {
			upTo = at
		}
		first = false
	}
	return out, upTo, nil
}

// After returns up to batch messages of subject with a sequence of at least
// from, in order, and whether more such messages are stored after them.
func (d *Direct) After(ctx context.Context, stream, subject string, from uint64, batch int) ([]StoredMsg, bool, error) {
	if from == 0 {
		from = 1
	}
	var out []StoredMsg
	eob, err := d.request(ctx, stream, directRequest{Seq: from, NextFor: subject, Batch: batch}, batch, func(sm StoredMsg) {
		out = append(out, sm)
	})
	if err != nil {
		return nil, false, err
	}
	return out, eob.pending > 0, nil
}

// Last returns the last stored message of subject (which may be a
// wildcard); false when there is none.
func (d *Direct) Last(ctx context.Context, stream, subject string) (StoredMsg, bool, error) {
	var sm StoredMsg
	found := false
	_, err := d.request(ctx, stream, directRequest{LastFor: subject}, 1, func(m StoredMsg) { sm, found = m, true })
	return sm, found, err
}

// SeqHeaders reads the sequence headers JetStream adds to a republished
// message: its stream sequence, and the sequence of the previous message
// of the same subject (0 when it is the first).
func SeqHeaders(h nats.Header) (seq, prev uint64, ok bool) {
	if h == nil {
		return 0, 0, false
	}
	seq, err1 := strconv.ParseUint(h.Get("Nats-Sequence"), 10, 64)
	prev, err2 := strconv.ParseUint(strings.TrimSpace(h.Get("Nats-Last-Sequence")), 10, 64)
	return seq, prev, err1 == nil && err2 == nil && seq > 0
}

// tailProbes bounds the requests of one Tail.
const tailProbes = 6

// tailFirstSpan is how many stream sequences back from its end Tail looks
// first; it looks 8 times further each time that holds too few messages.
const tailFirstSpan = 512

// Tail returns the last messages of subject stored at or before upTo,
// oldest first: at least want of them when the subject holds that many in
// the last maxSpan sequences of the stream (up to upTo), at most batch.
// upTo is meant to be near the end of the stream (a snapshot just read):
// the subject's messages stored after it count against batch.
//
// Direct Get reads forward only, and a server finds the next message of a
// subject by scanning the stream from where it starts (skipping blocks
// without the subject): a read costs the server about the span of
// sequences it covers. So Tail starts close to the end (tailFirstSpan
// sequences back), looks 8 times further back while that holds fewer than
// want (never past maxSpan, which bounds the server's work for a quiet
// subject in a busy stream), and when a span holds more than batch,
// interpolates on the counts the server reports with each batch
// (Nats-Num-Pending) to find a start from which between want and batch
// remain. A busy subject costs one or two requests, a quiet one up to
// four; at most tailProbes. If none finds such a start, the most recent
// complete read is returned, which may hold fewer than want. Tail also
// returns how many requests it made.
//
// Gateways read a room's recent gifts (and danmaku, from the live stream)
// with it when they start the room, for the history frame of late joiners.
func (d *Direct) Tail(ctx context.Context, stream, subject string, upTo uint64, want, batch int, maxSpan uint64) ([]StoredMsg, int, error) {
	if want <= 0 || upTo == 0 || maxSpan == 0 {
		return nil, 0, nil
	}
	batch = max(batch, want)
	probe := func(from uint64) ([]StoredMsg, uint64, error) {
		var out []StoredMsg
		eob, err := d.request(ctx, stream, directRequest{Seq: from, NextFor: subject, Batch: batch}, batch, func(sm StoredMsg) {
			out = append(out, sm)
		})
		return out, uint64(len(out)) + eob.pending, err
	}
	// back is the first sequence span sequences back from upTo, not past
	// the bound.
	floor := uint64(1)
	if upTo > maxSpan {
		floor = upTo - maxSpan + 1
	}
	back := func(span uint64) uint64 {
		if upTo+1 <= span {
			return floor
		}
		return max(floor, upTo+1-span)
	}
	// count(s) is how many messages of subject are stored at or after s.
	// It only falls as s grows: lo is a sequence with more than batch
	// after it (loN of them; 0 while none is known), hi one with fewer
	// than want (hiN).
	target := uint64(want+batch) / 2
	var lo, loN, hi, hiN uint64 = 0, 0, upTo + 1, 0
	var best []StoredMsg // every message from some sequence to the end
	span := uint64(tailFirstSpan)
	from := back(span)
	requests := 0
	for requests < tailProbes {
		msgs, n, err := probe(from)
		requests++
		if err != nil {
			return nil, requests, err
		}
		if n <= uint64(batch) {
			best = msgs
			if upToCount(msgs, upTo) >= want || from <= floor {
				break
			}
			hi, hiN = from, n
			if lo == 0 {
				// Too few this close to the end: look further back.
				span *= 8
				from = back(span)
				continue
			}
		} else {
			// What lies past the last message read is known too.
			last := msgs[len(msgs)-1].Seq
			lo, loN = last, n-uint64(len(msgs))+1
		}
		if hi <= lo+1 {
			break
		}
		// loN > batch >= target > want > hiN: aim between the two,
		// assuming the subject's messages spread evenly over the stream.
		frac := float64(loN-target) / float64(loN-hiN)
		from = lo + uint64(frac*float64(hi-lo))
		from = min(max(from, lo+1), hi-1)
	}
	return best[:upToCount(best, upTo)], requests, nil
}

// upToCount is how many of msgs (in order) have a sequence of at most upTo.
func upToCount(msgs []StoredMsg, upTo uint64) int {
	n := len(msgs)
	for n > 0 && msgs[n-1].Seq > upTo {
		n--
	}
	return n
}
