package gateway

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/liveroom/liveroom/internal/bus"
	"github.com/liveroom/liveroom/internal/protocol"
	"github.com/liveroom/liveroom/internal/testutil"
)

func giftIDs(msgs []protocol.Message) []string {
	var ids []string
	for _, m := range msgs {
		if m.Type == protocol.TypeGift {
			ids = append(ids, m.ID)
		}
	}
	return ids
}

func TestReconnectWithSinceCatchesUpExactlyWhatWasMissed(t *testing.T) {
	for _, tc := range []struct {
		name   string
		window int // reliable messages kept in memory
		fromJS bool
	}{
		{"from memory", 1024, false},
		{"from jetstream", 2, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			room := "replay" + strconv.Itoa(tc.window)
			g := e.gateway(func(c *Config) { c.ReliableWindow = tc.window })
			// A member keeps the room hosted (and its window filling).
			keeper := g.dial(t, room, "keeper", "")
			defer keeper.close()
			keeper.welcome(t)
			var seqs []uint64
			for i := range 12 {
				seqs = append(seqs, e.gift(room, "g"+strconv.Itoa(i)))
			}
			keeper.collect(t, 10*time.Second, func(m []protocol.Message) bool { return countType(m, protocol.TypeGift) == 12 })

			// A viewer that saw up to the 5th gift reconnects.
			v := g.dial(t, room, "back", "&since="+strconv.FormatUint(seqs[4], 10))
			defer v.close()
			w := v.welcome(t)
			if w.Seq != seqs[11] || w.Replayed != 7 {
				t.Fatalf("welcome seq %d replayed %d, want %d and 7", w.Seq, w.Replayed, seqs[11])
			}
			msgs, _ := v.collect(t, 10*time.Second, func(m []protocol.Message) bool { return countType(m, protocol.TypeGift) >= 7 })
			// Live traffic continues right after the replay, without overlap.
			e.gift(room, "g-live")
			more, _ := v.collect(t, 10*time.Second, func(m []protocol.Message) bool { return countType(m, protocol.TypeGift) >= 1 })
			got := giftIDs(append(msgs, more...))
			want := []string{"g5", "g6", "g7", "g8", "g9", "g10", "g11", "g-live"}
			if len(got) != len(want) {
				t.Fatalf("got gifts %v, want %v", got, want)
			}
			for i := range want {
				if got[i] != want[i] {
					t.Fatalf("got gifts %v, want %v", got, want)
				}
			}
			var last uint64
			for _, m := range msgs {
				if m.Seq <= last {
					t.Fatalf("sequence not increasing: %d after %d", m.Seq, last)
				}
				last = m.Seq
			}
			if fromJS := g.Stats().ReplayedFromJS.Load() > 0; fromJS != tc.fromJS {
				t.Fatalf("replayed from JetStream = %v, want %v", fromJS, tc.fromJS)
			}
		})
	}
}

func TestWelcomeCarriesCurrentSequenceForANewRoom(t *testing.T) {
	e := newEnv(t)
	s1 := e.gift("cold", "before-1")
	s2 := e.gift("cold", "before-2")
	g := e.gateway(nil)
	v := g.dial(t, "cold", "v", "")
	defer v.close()
	if w := v.welcome(t); w.Seq != s2 || s2 <= s1 {
		t.Fatalf("welcome seq %d, want the room's last stored sequence %d", w.Seq, s2)
	}
	// Since 0 on a gateway that never held the room reads JetStream.
	v2 := g.dial(t, "cold", "v2", "&since=0")
	defer v2.close()
	if w := v2.welcome(t); w.Replayed != 2 {
		t.Fatalf("replayed %d, want 2", w.Replayed)
	}
	msgs, _ := v2.collect(t, 10*time.Second, func(m []protocol.Message) bool { return countType(m, protocol.TypeGift) == 2 })
	if ids := giftIDs(msgs); ids[0] != "before-1" || ids[1] != "before-2" {
		t.Fatalf("replayed %v", ids)
	}
}

