package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"runtime"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/liveroom/liveroom/internal/bus"
	"github.com/liveroom/liveroom/internal/protocol"
	"github.com/liveroom/liveroom/internal/testutil"
)

// talk sends n danmaku ("d0".."d<n-1>") and m gifts ("<room>-g0"...) to
// room, a gift after every few danmaku, plus a like total (never history),
// and returns the gifts' sequences.
func (e *env) talk(room string, n, m int) []uint64 {
	e.t.Helper()
	var seqs []uint64
	for i := range n {
		e.danmaku(room, "d"+strconv.Itoa(i), false)
		if len(seqs) < m && i%2 == 1 {
			seqs = append(seqs, e.gift(room, room+"-g"+strconv.Itoa(len(seqs))))
		}
	}
	for len(seqs) < m {
		seqs = append(seqs, e.gift(room, room+"-g"+strconv.Itoa(len(seqs))))
	}
	e.like(room, 1, 7)
	return seqs
}

// talkAndStop has 30 danmaku and 15 gifts (and a like) sent to room, the
// only room of the test, while a gateway hosts it, waits until its viewer
// got them all and the live buffer holds them, and stops that gateway.
func (e *env) talkAndStop(t *testing.T, room string) []uint64 {
	t.Helper()
	old := e.gateway(func(c *Config) { c.ViewerBudget = 1e6 })
	v := old.dial(t, room, "early", "")
	v.welcome(t)
	seqs := e.talk(room, 30, 15)
	v.collectTalk(t, 30, 15)
	// The live buffer captures core publishes on its own time.
	testutil.Eventually(t, 10*time.Second, "the live buffer holds the danmaku", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		st, err := e.js.Stream(ctx, bus.LiveStream)
		return err == nil && st.CachedInfo().State.Msgs >= 31
	})
	v.close()
	_ = old.Close()
	return seqs
}

// readHistory reads a first join's welcome and, when it announces one, the
// history frame right after it.
func (v *viewer) readHistory(t *testing.T) (protocol.Welcome, []protocol.Message) {
	t.Helper()
	w := v.welcome(t)
	if w.History == 0 {
		return w, nil
	}
	typ, raw := v.next(t, 10*time.Second)
	if typ != protocol.FrameHistory {
		t.Fatalf("the welcome announced %d history messages, then came %q: %s", w.History, typ, raw)
	}
	var h protocol.History
	if err := json.Unmarshal(raw, &h); err != nil {
		t.Fatal(err)
	}
	if h.Room != w.Room || len(h.Msgs) != w.History {
		t.Fatalf("history of room %q with %d messages after a welcome of %q announcing %d", h.Room, len(h.Msgs), w.Room, w.History)
	}
	return w, h.Msgs
}

// checkHistory checks that msgs are the last danmaku ("d<from>".."d<to-1>")
// and the last gifts (seqs), each in order, merged by ts, gifts no newer
// than the welcome.
func checkHistory(t *testing.T, w protocol.Welcome, msgs []protocol.Message, from, to int, seqs []uint64) {
	t.Helper()
	var d []string
	var g []uint64
	for i, m := range msgs {
		if i > 0 && m.TS < msgs[i-1].TS {
			t.Fatalf("history not in ts order at %d: %d after %d", i, m.TS, msgs[i-1].TS)
		}
		switch m.Type {
		case protocol.TypeDanmaku:
			d = append(d, m.Text)
		case protocol.TypeGift:
			if m.Seq == 0 || m.Seq > w.Seq {
				t.Fatalf("history gift with seq %d, welcome seq %d", m.Seq, w.Seq)
			}
			g = append(g, m.Seq)
		default:
			t.Fatalf("history holds a %q message: %+v", m.Type, m)
		}
	}
	var want []string
	for i := from; i < to; i++ {
		want = append(want, "d"+strconv.Itoa(i))
	}
	if !slices.Equal(d, want) {
		t.Fatalf("history danmaku %v, want %v in order", d, want)
	}
	if !slices.Equal(g, seqs) {
		t.Fatalf("history gifts %v, want %v", g, seqs)
	}
}

