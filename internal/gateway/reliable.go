package gateway

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/liveroom/liveroom/internal/bus"
	"github.com/liveroom/liveroom/internal/protocol"
)

// relSub reads one room's reliable messages from the stream, gap-free: an
// ephemeral consumer filtered on the room, whose consumer sequence must grow
// by exactly one per delivery. A jump, missed heartbeats, or the consumer
// vanishing with a NATS node all mean the same thing: drop the consumer and
// create a new one that starts right after the last stream sequence
// delivered. This is what the library's ordered consumer does too, but its
// recreation waits up to 10 s per attempt and backs off to 10 s between
// them; after a node loss that is the whole gift budget. Here attempts are
// short and retried every 200 ms until the stream answers again.
type relSub struct {
	s *Server
	r *room

	mu        sync.Mutex
	cc        jetstream.ConsumeContext
	cons      jetstream.Consumer
	next      uint64 // stream sequence to start from on the next (re)creation
	consSeq   uint64 // last consumer sequence delivered by the current consumer
	gen       int    // generation; deliveries of older consumers are ignored
	resetting bool
	stopped   bool
	wg        sync.WaitGroup
}

const (
	relAttemptTimeout = 1500 * time.Millisecond
	relRetryWait      = 200 * time.Millisecond
)

// start creates the first consumer, from stream sequence from.
func (rs *relSub) start(ctx context.Context, from uint64) error {
	rs.mu.Lock()
	rs.next = from
	rs.mu.Unlock()
	return rs.create(ctx)
}

// create makes a consumer starting at rs.next and starts consuming.
func (rs *relSub) create(ctx context.Context) error {
	rs.mu.Lock()
	if rs.stopped {
		rs.mu.Unlock()
		return nil
	}
	rs.gen++
	gen, from := rs.gen, rs.next
	rs.consSeq = 0
	rs.mu.Unlock()
	cfg := jetstream.ConsumerConfig{
		FilterSubject:     bus.ReliableSubject(rs.r.id),
		DeliverPolicy:     jetstream.DeliverAllPolicy,
		AckPolicy:         jetstream.AckNonePolicy,
		InactiveThreshold: 10 * time.Second,
		MemoryStorage:     true,
		Replicas:          1,
	}
	if from > 1 {
		cfg.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		cfg.OptStartSeq = from
	}
	cons, err := rs.s.cfg.JS.CreateOrUpdateConsumer(ctx, bus.ReliableStream, cfg)
	if err != nil {
		return fmt.Errorf("cannot create reliable consumer: %w", err)
	}
	cc, err := cons.Consume(rs.handler(gen),
		jetstream.PullExpiry(5*time.Second),
		jetstream.PullHeartbeat(time.Second),
		jetstream.ConsumeErrHandler(rs.errHandler(gen)))
	if err != nil {
		rs.deleteConsumer(cons)
		return fmt.Errorf("cannot consume reliable messages: %w", err)
	}
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if rs.stopped || gen != rs.gen {
		cc.Stop()
		rs.deleteConsumer(cons)
		return nil
	}
	rs.cc, rs.cons = cc, cons
	return nil
}

func (rs *relSub) handler(gen int) jetstream.MessageHandler {
	return func(msg jetstream.Msg) {
		md, err := msg.Metadata()
		if err != nil {
			return
		}
		rs.mu.Lock()
		if gen != rs.gen || rs.stopped {
			rs.mu.Unlock()
			return
		}
		if md.Sequence.Consumer != rs.consSeq+1 {
			rs.mu.Unlock()
			rs.s.stats.ReliableGaps.Add(1)
			rs.reset("gap in consumer sequence")
			return
		}
		rs.consSeq = md.Sequence.Consumer
		rs.next = md.Sequence.Stream + 1
		rs.mu.Unlock()
		rs.s.stats.ReliableIn.Add(1)
		rs.r.add(pendingMsg{b: protocol.WithSeq(msg.Data(), md.Sequence.Stream), seq: md.Sequence.Stream, kind: kindReliable})
	}
}

func (rs *relSub) errHandler(gen int) jetstream.ConsumeErrHandler {
	return func(_ jetstream.ConsumeContext, err error) {
		rs.s.stats.ConsumerErrors.Add(1)
		rs.mu.Lock()
		current := gen == rs.gen
		rs.mu.Unlock()
		if !current {
			return
		}
		switch {
		case errors.Is(err, jetstream.ErrNoHeartbeat),
			errors.Is(err, jetstream.ErrConsumerDeleted),
			errors.Is(err, jetstream.ErrConsumerNotFound),
			errors.Is(err, jetstream.ErrConsumerLeadershipChanged):
			rs.reset(err.Error())
		default:
			rs.s.log.Debug("reliable consumer", "room", rs.r.id, "err", err)
		}
	}
}

// reset replaces the consumer, retrying until it succeeds or the room stops.
func (rs *relSub) reset(why string) {
	rs.mu.Lock()
	if rs.resetting || rs.stopped {
		rs.mu.Unlock()
		return
	}
	rs.resetting = true
	rs.gen++ // deliveries of the old consumer are ignored from now on
	old, oldCons := rs.cc, rs.cons
	rs.cc, rs.cons = nil, nil
	rs.wg.Add(1)
	rs.mu.Unlock()
	rs.s.stats.ReliableResets.Add(1)
	rs.s.log.Info("resetting reliable consumer", "room", rs.r.id, "reason", why)
	go func() {
		defer rs.wg.Done()
		if old != nil {
			old.Stop()
			rs.deleteConsumer(oldCons)
		}
		for attempt := 1; ; attempt++ {
			ctx, cancel := context.WithTimeout(context.Background(), relAttemptTimeout)
			err := rs.create(ctx)
			cancel()
			rs.mu.Lock()
			if err == nil || rs.stopped {
				rs.resetting = false
				rs.mu.Unlock()
				if err == nil {
					rs.s.log.Info("reliable consumer resumed", "room", rs.r.id, "attempts", attempt)
				}
				return
			}
			rs.mu.Unlock()
			if attempt%25 == 1 { // the first failure, then every 25th
				rs.s.log.Warn("cannot recreate reliable consumer; retrying", "room", rs.r.id, "attempt", attempt, "err", err)
			}
			time.Sleep(relRetryWait)
		}
	}()
}

// deleteConsumer removes a consumer in the background (it would expire by
// itself after InactiveThreshold).
func (rs *relSub) deleteConsumer(c jetstream.Consumer) {
	if c == nil {
		return
	}
	name := c.CachedInfo().Name
	rs.wg.Add(1)
	go func() {
		defer rs.wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = rs.s.cfg.JS.DeleteConsumer(ctx, bus.ReliableStream, name)
	}()
}

// stop ends consumption and waits for background work.
func (rs *relSub) stop() {
	rs.mu.Lock()
	rs.stopped = true
	cc, cons := rs.cc, rs.cons
	rs.cc, rs.cons = nil, nil
	rs.mu.Unlock()
	if cc != nil {
		cc.Stop()
		rs.deleteConsumer(cons)
	}
	rs.wg.Wait()
}
