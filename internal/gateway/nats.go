package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/liveroom/liveroom/internal/bus"
	"github.com/liveroom/liveroom/internal/protocol"
)

// presenceMsg is a gateway's local viewer count of one room.
type presenceMsg struct {
	GW string `json:"gw"`
	N  int64  `json:"n"`
}

// startRoom subscribes to the room's subjects. The reliable consumer starts
// right after the last stored message of the room, which becomes the room's
// current sequence, so nothing between the two is missed.
func (s *Server) startRoom(r *room) {
	defer close(r.ready)
	ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
	defer cancel()
	fail := func(err error) {
		r.readyErr = fmt.Errorf("cannot start room %s: %w", r.id, err)
		for _, sub := range r.subs {
			_ = sub.Unsubscribe()
		}
		r.subs = nil
	}
	var last uint64
	m, err := s.stream.GetLastMsgForSubject(ctx, bus.ReliableSubject(r.id))
	switch {
	case err == nil:
		last = m.Sequence
	case errors.Is(err, jetstream.ErrMsgNotFound):
	default:
		fail(err)
		return
	}
	var likes int64
	if e, err := s.kv.Get(ctx, bus.LikesKey(r.id)); err == nil {
		likes, _ = strconv.ParseInt(string(e.Value()), 10, 64)
	} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
		fail(err)
		return
	}
	for _, subj := range []string{bus.LiveSubject(r.id), bus.PresenceSubject(r.id)} {
		sub, err := s.cfg.NC.ChanSubscribe(subj, s.natsCh)
		if err != nil {
			fail(err)
			return
		}
		r.subs = append(r.subs, sub)
	}
	rs := &relSub{s: s, r: r}
	if err := rs.start(ctx, last+1); err != nil {
		fail(err)
		return
	}
	// A flush of the room from the NATS connection proves the subscriptions
	// are registered with the server before the first viewer is welcomed.
	if err := s.cfg.NC.FlushWithContext(ctx); err != nil {
		rs.stop()
		fail(err)
		return
	}
	r.mu.Lock()
	r.rel = rs
	r.lastSeq, r.floor, r.likes = last, last, likes
	r.mu.Unlock()
	s.stats.RoomsStarted.Add(1)
	s.log.Debug("room started", "room", r.id, "seq", last)
}

// stopRoom unsubscribes; the room is already out of the registry.
func (s *Server) stopRoom(r *room) {
	<-r.ready
	r.mu.Lock()
	r.dead = true
	subs, rs := r.subs, r.rel
	r.subs, r.rel = nil, nil
	r.pending = nil
	r.window = nil
	r.mu.Unlock()
	for _, sub := range subs {
		_ = sub.Unsubscribe()
	}
	if rs != nil {
		rs.stop()
		s.stats.RoomsStopped.Add(1)
	}
}

// natsLoop routes messages from every room subscription to their rooms.
func (s *Server) natsLoop() {
	for {
		select {
		case <-s.ctx.Done():
			return
		case m := <-s.natsCh:
			id, kind, ok := bus.RoomFromSubject(m.Subject)
			if !ok {
				continue
			}
			r := s.hub.lookup(id)
			if r == nil {
				continue
			}
			switch kind {
			case "live":
				s.stats.LiveIn.Add(1)
				k := kindLive
				if len(m.Header) > 0 && m.Header.Get(bus.HeaderPrio) != "" {
					k = kindPrio
				}
				if isAggregate(m.Data) {
					k = kindAggregate
					r.noteLikes(m.Data)
				}
				r.add(pendingMsg{b: m.Data, kind: k})
			case "presence":
				var p presenceMsg
				if json.Unmarshal(m.Data, &p) != nil || p.GW == s.cfg.ID || p.GW == "" {
					continue
				}
				s.stats.PresenceIn.Add(1)
				r.mu.Lock()
				if p.N <= 0 {
					delete(r.remote, p.GW)
				} else {
					r.remote[p.GW] = remoteCount{n: p.N, at: time.Now()}
				}
				r.mu.Unlock()
			}
		}
	}
}

