package uplink

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/liveroom/liveroom/internal/bus"
	"github.com/liveroom/liveroom/internal/protocol"
)

const (
	likeShards = 64
	// maxPendingRoomsPerShard bounds the rooms with likes waiting for the
	// next window (≈1M in all). Past it new rooms get 503 until a flush: the
	// bound only bites when the KV store has been failing for a while.
	maxPendingRoomsPerShard = 1 << 14
	// flushWorkers bounds the concurrent KV updates of one flush.
	flushWorkers = 8
	// maxCASAttempts bounds the Get+Update retries of one room's total when
	// several uplinks update it at once; the delta is kept if they run out.
	maxCASAttempts = 32
)

// likeAgg sums like counts per room between flushes. It is safe for
// concurrent use; adds on different rooms rarely share a lock.
type likeAgg struct {
	seed   maphash.Seed
	shards [likeShards]likeShard
}

type likeShard struct {
	mu sync.Mutex
	m  map[protocol.Room]int64
}

func newLikeAgg() *likeAgg {
	a := &likeAgg{seed: maphash.MakeSeed()}
	for i := range a.shards {
		a.shards[i].m = make(map[protocol.Room]int64)
	}
	return a
}

func (a *likeAgg) shard(room protocol.Room) *likeShard {
	return &a.shards[maphash.String(a.seed, string(room))%likeShards]
}

// add records n likes for room. It returns false, recording nothing, when
// room is new and too many rooms are already pending.
func (a *likeAgg) add(room protocol.Room, n int64) bool {
	sh := a.shard(room)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if _, ok := sh.m[room]; !ok && len(sh.m) >= maxPendingRoomsPerShard {
		return false
	}
	sh.m[room] += n
	return true
}

// putBack returns a delta that could not be stored. It ignores the bound:
// likes already answered 202 are never dropped.
func (a *likeAgg) putBack(room protocol.Room, n int64) {
	sh := a.shard(room)
	sh.mu.Lock()
	sh.m[room] += n
	sh.mu.Unlock()
}

// take removes and returns every pending delta.
func (a *likeAgg) take() map[protocol.Room]int64 {
	var out map[protocol.Room]int64
	for i := range a.shards {
		sh := &a.shards[i]
		sh.mu.Lock()
		if len(sh.m) > 0 {
			if out == nil {
				out = make(map[protocol.Room]int64)
			}
			for r, n := range sh.m {
				out[r] += n
			}
			sh.m = make(map[protocol.Room]int64)
		}
		sh.mu.Unlock()
	}
	return out
}

// pending returns how many rooms and likes wait for a flush.
func (a *likeAgg) pending() (rooms int, likes int64) {
	for i := range a.shards {
		sh := &a.shards[i]
		sh.mu.Lock()
		rooms += len(sh.m)
		for _, n := range sh.m {
			likes += n
		}
		sh.mu.Unlock()
	}
	return rooms, likes
}

// flushLikes stores every pending delta in the room-state bucket and
// publishes one like aggregate per room. A room whose total cannot be
// updated keeps its delta for the next window. Only Run calls it, so s.kv
// needs no lock.
func (s *Server) flushLikes(ctx context.Context) {
	batch := s.likes.take()
	if len(batch) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.PublishTimeout)
	defer cancel()
	if s.kv == nil {
		kv, err := s.cfg.JS.KeyValue(ctx, bus.RoomStateKV)
		if err != nil {
			for room, n := range batch {
				s.likes.putBack(room, n)
			}
			s.stats.likeFlushErrors.Add(1)
			s.log.Warn("cannot open likes bucket; likes kept for the next window", "bucket", bus.RoomStateKV, "rooms", len(batch), "err", err)
			return
		}
		s.kv = kv
	}
	work := make(chan protocol.Room)
	var wg sync.WaitGroup
	for range min(flushWorkers, len(batch)) {
		wg.Go(func() {
			for room := range work {
				s.flushRoom(ctx, room, batch[room])
			}
		})
	}
	for room := range batch {
		work <- room
	}
	close(work)
	wg.Wait()
}

func (s *Server) flushRoom(ctx context.Context, room protocol.Room, delta int64) {
	total, err := addLikes(ctx, s.kv, room, delta)
	if err != nil {
		// A timeout after the server stored the update would count this
		// delta twice on retry; likes are a popularity signal, not money,
		// and losing them silently would be worse.
		s.likes.putBack(room, delta)
		s.stats.likeFlushErrors.Add(1)
		s.log.Warn("cannot store likes; kept for the next window", "room", room, "delta", delta, "err", err)
		return
	}
	m := protocol.Message{
		ID:    nuid.Next(),
		Type:  protocol.TypeLike,
		Room:  string(room),
		TS:    time.Now().UnixMilli(),
		Count: delta,
		Total: total,
	}
	s.stampSession(&m)
	// The total is stored: a failed publish only delays what viewers see
	// until the next aggregate or their next welcome frame.
	if err := s.cfg.NC.Publish(bus.LiveSubject(room), protocol.Encode(m)); err != nil {
		s.log.Warn("cannot publish like aggregate", "room", room, "err", err)
		return
	}
	s.stats.likeMessages.Add(1)
}

// addLikes adds delta to room's running total in kv with compare-and-set,
// retrying on conflicts with other uplinks, and returns the new total. The
// value is a decimal string so `nats kv get` shows it as is.
func addLikes(ctx context.Context, kv jetstream.KeyValue, room protocol.Room, delta int64) (int64, error) {
	key := bus.LikesKey(room)
	for attempt := range maxCASAttempts {
		if attempt > 0 {
			// Spread the retries of contending uplinks.
			t := time.NewTimer(time.Duration(rand.Int64N(int64(attempt)*int64(time.Millisecond) + 1)))
			select {
			case <-ctx.Done():
				t.Stop()
				return 0, fmt.Errorf("cannot update %s: %w", key, ctx.Err())
			case <-t.C:
			}
		}
		e, err := kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			// Create also succeeds over a deleted key.
			_, err = kv.Create(ctx, key, []byte(strconv.FormatInt(delta, 10)))
			if errors.Is(err, jetstream.ErrKeyExists) {
				continue
			}
			if err != nil {
				return 0, fmt.Errorf("cannot create %s: %w", key, err)
			}
			return delta, nil
		}
		if err != nil {
			return 0, fmt.Errorf("cannot read %s: %w", key, err)
		}
		cur, err := strconv.ParseInt(string(e.Value()), 10, 64)
		if err != nil {
			// Never reset a total we cannot read; an operator must look.
			return 0, fmt.Errorf("cannot parse %s: %w", key, err)
		}
		total := cur + delta
		_, err = kv.Update(ctx, key, []byte(strconv.FormatInt(total, 10)), e.Revision())
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists) {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("cannot update %s: %w", key, err)
		}
		return total, nil
	}
	return 0, fmt.Errorf("cannot update %s: %d conflicting attempts", key, maxCASAttempts)
}
