package uplink

import (
	"context"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/liveroom/liveroom/internal/bus"
	"github.com/liveroom/liveroom/internal/protocol"
	"github.com/liveroom/liveroom/internal/testutil"
)

// postLikes posts n likes of counts 1..5 to room from `senders` goroutines
// and returns the sum of the counts.
func postLikes(t *testing.T, u *uplink, room string, n, senders int) int64 {
	t.Helper()
	var (
		mu    sync.Mutex
		total int64
		wg    sync.WaitGroup
	)
	for g := range senders {
		wg.Go(func() {
			for i := g; i < n; i += senders {
				c := i%5 + 1
				a := u.post(room, "liker"+strconv.Itoa(i), "", like(c), nil)
				if a.status != http.StatusAccepted || a.ID == "" {
					t.Errorf("like %d: %d %s", i, a.status, a.raw)
					return
				}
				mu.Lock()
				total += int64(c)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return total
}

// collectLikes reads like aggregates from sub until their deltas add up to
// want, and fails after a deadline.
func collectLikes(t *testing.T, sub *nats.Subscription, want int64) []protocol.Message {
	t.Helper()
	var (
		msgs []protocol.Message
		sum  int64
	)
	deadline := time.Now().Add(15 * time.Second)
	for sum < want {
		m, err := sub.NextMsg(time.Until(deadline))
		if err != nil {
			t.Fatalf("like deltas add up to %d of %d: %v", sum, want, err)
		}
		pm := decodeMsg(t, m)
		if pm.Type != protocol.TypeLike || pm.ID == "" || pm.Count <= 0 || pm.TS == 0 || pm.User != "" {
			t.Fatalf("not a like aggregate: %s", m.Data)
		}
		msgs = append(msgs, pm)
		sum += pm.Count
	}
	if sum != want {
		t.Fatalf("like deltas add up to %d, want %d", sum, want)
	}
	return msgs
}

// TestLikesAggregate: a burst of likes becomes one aggregate per window at
// most, whose deltas add up to what was posted and whose totals follow the
// stored total.
func TestLikesAggregate(t *testing.T) {
	e := newEnv(t)
	const window = 100 * time.Millisecond
	u := e.start(func(c *Config) { c.LikeWindow = window })
	live := e.subscribe(bus.LiveSubject("r1"))

	start := time.Now()
	posted := postLikes(t, u, "r1", 50, 10)
	msgs := collectLikes(t, live, posted)
	elapsed := time.Since(start)

	if limit := int(elapsed/window) + 2; len(msgs) > limit {
		t.Errorf("%d aggregates in %v: more than one per %v window", len(msgs), elapsed, window)
	}
	var prev int64
	for _, m := range msgs {
		if m.Room != "r1" || m.Total != prev+m.Count {
			t.Errorf("aggregate %+v does not follow total %d", m, prev)
		}
		prev = m.Total
	}
	if kv := e.kvTotal("r1"); kv != posted || prev != posted {
		t.Errorf("KV total %d, last aggregate total %d, posted %d", kv, prev, posted)
	}
	if st := u.srv.Stats(); st.Likes != uint64(posted) || st.LikeRequests != 50 || st.LikeMessages != uint64(len(msgs)) || st.LikesPending != 0 {
		t.Errorf("stats %+v", st)
	}
}

// TestLikesFlushedOnShutdown: likes pending when Run stops are stored and
// published before Run returns, as one aggregate.
func TestLikesFlushedOnShutdown(t *testing.T) {
	e := newEnv(t)
	u := e.start(func(c *Config) { c.LikeWindow = time.Hour })
	live := e.subscribe(bus.LiveSubject("r1"))
	posted := postLikes(t, u, "r1", 50, 10)
	if got := e.barrier(u, live); len(got) != 0 {
		t.Fatalf("likes forwarded before the window ended: %d messages", len(got))
	}
	u.stop()
	got := e.barrier(u, live)
	if len(got) != 1 {
		t.Fatalf("%d aggregates at shutdown, want 1", len(got))
	}
	m := decodeMsg(t, got[0])
	if m.Count != posted || m.Total != posted || e.kvTotal("r1") != posted {
		t.Errorf("aggregate %+v, KV %d, posted %d", m, e.kvTotal("r1"), posted)
	}
}

// TestLikesTwoUplinks: two uplinks adding to one room's total concurrently
// lose nothing.
func TestLikesTwoUplinks(t *testing.T) {
	e := newEnv(t)
	mod := func(c *Config) { c.LikeWindow = 20 * time.Millisecond }
	u1, u2 := e.start(mod), e.start(mod)
	live := e.subscribe(bus.LiveSubject("shared"))
	var (
		wg     sync.WaitGroup
		p1, p2 int64
	)
	wg.Go(func() { p1 = postLikes(t, u1, "shared", 60, 6) })
	wg.Go(func() { p2 = postLikes(t, u2, "shared", 60, 6) })
	wg.Wait()
	posted := p1 + p2
	msgs := collectLikes(t, live, posted)
	var highest int64
	totals := map[int64]bool{}
	for _, m := range msgs {
		if totals[m.Total] {
			t.Errorf("two aggregates announce total %d", m.Total)
		}
		totals[m.Total] = true
		highest = max(highest, m.Total)
	}
	if kv := e.kvTotal("shared"); kv != posted || highest != posted {
		t.Errorf("KV total %d, highest aggregate %d, posted %d", kv, highest, posted)
	}
}

// TestAddLikesConcurrent hammers one key with compare-and-set updates: every
// update gets its own total and none is lost.
func TestAddLikesConcurrent(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	kv, err := e.js.KeyValue(ctx, bus.RoomStateKV)
	if err != nil {
		t.Fatal(err)
	}
	const workers, each = 8, 25
	totals := make(chan int64, workers*each)
	var wg sync.WaitGroup
	for range workers {
		// Separate connections, as separate uplinks would have.
		nc := e.connect()
		wg.Go(func() {
			js, err := jetstream.New(nc)
			if err != nil {
				t.Error(err)
				return
			}
			kv, err := js.KeyValue(ctx, bus.RoomStateKV)
			if err != nil {
				t.Error(err)
				return
			}
			for range each {
				n, err := addLikes(ctx, kv, "hot", 1)
				if err != nil {
					t.Error(err)
					return
				}
				totals <- n
			}
		})
	}
	wg.Wait()
	close(totals)
	seen := map[int64]bool{}
	for n := range totals {
		if seen[n] || n < 1 || n > workers*each {
			t.Fatalf("total %d returned twice or out of range", n)
		}
		seen[n] = true
	}
	if len(seen) != workers*each {
		t.Fatalf("%d distinct totals, want %d", len(seen), workers*each)
	}
	v, err := kv.Get(ctx, bus.LikesKey("hot"))
	if err != nil || string(v.Value()) != strconv.Itoa(workers*each) {
		t.Fatalf("stored %v, %v; want %d", v, err, workers*each)
	}
}

// TestLikesKeptWhenKVFails: likes that cannot be stored wait for the next
// window; nothing is lost and nothing is announced meanwhile. The Server is
// not Run here: the test drives flushLikes itself, as Run's goroutine would.
func TestLikesKeptWhenKVFails(t *testing.T) {
	e := newEnv(t)
	nc := e.connect()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{NC: nc, JS: js, Verifier: testutil.Verifier(t), Logger: testutil.Logger(), PublishTimeout: 2 * time.Second, ClientGifts: true})
	if err != nil {
		t.Fatal(err)
	}
	u := &uplink{t: t, srv: s, nc: nc}
	live := e.subscribe(bus.LiveSubject("r1"))
	ctx := context.Background()
	deleteBucket := func() {
		t.Helper()
		if err := e.js.DeleteKeyValue(ctx, bus.RoomStateKV); err != nil {
			t.Fatal(err)
		}
	}
	restoreBucket := func() {
		t.Helper()
		if err := bus.EnsureStreams(ctx, e.js, bus.StreamConfig{}); err != nil {
			t.Fatal(err)
		}
	}

	// The bucket is missing before the first flush: it cannot even be opened.
	deleteBucket()
	s.likes.add("r1", 7)
	s.flushLikes(ctx)
	if st := s.Stats(); st.LikesPending != 7 || st.LikeFlushErrors != 1 || len(e.barrier(u, live)) != 0 {
		t.Fatalf("after a failed open: %+v", st)
	}
	restoreBucket()
	s.flushLikes(ctx)
	if got := e.barrier(u, live); len(got) != 1 || decodeMsg(t, got[0]).Total != 7 {
		t.Fatalf("after recovery: %d messages", len(got))
	}

	// The bucket disappears after it was opened: the update fails.
	deleteBucket()
	s.likes.add("r1", 5)
	s.likes.add("r2", 1)
	s.flushLikes(ctx)
	if st := s.Stats(); st.LikesPending != 6 || st.LikeFlushErrors != 3 || len(e.barrier(u, live)) != 0 {
		t.Fatalf("after a failed update: %+v", st)
	}
	s.likes.add("r1", 2)
	restoreBucket()
	s.flushLikes(ctx)
	got := e.barrier(u, live)
	if len(got) != 1 {
		t.Fatalf("after recovery: %d messages", len(got))
	}
	// The bucket was recreated empty: the total restarts from what was kept.
	if m := decodeMsg(t, got[0]); m.Count != 7 || m.Total != 7 {
		t.Errorf("aggregate %+v, want count 7 total 7", m)
	}
	if st := s.Stats(); st.LikesPending != 0 || e.kvTotal("r2") != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestLikeAggBound(t *testing.T) {
	a := newLikeAgg()
	var first protocol.Room
	for i, added := 0, 0; added < maxPendingRoomsPerShard; i++ {
		r := protocol.Room("r" + strconv.Itoa(i))
		if a.shard(r) != &a.shards[0] {
			continue
		}
		if !a.add(r, 1) {
			t.Fatalf("add %d refused below the bound", added)
		}
		if added == 0 {
			first = r
		}
		added++
	}
	for i := 0; ; i++ {
		r := protocol.Room("new" + strconv.Itoa(i))
		if a.shard(r) == &a.shards[0] {
			if a.add(r, 1) {
				t.Fatal("a new room was accepted past the bound")
			}
			break
		}
	}
	if !a.add(first, 1) {
		t.Fatal("a pending room was refused")
	}
	for i := 0; ; i++ {
		r := protocol.Room("back" + strconv.Itoa(i))
		if a.shard(r) == &a.shards[0] {
			a.putBack(r, 3) // never refused: those likes were answered 202
			break
		}
	}
	if rooms, likes := a.pending(); rooms != maxPendingRoomsPerShard+1 || likes != int64(maxPendingRoomsPerShard)+4 {
		t.Fatalf("pending %d rooms %d likes", rooms, likes)
	}
	if got := a.take(); len(got) != maxPendingRoomsPerShard+1 || got[first] != 2 {
		t.Fatalf("take: %d rooms, first %d", len(got), got[first])
	}
	if rooms, _ := a.pending(); rooms != 0 {
		t.Fatalf("%d rooms pending after take", rooms)
	}
}
