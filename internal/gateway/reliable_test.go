package gateway

import (
	"strconv"
	"testing"
	"time"

	"github.com/liveroom/liveroom/internal/protocol"
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

func TestReconnectWithSinceReplaysExactlyWhatWasMissed(t *testing.T) {
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

func TestReplayTooFarBehindContinuesOverReconnects(t *testing.T) {
	for _, tc := range []struct {
		name              string
		window, replayMax int
	}{
		{"jetstream part larger than the limit", 2, 4},
		{"jetstream plus memory larger than the limit", 4, 5},
		{"memory alone larger than the limit", 1024, 3},
	} {
		t.Run(tc.name, func(t *testing.T) { testReplayInParts(t, tc.window, tc.replayMax) })
	}
}

func testReplayInParts(t *testing.T, window, replayMax int) {
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