func TestOnlineCountSumsAcrossGateways(t *testing.T) {
	e := newEnv(t)
	fast := func(c *Config) { c.CountInterval = 100 * time.Millisecond }
	g1, g2 := e.gateway(fast), e.gateway(fast)
	a := g1.dial(t, "sum", "a", "")
	defer a.close()
	a.welcome(t)
	for i := range 3 {
		v := g2.dial(t, "sum", "b"+strconv.Itoa(i), "")
		defer v.close()
		v.welcome(t)
	}
	// Viewer a, on gateway 1, must learn that 4 people are in the room.
	deadline := time.Now().Add(15 * time.Second)
	for {
		b := a.batch(t, time.Until(deadline))
		var online int64 = -1
		for _, m := range b.Msgs {
			if m.Type == protocol.TypeCount {
				online = m.Online
			}
		}
		if online == 4 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("last count %d, want 4", online)
		}
	}
}

func TestCatchUpTooFarBehindContinuesOverReconnects(t *testing.T) {
	for _, tc := range []struct {
		name              string
		window, replayMax int
	}{
		{"jetstream part larger than the limit", 2, 4},
		{"jetstream plus memory larger than the limit", 4, 5},
		{"memory alone larger than the limit", 1024, 3},
	} {
		t.Run(tc.name, func(t *testing.T) { testCatchUpInParts(t, tc.window, tc.replayMax) })
	}
}

func testCatchUpInParts(t *testing.T, window, replayMax int) {
	e := newEnv(t)
	g := e.gateway(func(c *Config) { c.ReliableWindow = window; c.ReplayMax = replayMax })
	keeper := g.dial(t, "deep", "keeper", "")
	defer keeper.close()
	keeper.welcome(t)
	var want []string
	for i := range 11 {
		want = append(want, "g"+strconv.Itoa(i))
		e.gift("deep", want[i])
	}
	keeper.collect(t, 10*time.Second, func(m []protocol.Message) bool { return countType(m, protocol.TypeGift) == 11 })

	// A client at since=0 gets the history in parts of ReplayMax, each part
	// ending with a reconnect frame; it comes back with its new since.
	var got []string
	var since uint64
	for round := 0; round < 10 && len(got) < len(want); round++ {
		v := g.dial(t, "deep", "back", "&since="+strconv.FormatUint(since, 10))
		w := v.welcome(t)
		for n := 0; n < w.Replayed; {
			b := v.batch(t, 10*time.Second)
			for _, m := range b.Msgs {
				got = append(got, m.ID)
				since = m.Seq
				n++
			}
		}
		if len(got) < len(want) {
			typ, raw := v.next(t, 10*time.Second)
			if typ != protocol.FrameReconnect {
				t.Fatalf("after a partial replay got %s %s, want reconnect", typ, raw)
			}
		}
		v.close()
	}
	if len(got) != len(want) {
		t.Fatalf("replayed %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("replayed %v, want %v", got, want)
		}
	}
}

// TestGapRepairedInOrderExactlyOnce loses republished gifts on their way
// to one gateway, the last one of the burst included: the gateway sees the
// gaps (or, for the last, its periodic check does), reads what it missed
// from the stream with Direct Get, and its viewers get every gift once, in
// order; a second gateway that lost nothing is unaffected.
func TestGapRepairedInOrderExactlyOnce(t *testing.T) {
	e := newEnv(t)
	const room = "gappy"
	lost := map[int]bool{2: true, 3: true, 6: true, 9: true} // by gift index; 9 is the last
	var seqs sync.Map                                        // seq → index
	var dropped atomic.Int32
	g := e.gateway(func(c *Config) { c.CheckInterval = 300 * time.Millisecond })
	g.dropReliable = func(r protocol.Room, seq uint64) bool {
		i, ok := seqs.Load(seq)
		if ok && lost[i.(int)] {
			dropped.Add(1)
			return true
		}
		return false
	}
	other := e.gateway(nil)
	var vs []*viewer
	for i, gw := range []*gw{g, g, other} {
		v := gw.dial(t, room, "v"+strconv.Itoa(i), "")
		defer v.close()
		v.welcome(t)
		vs = append(vs, v)
	}
	var want []string
	for i := range 10 {
		id := "gap-" + strconv.Itoa(i)
		want = append(want, id)
		// Register the sequence before the stream republishes it: the
		// publish is stored (and republished) before Publish returns, so
		// the seam learns it from a sequence it predicts instead.
		seqs.Store(e.nextSeq(), i)
		e.gift(room, id)
	}
	for i, v := range vs {
		msgs, _ := v.collect(t, 15*time.Second, func(m []protocol.Message) bool { return countType(m, protocol.TypeGift) >= 10 })
		got := giftIDs(msgs)
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Fatalf("viewer %d got %v, want %v", i, got, want)
		}
		// Nothing arrives twice afterwards.
		if _, raw, err := v.read(500 * time.Millisecond); err == nil && strings.Contains(string(raw), `"gap-`) {
			t.Fatalf("viewer %d got a gift again: %s", i, raw)
		}
	}
	if n := dropped.Load(); n != int32(len(lost)) {
		t.Fatalf("the seam dropped %d deliveries, want %d", n, len(lost))
	}
	st := g.Stats()
	if st.ReliableRepaired.Load() < int64(len(lost)) || st.ReliableGaps.Load() == 0 {
		t.Fatalf("repaired %d messages in %d gaps, want ≥ %d", st.ReliableRepaired.Load(), st.ReliableGaps.Load(), len(lost))
	}
	if other.Stats().ReliableRepaired.Load() != 0 {
		t.Fatalf("the gateway that lost nothing repaired %d messages", other.Stats().ReliableRepaired.Load())
	}
}