// collectTalk reads until n danmaku and m gifts arrived.
func (v *viewer) collectTalk(t *testing.T, n, m int) {
	t.Helper()
	v.collect(t, 10*time.Second, func(msgs []protocol.Message) bool {
		return countType(msgs, protocol.TypeDanmaku) == n && countType(msgs, protocol.TypeGift) == m
	})
}

// TestLateJoinerGetsHistory: a viewer joining a room after 30 danmaku and
// 15 gifts gets the last 20 and 10 in one history frame, in order, right
// after its welcome, and none of them again; a reconnect with since= gets
// what it missed and no history.
func TestLateJoinerGetsHistory(t *testing.T) {
	e := newEnv(t)
	// No sampling: the first viewer sees every danmaku, so the test knows
	// when all have been pushed.
	g := e.gateway(func(c *Config) { c.ViewerBudget = 1e6 })
	first := g.dial(t, "hist", "early", "")
	defer first.close()
	if w, h := first.readHistory(t); w.History != 0 || h != nil {
		t.Fatalf("the first viewer of a new room got a history of %d", w.History)
	}
	seqs := e.talk("hist", 30, 15)
	first.collectTalk(t, 30, 15)

	late := g.dial(t, "hist", "late", "")
	defer late.close()
	w, msgs := late.readHistory(t)
	checkHistory(t, w, msgs, 10, 30, seqs[5:])

	// What follows is live traffic only: the next danmaku, nothing of the
	// history again.
	e.danmaku("hist", "after", false)
	got, _ := late.collect(t, 10*time.Second, func(m []protocol.Message) bool { return countType(m, protocol.TypeDanmaku) == 1 })
	for _, m := range got {
		if m.Type == protocol.TypeDanmaku && m.Text != "after" || m.Type == protocol.TypeGift {
			t.Fatalf("a history message came again as a batch: %+v", m)
		}
	}

	// A reconnect with since= gets what it missed, never a history.
	gift := e.gift("hist", "hist-missed")
	late.collect(t, 10*time.Second, func(m []protocol.Message) bool { return countType(m, protocol.TypeGift) == 1 })
	re := g.dial(t, "hist", "late", "&since="+strconv.FormatUint(w.Seq, 10))
	defer re.close()
	rw := re.welcome(t)
	if rw.History != 0 || rw.Replayed != 1 {
		t.Fatalf("reconnect welcome: history %d, replayed %d; want 0 and 1", rw.History, rw.Replayed)
	}
	typ, raw := re.next(t, 10*time.Second)
	if typ != protocol.FrameBatch {
		t.Fatalf("after a reconnect's welcome came %q: %s", typ, raw)
	}
	var b protocol.Batch
	_ = json.Unmarshal(raw, &b)
	if len(b.Msgs) != 1 || b.Msgs[0].Seq != gift {
		t.Fatalf("replay %+v, want the one gift %d", b.Msgs, gift)
	}
	if n := g.Stats().HistoryFrames.Load(); n != 1 {
		t.Fatalf("%d history frames sent, want 1 (the late joiner's)", n)
	}
}

// TestHistoryOff: with both bounds off no joiner gets a history and no room
// keeps a ring; with only gifts off the history holds danmaku only.
func TestHistoryOff(t *testing.T) {
	e := newEnv(t)
	off := e.gateway(func(c *Config) { c.ViewerBudget = 1e6; c.HistoryDanmaku, c.HistoryGifts = -1, -1 })
	danmakuOnly := e.gateway(func(c *Config) { c.ViewerBudget = 1e6; c.HistoryGifts = -1 })
	var early []*viewer
	for _, g := range []*gw{off, danmakuOnly} {
		v := g.dial(t, "quiet-history", "early", "")
		defer v.close()
		v.readHistory(t)
		early = append(early, v)
	}
	e.talk("quiet-history", 5, 3)
	for _, v := range early {
		v.collectTalk(t, 5, 3)
	}
	late := off.dial(t, "quiet-history", "late", "")
	defer late.close()
	if w, _ := late.readHistory(t); w.History != 0 {
		t.Fatalf("history off, yet the welcome announces %d", w.History)
	}
	r := off.hub.lookup("quiet-history")
	r.mu.Lock()
	hist := r.hist
	r.mu.Unlock()
	if hist != nil {
		t.Fatal("history off, yet the room keeps a ring")
	}
	late2 := danmakuOnly.dial(t, "quiet-history", "late", "")
	defer late2.close()
	w, msgs := late2.readHistory(t)
	checkHistory(t, w, msgs, 0, 5, nil)
}