// isAggregate recognises the uplink's like totals without decoding the
// message. protocol.Message has no nested objects and JSON escapes quotes
// inside strings, so the bytes "type":"like" can only be the type field.
func isAggregate(b []byte) bool {
	return bytes.Contains(b, likeType)
}

var likeType = []byte(`"type":"` + protocol.TypeLike + `"`)

// noteLikes remembers the room's likes total for welcome frames.
func (r *room) noteLikes(b []byte) {
	var m struct {
		Total int64 `json:"total"`
	}
	if json.Unmarshal(b, &m) != nil {
		return
	}
	r.mu.Lock()
	if m.Total > r.likes {
		r.likes = m.Total
	}
	r.mu.Unlock()
}

// publishPresence tells the other gateways hosting room id that this one
// has n viewers there (0: none left).
func (s *Server) publishPresence(id protocol.Room, n int64) {
	b, _ := json.Marshal(presenceMsg{GW: s.cfg.ID, N: n})
	_ = s.cfg.NC.Publish(bus.PresenceSubject(id), b)
}

// remoteSum adds up the other gateways' fresh counts; r.mu held.
func (r *room) remoteSum(now time.Time) int64 {
	var n int64
	for gw, rc := range r.remote {
		if now.Sub(rc.at) > presenceTTL {
			delete(r.remote, gw)
			continue
		}
		n += rc.n
	}
	return n
}

// presenceTTL is how long another gateway's count is trusted without news;
// gateways refresh theirs every presenceRefresh.
const (
	presenceRefresh = 5 * time.Second
	presenceTTL     = 3 * presenceRefresh
)

// fetchReliable reads room messages with seq in (since, upTo] from
// JetStream for a reconnect older than the memory window, at most ReplayMax
// of them. It returns the messages, the highest sequence it is sure to have
// covered, and whether it stopped at ReplayMax before reaching upTo.
func (s *Server) fetchReliable(ctx context.Context, id protocol.Room, since, upTo uint64) (out []relMsg, covered uint64, partial bool, err error) {
	// A fresh consumer on a clustered stream may not answer its first pull
	// yet ("no responders"); try again a few times before failing the join.
	for attempt := 0; attempt < 4; attempt++ {
		out, covered, partial, err = s.fetchOnce(ctx, id, since, upTo)
		if err == nil || ctx.Err() != nil {
			return out, covered, partial, err
		}
		s.log.Debug("replay fetch failed, retrying", "room", id, "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(time.Duration(attempt+1) * 100 * time.Millisecond):
		}
	}
	return out, covered, partial, err
}

func (s *Server) fetchOnce(ctx context.Context, id protocol.Room, since, upTo uint64) ([]relMsg, uint64, bool, error) {
	cons, err := s.cfg.JS.OrderedConsumer(ctx, bus.ReliableStream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{bus.ReliableSubject(id)},
		DeliverPolicy:  jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:    since + 1,
	})
	if err != nil {
		return nil, 0, false, fmt.Errorf("cannot replay room %s: %w", id, err)
	}
	var out []relMsg
	covered := since
	for covered < upTo {
		if len(out) >= s.cfg.ReplayMax {
			return out, covered, true, nil
		}
		// No wait: everything up to upTo is already stored.
		batch, err := cons.FetchNoWait(min(500, s.cfg.ReplayMax-len(out)))
		if err != nil {
			return nil, 0, false, fmt.Errorf("cannot replay room %s: %w", id, err)
		}
		got := 0
		for msg := range batch.Messages() {
			got++
			md, err := msg.Metadata()
			if err != nil {
				continue
			}
			seq := md.Sequence.Stream
			if seq > upTo {
				covered = upTo
				continue
			}
			out = append(out, relMsg{seq: seq, b: protocol.WithSeq(msg.Data(), seq)})
			covered = seq
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, jetstream.ErrNoMessages) {
			return nil, 0, false, fmt.Errorf("cannot replay room %s: %w", id, err)
		}
		if got == 0 {
			// Nothing more is stored (messages aged out): what exists up to
			// upTo has been read.
			covered = upTo
		}
		if err := ctx.Err(); err != nil {
			return nil, 0, false, err
		}
	}
	return out, covered, false, nil
}