// TestSinceNewerThanTheRoomCatchesUp: a viewer reconnects to a gateway whose
// room is behind what the viewer saw (its deliveries were lost). The
// gateway reads up to the viewer's since first: the welcome carries that
// sequence, and nothing the viewer had is sent again.
func TestSinceNewerThanTheRoomCatchesUp(t *testing.T) {
	e := newEnv(t)
	const room = "behind"
	var drop atomic.Bool
	g := e.gateway(func(c *Config) { c.CheckInterval = time.Hour })
	g.dropReliable = func(protocol.Room, uint64) bool { return drop.Load() }
	keeper := g.dial(t, room, "keeper", "")
	defer keeper.close()
	keeper.welcome(t)
	drop.Store(true)
	var last uint64
	for i := range 5 {
		last = e.gift(room, "lost-"+strconv.Itoa(i))
	}
	drop.Store(false)
	v := g.dial(t, room, "back", "&since="+strconv.FormatUint(last, 10))
	defer v.close()
	w := v.welcome(t)
	if w.Seq < last || w.Replayed != 0 {
		t.Fatalf("welcome seq %d replayed %d, want seq ≥ %d and nothing replayed", w.Seq, w.Replayed, last)
	}
	e.gift(room, "after")
	msgs, _ := v.collect(t, 10*time.Second, func(m []protocol.Message) bool { return countType(m, protocol.TypeGift) >= 1 })
	if got := giftIDs(msgs); len(got) != 1 || got[0] != "after" {
		t.Fatalf("got %v after the welcome, want only [after]", got)
	}
	// The keeper, whose deliveries were lost, got them from the repair.
	kmsgs, _ := keeper.collect(t, 10*time.Second, func(m []protocol.Message) bool { return countType(m, protocol.TypeGift) >= 6 })
	if got := giftIDs(kmsgs); strings.Join(got, ",") != "lost-0,lost-1,lost-2,lost-3,lost-4,after" {
		t.Fatalf("keeper got %v", got)
	}
}