// TestHistoryAfterGatewayRestart: a gateway that starts a room reads its
// history from the streams, gifts from the reliable stream and danmaku from
// the live buffer, so a late joiner on a new gateway process sees the same
// as on the old one; rooms with nothing stored cost no request of their
// own.
func TestHistoryAfterGatewayRestart(t *testing.T) {
	e := newEnv(t)
	seqs := e.talkAndStop(t, "restart")

	// Default sampling (history is not sampled), and a start that waits for
	// its history however slow the machine is.
	g := e.gateway(func(c *Config) { c.HistoryWait = 10 * time.Second })
	late := g.dial(t, "restart", "late", "")
	defer late.close()
	w, msgs := late.readHistory(t)
	checkHistory(t, w, msgs, 10, 30, seqs[5:])
	// The room's first read: one multi-last of the live buffer for the
	// batch, then a tail read of each stream for this room.
	reqs := g.Stats().HistoryRequests.Load()
	t.Logf("history requests for one room with 31 live and 15 reliable messages stored: %d", reqs)
	if reqs < 3 || reqs > 1+2*6 {
		t.Fatalf("%d history requests for one room", reqs)
	}

	// Fifty rooms with nothing stored, started together: the batch's
	// multi-last says so, and no room gets a request of its own.
	batches := g.Stats().StartBatches.Load()
	done := make(chan *viewer, 50)
	for i := range 50 {
		go func() {
			v, err := g.tryDial("empty-"+strconv.Itoa(i), testutil.Token(t, "u"+strconv.Itoa(i), protocol.RoleViewer), "")
			if err != nil {
				t.Error(err)
			}
			done <- v
		}()
	}
	for range 50 {
		if v := <-done; v != nil {
			if w, _ := v.readHistory(t); w.History != 0 {
				t.Errorf("an empty room has a history of %d", w.History)
			}
			v.close()
		}
	}
	nb := g.Stats().StartBatches.Load() - batches
	if n := g.Stats().HistoryRequests.Load() - reqs; n != nb {
		t.Fatalf("50 empty rooms in %d start batches cost %d history requests, want one per batch", nb, n)
	}
}

func TestHistoryRing(t *testing.T) {
	str := func(g *msgRing) string {
		var b []byte
		for _, m := range g.ordered(nil) {
			b = append(b, m...)
		}
		return string(b)
	}
	var g msgRing
	for i := range 7 {
		g.add([]byte{byte('a' + i)}, 5)
	}
	if str(&g) != "cdefg" || cap(g.msgs) != 5 {
		t.Fatalf("ring %q (cap %d), want cdefg in 5", str(&g), cap(g.msgs))
	}
	var h msgRing
	h.add([]byte("a"), 4)
	h.add([]byte("b"), 4)
	h.prepend([][]byte{[]byte("x"), []byte("y"), []byte("z")}, 4)
	if str(&h) != "yzab" || !h.contains([]byte("z")) || h.contains([]byte("x")) {
		t.Fatalf("prepended ring %q, want yzab", str(&h))
	}
	h.add([]byte("c"), 4)
	if str(&h) != "zabc" {
		t.Fatalf("ring %q after an add, want zabc", str(&h))
	}
}

