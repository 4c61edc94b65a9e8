package archive

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/liveroom/liveroom/internal/bus"
	"github.com/liveroom/liveroom/internal/protocol"
)

// Durable consumer names, one per stream.
const (
	LiveConsumer     = "lr_archive_live"
	ReliableConsumer = "lr_archive_reliable"
)

// Config configures an Archiver. Zero values mean the defaults.
type Config struct {
	// JS reads the streams. Required; the streams must exist
	// (bus.EnsureStreams).
	JS jetstream.JetStream
	// Store receives the messages. Required; owned by the caller.
	Store *Store
	// Logger; default slog.Default().
	Logger *slog.Logger
	// Batch is how many messages one store transaction takes at most.
	// Default 1000.
	Batch int
	// Retention is how long a session is kept after the archive last wrote
	// to it. Default 7 days (168h).
	Retention time.Duration
	// SweepEvery is how often old sessions are deleted. Default 1h.
	SweepEvery time.Duration
}

// Archiver copies messages that carry a session from the streams into the
// Store. Start and Stop may be called again after Stop (a stopped archiver
// resumes from its durable consumers, losing nothing); they are safe for
// concurrent use with Stats.
type Archiver struct {
	cfg Config
	log *slog.Logger

	mu     sync.Mutex
	cancel context.CancelFunc
	wg     sync.WaitGroup

	archived atomic.Int64 // records newly written
	skipped  atomic.Int64 // messages without a session
	lost     atomic.Int64 // stream messages that expired before the archive read them
}

// New validates cfg and fills defaults. It does no I/O.
func New(cfg Config) (*Archiver, error) {
	if cfg.JS == nil || cfg.Store == nil {
		return nil, errors.New("cannot create archiver: JS and Store are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 1000
	}
	if cfg.Retention <= 0 {
		cfg.Retention = 7 * 24 * time.Hour
	}
	if cfg.SweepEvery <= 0 {
		cfg.SweepEvery = time.Hour
	}
	return &Archiver{cfg: cfg, log: cfg.Logger.With("component", "archive")}, nil
}

// Start creates (or finds) the durable consumers and starts reading. It is
// a no-op when already started.
func (a *Archiver) Start(ctx context.Context) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cancel != nil {
		return nil
	}
	cons := make([]jetstream.Consumer, 0, 2)
	for _, c := range []struct{ stream, name string }{
		{bus.LiveStream, LiveConsumer}, {bus.ReliableStream, ReliableConsumer},
	} {
		cc, err := a.cfg.JS.CreateOrUpdateConsumer(ctx, c.stream, jetstream.ConsumerConfig{
			Durable:       c.name,
			Description:   "liveroom archive (replay)",
			AckPolicy:     jetstream.AckAllPolicy,
			AckWait:       30 * time.Second,
			MaxAckPending: 4 * a.cfg.Batch,
			DeliverPolicy: jetstream.DeliverAllPolicy,
		})
		if err != nil {
			return fmt.Errorf("cannot create consumer %s on %s: %w", c.name, c.stream, err)
		}
		cons = append(cons, cc)
	}
	rctx, cancel := context.WithCancel(context.Background())
	a.cancel = cancel
	for i, c := range cons {
		src := SourceLive
		if i == 1 {
			src = SourceReliable
		}
		a.wg.Go(func() { a.consume(rctx, c, src) })
	}
	a.wg.Go(func() { a.sweep(rctx) })
	return nil
}

// Stop stops reading and waits. What was fetched but not committed is
// redelivered after the next Start. Idempotent.
func (a *Archiver) Stop() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cancel == nil {
		return
	}
	a.cancel()
	a.wg.Wait()
	a.cancel = nil
}

// Stats returns how many records were newly archived and how many messages
// were skipped (sent outside a live session) since New.
func (a *Archiver) Stats() (archived, skipped int64) {
	return a.archived.Load(), a.skipped.Load()
}

// Lost returns how many stream messages the archive never saw because the
// stream dropped them first (it was stopped longer than the stream's max
// age, or the stream hit its size limit), since New.
func (a *Archiver) Lost() int64 { return a.lost.Load() }

// stamp is the part of a message the archive reads.
type stamp struct {
	Room     string `json:"room"`
	Session  string `json:"session"`
	OffsetMS int64  `json:"offset_ms"`
}

func (a *Archiver) consume(ctx context.Context, c jetstream.Consumer, src Source) {
	recs := make([]Record, 0, a.cfg.Batch)
	// The consumers read their whole stream, so stream sequences arrive
	// consecutively from the ack floor on; a jump means messages expired
	// unread (the archive was stopped longer than the stream keeps them).
	var lastSeq uint64
	if info := c.CachedInfo(); info != nil {
		lastSeq = info.AckFloor.Stream
	}
	for ctx.Err() == nil {
		batch, err := c.Fetch(a.cfg.Batch, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			a.pause(ctx, "cannot fetch", err)
			continue
		}
		recs = recs[:0]
		var last jetstream.Msg
		for m := range batch.Messages() {
			last = m
			md, err := m.Metadata()
			if err != nil {
				continue
			}
			if seq := md.Sequence.Stream; lastSeq != 0 && seq > lastSeq+1 {
				a.lost.Add(int64(seq - lastSeq - 1))
				a.log.Error("messages expired from the stream before the archive read them; replays of their sessions miss them",
					"source", src, "from_seq", lastSeq+1, "to_seq", seq-1)
			}
			lastSeq = max(lastSeq, md.Sequence.Stream)
			// A message outside a session has none: ValidID("") is false.
			var st stamp
			if json.Unmarshal(m.Data(), &st) != nil || !protocol.ValidID(st.Session) {
				a.skipped.Add(1)
				continue
			}
			room, err := protocol.ParseRoom(st.Room)
			if err != nil {
				a.skipped.Add(1)
				continue
			}
			data := m.Data()
			if src == SourceReliable {
				// Viewers got the stream sequence as seq; so does a replay.
				data = protocol.WithSeq(data, md.Sequence.Stream)
			}
			recs = append(recs, Record{Room: room, Session: st.Session, OffsetMS: st.OffsetMS,
				Source: src, Seq: md.Sequence.Stream, Data: data})
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) && ctx.Err() == nil {
			a.log.Debug("fetch ended early", "err", err)
		}
		if last == nil {
			continue
		}
		// Ack only once the batch is committed: a stop or crash before the
		// commit gets the whole batch redelivered, and Put skips what it
		// already has.
		for {
			added, err := a.cfg.Store.Put(recs)
			if err == nil {
				a.archived.Add(int64(added))
				break
			}
			a.pause(ctx, "cannot store batch", err)
			if ctx.Err() != nil {
				return
			}
		}
		if err := last.Ack(); err != nil {
			a.log.Warn("cannot ack archived batch; it will be redelivered", "err", err)
		}
	}
}

func (a *Archiver) pause(ctx context.Context, what string, err error) {
	if ctx.Err() != nil {
		return
	}
	a.log.Warn(what, "err", err)
	select {
	case <-ctx.Done():
	case <-time.After(time.Second):
	}
}

func (a *Archiver) sweep(ctx context.Context) {
	t := time.NewTicker(a.cfg.SweepEvery)
	defer t.Stop()
	for {
		if n, err := a.cfg.Store.DeleteWrittenBefore(time.Now().Add(-a.cfg.Retention)); err != nil {
			a.log.Warn("cannot sweep archive", "err", err)
		} else if n > 0 {
			a.log.Info("deleted archived sessions past retention", "sessions", n, "retention", a.cfg.Retention)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