// TestManyRoomsNeedNoConsumer starts thousands of rooms across two
// gateways at once: every join succeeds, a gift into each sampled room
// reaches all its viewers exactly once, the rooms were started in batches,
// and the reliable stream has no consumer at all, whatever the rooms.
func TestManyRoomsNeedNoConsumer(t *testing.T) {
	e := newEnv(t)
	rooms, sampled := 2000, 100
	if testing.Short() {
		rooms, sampled = 300, 30
	}
	// A thousand viewers from 127.0.0.1 on each gateway: the per-address
	// limits (tested in TestHostileInput) would count them as one flood.
	noEdge := func(c *Config) { c.MaxConnsPerIP, c.HandshakeRate = -1, -1 }
	g1, g2 := e.gateway(noEdge), e.gateway(noEdge)
	type member struct {
		v    *viewer
		room string
	}
	var mu sync.Mutex
	var members []member
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	var failed atomic.Int32
	for i := range rooms {
		room := "many-" + strconv.Itoa(i)
		gws := []*gw{g1}
		switch {
		case i%10 == 0:
			gws = []*gw{g1, g2} // some rooms on both gateways
		case i%2 == 1:
			gws = []*gw{g2}
		}
		for _, g := range gws {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				v, err := g.tryDial(room, testutil.Token(t, "u"+strconv.Itoa(i), protocol.RoleViewer), "")
				if err != nil {
					failed.Add(1)
					return
				}
				typ, raw, err := v.read(20 * time.Second)
				if err != nil || typ != protocol.FrameWelcome {
					failed.Add(1)
					t.Errorf("room %s: first frame %q %s, %v", room, typ, raw, err)
					v.close()
					return
				}
				mu.Lock()
				members = append(members, member{v, room})
				mu.Unlock()
			}()
		}
	}
	wg.Wait()
	defer func() {
		for _, m := range members {
			m.v.close()
		}
	}()
	if n := failed.Load(); n > 0 {
		t.Fatalf("%d of the joins failed", n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := e.js.Stream(ctx, bus.ReliableStream)
	if err != nil {
		t.Fatal(err)
	}
	if n := st.CachedInfo().State.Consumers; n != 0 {
		t.Fatalf("the reliable stream has %d consumers with %d rooms hosted", n, rooms)
	}
	for _, g := range []*gw{g1, g2} {
		s := g.Stats()
		t.Logf("%s: %d rooms started in %d batches (%d requests)", g.ID(), s.RoomsStarted.Load(), s.StartBatches.Load(), s.StartRequests.Load())
		if s.StartRequests.Load() != 2*s.StartBatches.Load() {
			t.Errorf("start requests %d for %d batches: want two per batch", s.StartRequests.Load(), s.StartBatches.Load())
		}
	}
	// A gift into each sampled room reaches every viewer of it once.
	want := map[string]string{}
	for i := 0; i < rooms; i += rooms / sampled {
		room := "many-" + strconv.Itoa(i)
		id := "gift-" + room
		want[room] = id
		e.gift(room, id)
	}
	var rwg sync.WaitGroup
	for _, m := range members {
		id, ok := want[m.room]
		if !ok {
			continue
		}
		rwg.Add(1)
		go func() {
			defer rwg.Done()
			var got []string
			deadline := time.Now().Add(20 * time.Second)
			for len(got) == 0 && time.Now().Before(deadline) {
				typ, raw, err := m.v.read(time.Until(deadline))
				if err != nil {
					break
				}
				if typ == protocol.FrameBatch && strings.Contains(string(raw), `"gift-`) {
					var b protocol.Batch
					_ = json.Unmarshal(raw, &b)
					got = append(got, giftIDs(b.Msgs)...)
				}
			}
			// Anything else would arrive within a flush or two.
			if typ, raw, err := m.v.read(300 * time.Millisecond); err == nil && typ == protocol.FrameBatch && strings.Contains(string(raw), `"gift-`) {
				var b protocol.Batch
				_ = json.Unmarshal(raw, &b)
				got = append(got, giftIDs(b.Msgs)...)
			}
			if len(got) != 1 || got[0] != id {
				t.Errorf("a viewer of %s got %v, want [%s]", m.room, got, id)
			}
		}()
	}
	rwg.Wait()
	if n := st.CachedInfo().State.Consumers; n != 0 {
		t.Fatalf("the reliable stream has %d consumers", n)
	}
}

// TestBurstOfGiftsArrivesInOrder stores a burst of gifts in one room as
// fast as the stream takes them: they reach the viewer all, once, in
// strictly increasing seq, although several goroutines hand the gateway its
// NATS messages (a viewer drops a reliable message whose seq is not above
// the last it saw, so any reordering is a loss).
func TestBurstOfGiftsArrivesInOrder(t *testing.T) {
	e := newEnv(t)
	const room, n = "burst", 600
	g := e.gateway(nil)
	v := g.dial(t, room, "v", "")
	defer v.close()
	v.welcome(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var futures []jetstream.PubAckFuture
	for i := range n {
		m := protocol.Message{ID: "b" + strconv.Itoa(i), Type: protocol.TypeGift, Room: room, User: "u", TS: time.Now().UnixMilli(), Gift: "rose", Count: 1}
		f, err := e.js.PublishAsync(bus.StoreSubject(room), protocol.Encode(m), jetstream.WithMsgID(m.ID))
		if err != nil {
			t.Fatal(err)
		}
		futures = append(futures, f)
	}
	for _, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			t.Fatal(err)
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		}
	}
	msgs, _ := v.collect(t, 20*time.Second, func(m []protocol.Message) bool { return countType(m, protocol.TypeGift) >= n })
	var last uint64
	for _, m := range msgs {
		if m.Type != protocol.TypeGift {
			continue
		}
		if m.Seq <= last {
			t.Fatalf("seq %d after %d: out of order", m.Seq, last)
		}
		last = m.Seq
	}
	if got := countType(msgs, protocol.TypeGift); got != n {
		t.Fatalf("got %d gifts, want %d", got, n)
	}
}