// TestSeedHistory: what a start reads from the streams goes before what the
// room received meanwhile, without the danmaku it already has (in its ring
// or waiting for the flush), without likes or notices; gifts get their seq.
// A room quiet for HistoryIdle drops its ring.
func TestSeedHistory(t *testing.T) {
	s := &Server{cfg: Config{HistoryDanmaku: 4, HistoryGifts: 2, HistoryIdle: time.Minute}}
	r := newRoom(s, "seed", nil)
	msg := func(id, typ string, ts int64) []byte {
		return protocol.Encode(protocol.Message{ID: id, Type: typ, TS: ts, Text: "t" + id})
	}
	now := time.Now()
	r.mu.Lock()
	r.noteHistory(pendingMsg{b: msg("d5", protocol.TypeDanmaku, 5), kind: kindLive}, now)
	r.pending = append(r.pending, pendingMsg{b: msg("d6", protocol.TypeDanmaku, 6), kind: kindLive})
	r.mu.Unlock()
	var live []bus.StoredMsg
	for i, b := range [][]byte{msg("d2", protocol.TypeDanmaku, 2), msg("l1", protocol.TypeLike, 2), msg("d3", protocol.TypeDanmaku, 3),
		msg("d4", protocol.TypeDanmaku, 4), msg("d5", protocol.TypeDanmaku, 5), msg("d6", protocol.TypeDanmaku, 6)} {
		live = append(live, bus.StoredMsg{Seq: uint64(10 + i), Data: b})
	}
	r.seedHistory(bus.LiveStream, live, now)
	// The last gift first (the multi-last's), then the read that holds it
	// too.
	g7 := bus.StoredMsg{Seq: 7, Data: msg("g7", protocol.TypeGift, 7)}
	r.seedHistory(bus.ReliableStream, []bus.StoredMsg{g7}, now)
	r.seedHistory(bus.ReliableStream, []bus.StoredMsg{
		{Seq: 1, Data: msg("g1", protocol.TypeGift, 1)}, {Seq: 3, Data: msg("g3", protocol.TypeGift, 3)},
		{Seq: 4, Data: msg("n4", protocol.TypeNotice, 4)}, g7,
	}, now)
	r.mu.Lock()
	f, n := r.historyFrame(now, false)
	r.mu.Unlock()
	if f == nil {
		t.Fatal("no history frame")
	}
	wf, err := ws.ReadFrame(bytes.NewReader(f.b))
	if err != nil || wf.Header.OpCode != ws.OpText {
		t.Fatalf("history frame: %v %v", wf.Header, err)
	}
	var h protocol.History
	if err := json.Unmarshal(wf.Payload, &h); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range h.Msgs {
		got = append(got, m.ID+"#"+strconv.FormatUint(m.Seq, 10))
	}
	want := []string{"d2#0", "d3#0", "g3#3", "d4#0", "d5#0", "g7#7"} // a tie in ts: danmaku first
	if !slices.Equal(got, want) || n != len(want) {
		t.Fatalf("history %v (%d), want %v", got, n, want)
	}
	r.mu.Lock()
	r.tickHistory(now.Add(30 * time.Second))
	kept := r.hist != nil
	r.tickHistory(now.Add(time.Minute))
	dropped := r.hist == nil
	r.mu.Unlock()
	if !kept || !dropped {
		t.Fatalf("ring kept after 30s: %v, dropped after HistoryIdle: %v", kept, dropped)
	}
}

// BenchmarkHistoryMemory reports the heap one hosted room costs in this
// package's own structures (the room, without its NATS subscription and
// connections): idle (no traffic, so no ring), and with a full history of
// 20 danmaku and 10 gifts of the uplink's usual size (each message its own
// allocation, as NATS delivers them; in a real room the gifts' bytes are
// shared with the reliable window, the danmaku's are kept only by history).
func BenchmarkHistoryMemory(b *testing.B) {
	s := &Server{cfg: Config{HistoryDanmaku: 20, HistoryGifts: 10, HistoryIdle: time.Minute}}
	const rooms = 2000
	now := time.Now()
	msg := func(typ string, i int) []byte {
		m := protocol.Message{ID: "01JE" + strconv.Itoa(1e15+i), Type: typ, Room: "room-12345", User: "user-" + strconv.Itoa(i),
			Name: "Viewer " + strconv.Itoa(i), Role: protocol.RoleViewer, TS: now.UnixMilli() + int64(i)}
		if typ == protocol.TypeGift {
			m.Gift, m.Count = "rocket", 1
			return protocol.WithSeq(protocol.Encode(m), uint64(i+1))
		}
		m.Text = "what a play, did you see that one?"
		return protocol.Encode(m)
	}
	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	var idle, full float64
	for range b.N {
		before := heap()
		rs := make([]*room, rooms)
		for i := range rs {
			rs[i] = newRoom(s, protocol.Room("room-"+strconv.Itoa(i)), nil)
		}
		mid := heap()
		for _, r := range rs {
			for i := range 20 {
				r.noteHistory(pendingMsg{b: msg(protocol.TypeDanmaku, i), kind: kindLive}, now)
			}
			for i := range 10 {
				r.noteHistory(pendingMsg{b: msg(protocol.TypeGift, i), kind: kindReliable}, now)
			}
		}
		after := heap()
		runtime.KeepAlive(rs)
		idle = float64(mid-before) / rooms
		full = float64(after-mid) / rooms
	}
	b.ReportMetric(idle, "idle-B/room")
	b.ReportMetric(full, "history-B/room")
	b.ReportMetric(float64(len(msg(protocol.TypeDanmaku, 0))), "danmaku-B")
}

