package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"github.com/nats-io/nats.go"
	"time"

	"github.com/liveroom/liveroom/internal/bus"
	"github.com/liveroom/liveroom/internal/protocol"
)

// presenceMsg is a gateway's local viewer count of one room.
type presenceMsg struct {
	GW string `json:"gw"`
	N  int64  `json:"n"`
}

// stopRoom unsubscribes; the room is already out of the registry.
func (s *Server) stopRoom(r *room) {
	<-r.ready
	r.mu.Lock()
	r.dead = true
	sub := r.sub
	r.sub = nil
	r.pending = nil
	r.window = nil
	r.hist = nil
	r.mu.Unlock()
	if sub != nil {
		_ = sub.Unsubscribe()
		s.stats.RoomsStopped.Add(1)
	}
}

// natsLoops is how many goroutines route room messages (natsChs).
const natsLoops = 2

func newNATSChans(n int) []chan *nats.Msg {
	chs := make([]chan *nats.Msg, n)
	for i := range chs {
		chs[i] = make(chan *nats.Msg, 1<<16/n)
	}
	return chs
}

// natsChOf is the channel of room id's messages.
func (s *Server) natsChOf(id protocol.Room) chan *nats.Msg {
	return s.natsChs[s.hub.roomShardIndex(id)%len(s.natsChs)]
}

// natsLoop routes the messages of the rooms subscribed on ch to them, in
// order.
func (s *Server) natsLoop(ch chan *nats.Msg) {
	for {
		select {
		case <-s.ctx.Done():
			return
		case m := <-ch:
			id, kind, ok := bus.RoomFromSubject(m.Subject)
			if !ok {
				continue
			}
			r := s.hub.lookup(id)
			if r == nil {
				continue
			}
			switch kind {
			case "reliable":
				s.onReliable(r, m)
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
					if _, known := r.remote[p.GW]; !known {
						// A gateway new to the room (it just started it):
						// tell it this one's count at the next tick rather
						// than at the next refresh, so that its viewers'
						// online count is right within a second.
						r.pubAt = time.Time{}
					}
					if r.remote == nil {
						// Most rooms live on one gateway: the map exists
						// only for rooms shared with others.
						r.remote = map[string]remoteCount{}
					}
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
func isAggregate(b []byte) bool { return hasType(b, likeType) }

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

// fetchReliable reads room messages with seq in (since, upTo] from the
// stream for the catch-up of a reconnect older than the memory window, at
// most ReplayMax of them, with Direct Get batches (no consumer). It returns
// the messages, the highest sequence it is sure to have covered, and
// whether it stopped at ReplayMax before reaching upTo.
func (s *Server) fetchReliable(ctx context.Context, id protocol.Room, since, upTo uint64) (out []relMsg, covered uint64, partial bool, err error) {
	covered = since
	backoff := 50 * time.Millisecond
	for covered < upTo {
		if len(out) >= s.cfg.ReplayMax {
			return out, covered, true, nil
		}
		msgs, more, err := s.direct.After(ctx, bus.ReliableStream, relSubjectOf(id), covered+1, min(repairBatch, s.cfg.ReplayMax-len(out)))
		if err != nil {
			if ctx.Err() != nil {
				return nil, 0, false, fmt.Errorf("cannot catch up room %s: %w", id, err)
			}
			s.log.Debug("catch-up read failed, retrying", "room", id, "err", err)
			if !sleepCtx(ctx, backoff) {
				return nil, 0, false, fmt.Errorf("cannot catch up room %s: %w", id, err)
			}
			backoff = min(2*backoff, time.Second)
			continue
		}
		for _, m := range msgs {
			if m.Seq > upTo {
				return out, upTo, false, nil
			}
			out = append(out, relMsg{seq: m.Seq, b: protocol.WithSeq(m.Data, m.Seq)})
			covered = m.Seq
		}
		if !more {
			// Nothing more is stored (older messages aged out): what exists
			// up to upTo has been read.
			covered = upTo
		}
	}
	return out, covered, false, nil
}