// TestHistoryWithoutLiveBuffer: when the live buffer cannot be read (a
// stream from a version without Direct Get), a gateway starting a room
// still welcomes its viewers, with the gifts' history only.
func TestHistoryWithoutLiveBuffer(t *testing.T) {
	e := newEnv(t)
	seqs := e.talkAndStop(t, "nolive")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := e.js.Stream(ctx, bus.LiveStream)
	if err != nil {
		t.Fatal(err)
	}
	cfg := st.CachedInfo().Config
	cfg.AllowDirect = false
	if _, err := e.js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	g := e.gateway(func(c *Config) { c.HistoryWait = 10 * time.Second })
	late := g.dial(t, "nolive", "late", "")
	defer late.close()
	w, msgs := late.readHistory(t)
	checkHistory(t, w, msgs, 0, 0, seqs[5:])
}

// TestBanClearsHistory: when a user is banned from a room, late joiners no
// longer see their danmaku in the history, on the gateway that hosts the
// room and on one that starts it afterwards (from the live buffer).
func TestBanClearsHistory(t *testing.T) {
	e := newEnv(t)
	g := e.gateway(func(c *Config) { c.ViewerBudget = 1e6 })
	v := g.dial(t, "banned", "early", "")
	defer v.close()
	v.welcome(t)
	for i := range 6 {
		user := "u1"
		if i%2 == 1 {
			user = "spammer"
		}
		m := protocol.Message{ID: "b" + strconv.Itoa(i), Type: protocol.TypeDanmaku, Room: "banned", User: user, TS: time.Now().UnixMilli(), Text: "d" + strconv.Itoa(i)}
		if err := e.nc.Publish(bus.LiveSubject("banned"), protocol.Encode(m)); err != nil {
			t.Fatal(err)
		}
	}
	v.collectTalk(t, 6, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	testutil.Eventually(t, 10*time.Second, "the live buffer holds the danmaku", func() bool {
		st, err := e.js.Stream(ctx, bus.LiveStream)
		return err == nil && st.CachedInfo().State.Msgs >= 6
	})
	kv, err := e.js.KeyValue(ctx, bus.ModerationKV)
	if err != nil {
		t.Fatal(err)
	}
	ban, _ := json.Marshal(map[string]any{"until_ms": time.Now().Add(time.Hour).UnixMilli(), "duration_s": 3600, "at_ms": time.Now().UnixMilli()})
	if _, err := kv.Put(ctx, "banned.ban.spammer", ban); err != nil {
		t.Fatal(err)
	}
	texts := func(gw *gw) []string {
		late := gw.dial(t, "banned", "late", "")
		defer late.close()
		_, msgs := late.readHistory(t)
		var out []string
		for _, m := range msgs {
			out = append(out, m.User+":"+m.Text)
		}
		return out
	}
	want := []string{"u1:d0", "u1:d2", "u1:d4"}
	testutil.Eventually(t, 10*time.Second, "the spammer's danmaku gone from the history", func() bool {
		return slices.Equal(texts(g), want)
	})
	fresh := e.gateway(func(c *Config) { c.HistoryWait = 10 * time.Second })
	if got := texts(fresh); !slices.Equal(got, want) {
		t.Fatalf("history on a gateway started after the ban: %v, want %v", got, want)
	}
}
