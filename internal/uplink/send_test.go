package uplink

import (
	"bytes"
	"context"
	"encoding/json"
	"hash/maphash"
	"net/http"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/liveroom/liveroom/internal/bus"
	"github.com/liveroom/liveroom/internal/protocol"
)

func TestDanmakuPublishesOnLiveSubject(t *testing.T) {
	e := newEnv(t)
	u := e.start(nil)
	live := e.subscribe(bus.LiveSubject("r1"))
	text := `<b>"quoted"</b> & emoji 🚀 — ünïcode \ backslash`
	for _, tc := range []struct {
		role string
		prio bool
	}{
		{protocol.RoleViewer, false},
		{protocol.RoleAnchor, true},
		{protocol.RoleAdmin, true},
	} {
		t.Run(tc.role, func(t *testing.T) {
			user := "u_" + tc.role
			before := time.Now().UnixMilli()
			a := u.post("r1", user, tc.role, danmaku(text), nil)
			after := time.Now().UnixMilli()
			if a.status != http.StatusAccepted || a.ID == "" {
				t.Fatalf("got %d %s", a.status, a.raw)
			}
			m, err := live.NextMsg(5 * time.Second)
			if err != nil {
				t.Fatalf("no message on the live subject: %v", err)
			}
			got := decodeMsg(t, m)
			want := protocol.Message{ID: a.ID, Type: protocol.TypeDanmaku, Room: "r1", User: user, Name: user, Role: tc.role, TS: got.TS, Text: text}
			if got != want {
				t.Errorf("message\n got %+v\nwant %+v", got, want)
			}
			if got.TS < before || got.TS > after {
				t.Errorf("ts %d not within [%d, %d]", got.TS, before, after)
			}
			if v, ok := m.Header[bus.HeaderPrio]; ok != tc.prio || (ok && (len(v) != 1 || v[0] != "1")) {
				t.Errorf("%s: header %s = %v (present %v), want present %v", tc.role, bus.HeaderPrio, v, ok, tc.prio)
			}
		})
	}
	// Ids are unique.
	seen := map[string]bool{}
	for i := range 20 {
		a := u.post("r2", "bob"+strconv.Itoa(i), "", danmaku("x"), nil)
		if seen[a.ID] {
			t.Fatalf("duplicate id %s", a.ID)
		}
		seen[a.ID] = true
	}
	if st := u.srv.Stats(); st.Danmaku != 23 {
		t.Errorf("Stats.Danmaku = %d, want 23", st.Danmaku)
	}
}

var giftIDPattern = regexp.MustCompile(`^g[a-z2-7]{24}$`)

func TestGiftIdempotency(t *testing.T) {
	e := newEnv(t)
	u := e.start(nil)
	ctx := context.Background()
	stream, err := e.js.Stream(ctx, bus.ReliableStream)
	if err != nil {
		t.Fatal(err)
	}
	count := func(room protocol.Room) uint64 {
		t.Helper()
		subj := bus.StoreSubject(room)
		info, err := stream.Info(ctx, jetstream.WithSubjectFilter(subj))
		if err != nil {
			t.Fatal(err)
		}
		return info.State.Subjects[subj]
	}

	first := u.post("r1", "alice", "", gift("rocket", 3), key("order-1"))
	if first.status != http.StatusAccepted || !giftIDPattern.MatchString(first.ID) || first.Seq == 0 {
		t.Fatalf("first gift: %d %s", first.status, first.raw)
	}
	// A retry answers the original id and seq. The key identifies the gift:
	// even a retry with another body gets the first gift's answer, and only
	// the first gift is stored.
	again := u.post("r1", "alice", "", gift("rose", 1), key("order-1"))
	if again.status != http.StatusAccepted || again.ID != first.ID || again.Seq != first.Seq {
		t.Fatalf("retry: %d %s, want id %s seq %d", again.status, again.raw, first.ID, first.Seq)
	}
	if n := count("r1"); n != 1 {
		t.Fatalf("stream holds %d messages for r1, want 1", n)
	}
	stored, err := stream.GetLastMsgForSubject(ctx, bus.StoreSubject("r1"))
	if err != nil {
		t.Fatal(err)
	}
	if stored.Sequence != first.Seq || stored.Header.Get(jetstream.MsgIDHeader) != first.ID {
		t.Errorf("stored seq %d msg-id %q, want %d %q", stored.Sequence, stored.Header.Get(jetstream.MsgIDHeader), first.Seq, first.ID)
	}
	var got protocol.Message
	if err := jsonUnmarshalStrict(stored.Data, &got); err != nil {
		t.Fatal(err)
	}
	want := protocol.Message{ID: first.ID, Type: protocol.TypeGift, Room: "r1", User: "alice", Name: "alice", Role: protocol.RoleViewer, TS: got.TS, Gift: "rocket", Count: 3}
	if got != want || got.TS == 0 {
		t.Errorf("stored\n got %+v\nwant %+v", got, want)
	}

	// Another key is another gift; the same key from another user or in
	// another room is another gift too.
	second := u.post("r1", "alice", "", gift("rose", 1), key("order-2"))
	if second.status != http.StatusAccepted || second.ID == first.ID || second.Seq <= first.Seq {
		t.Fatalf("second key: %d %s (first %s/%d)", second.status, second.raw, first.ID, first.Seq)
	}
	bob := u.post("r1", "bob", "", gift("rocket", 3), key("order-1"))
	other := u.post("r9", "alice", "", gift("rocket", 3), key("order-1"))
	if bob.ID == first.ID || other.ID == first.ID || bob.ID == other.ID || bob.Seq <= second.Seq || other.Seq <= second.Seq {
		t.Fatalf("key must be scoped to room and user: first %s bob %s other %s", first.raw, bob.raw, other.raw)
	}
	if n := count("r1"); n != 3 {
		t.Fatalf("stream holds %d messages for r1, want 3", n)
	}

	// Concurrent retries of one gift: one stored message, one answer.
	const n = 8
	answers := make([]answer, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { answers[i] = u.post("r2", "carol", "", gift("castle", 1), key("burst")) })
	}
	wg.Wait()
	for _, a := range answers {
		if a.status != http.StatusAccepted || a.ID != answers[0].ID || a.Seq != answers[0].Seq {
			t.Fatalf("concurrent retries disagree: %s vs %s", a.raw, answers[0].raw)
		}
	}
	if c := count("r2"); c != 1 {
		t.Fatalf("stream holds %d messages for r2, want 1", c)
	}
	st := u.srv.Stats()
	if st.Gifts != 5+n || st.GiftDuplicates != n {
		t.Errorf("stats: gifts %d duplicates %d, want %d and %d", st.Gifts, st.GiftDuplicates, 5+n, n)
	}
}

func TestGiftIDIsDeterministic(t *testing.T) {
	a := giftID("r1", "alice", "k")
	if a != giftID("r1", "alice", "k") || !giftIDPattern.MatchString(a) {
		t.Fatalf("giftID = %q", a)
	}
	// JetStream de-duplicates on the id: it must not change across a
	// deploy, or a retry spanning one would store the gift twice.
	if want := "g2hjebxsnmyn2yojkuamcw73c"; a != want {
		t.Fatalf("giftID = %q, want %q", a, want)
	}
	for _, other := range []string{giftID("r1", "alice", "k2"), giftID("r2", "alice", "k"), giftID("r1", "bob", "k"), giftID("r1", "alice|k", "")} {
		if other == a {
			t.Errorf("giftID collision: %q", other)
		}
	}
}

// TestGiftUnavailable: without a stream to store it, a gift is never
// answered 202.
func TestGiftUnavailable(t *testing.T) {
	t.Run("stream deleted", func(t *testing.T) {
		e := newEnv(t)
		u := e.start(func(c *Config) { c.PublishTimeout = time.Second })
		if err := e.js.DeleteStream(context.Background(), bus.ReliableStream); err != nil {
			t.Fatal(err)
		}
		a := u.post("r1", "alice", "", gift("rose", 1), key("k1"))
		checkUnavailable(t, a)
		// The live path does not depend on JetStream.
		if d := u.post("r1", "alice", "", danmaku("still here"), nil); d.status != http.StatusAccepted {
			t.Errorf("danmaku without the stream: %d %s", d.status, d.raw)
		}
		// Once the stream is back, the retry with the same key succeeds.
		if err := bus.EnsureStreams(context.Background(), e.js, bus.StreamConfig{}); err != nil {
			t.Fatal(err)
		}
		if a := u.post("r1", "alice", "", gift("rose", 1), key("k1")); a.status != http.StatusAccepted || a.Seq != 1 {
			t.Errorf("retry after recovery: %d %s", a.status, a.raw)
		}
	})
	t.Run("server stopped", func(t *testing.T) {
		e := newEnv(t)
		u := e.start(func(c *Config) { c.PublishTimeout = 300 * time.Millisecond })
		e.nats.Close()
		a := u.post("r1", "alice", "", gift("rose", 1), key("k1"))
		checkUnavailable(t, a)
		if st := u.srv.Stats(); st.Gifts != 0 || st.Rejected[protocol.CodeUnavailable] != 1 {
			t.Errorf("stats: %+v", st)
		}
	})
}

func checkUnavailable(t *testing.T, a answer) {
	t.Helper()
	if a.status != http.StatusServiceUnavailable || a.Error.Code != protocol.CodeUnavailable {
		t.Fatalf("got %d %s, want 503 unavailable", a.status, a.raw)
	}
	if a.header.Get("Retry-After") != "1" || a.Error.RetryAfterMS != unavailableRetryMS {
		t.Errorf("Retry-After %q retry_after_ms %d", a.header.Get("Retry-After"), a.Error.RetryAfterMS)
	}
}

func TestUserRateLimit(t *testing.T) {
	e := newEnv(t)
	u := e.start(func(c *Config) { c.UserRate = 0.5; c.UserBurst = 3 })
	for i := range 3 {
		if a := u.post("r1", "alice", "", danmaku("hi"), nil); a.status != http.StatusAccepted {
			t.Fatalf("message %d within the burst: %d %s", i, a.status, a.raw)
		}
	}
	// One token every 2 s: the wait is at most 2 s.
	wantRateLimited(t, u.post("r1", "alice", "", danmaku("one too many"), nil), protocol.CodeUserRateLimited)
	if b := u.post("r1", "bob", "", danmaku("hi"), nil); b.status != http.StatusAccepted {
		t.Errorf("another user is limited too: %d %s", b.status, b.raw)
	}
	// Gifts and likes are not danmaku.
	if g := u.post("r1", "alice", "", gift("rose", 1), key("k")); g.status != http.StatusAccepted {
		t.Errorf("gift of a limited user: %d %s", g.status, g.raw)
	}
	if l := u.post("r1", "alice", "", like(1), nil); l.status != http.StatusAccepted {
		t.Errorf("like of a limited user: %d %s", l.status, l.raw)
	}
}

func TestRoomRateLimit(t *testing.T) {
	e := newEnv(t)
	// Half a message per second, burst 1: the second message within 2 s is
	// over the cap whatever the speed of the machine.
	u := e.start(func(c *Config) { c.RoomRate = 0.5 })
	live := e.subscribe(bus.LiveSubject("busy"))
	if a := u.post("busy", "u1", "", danmaku("hi"), nil); a.status != http.StatusAccepted {
		t.Fatalf("u1: %d %s", a.status, a.raw)
	}
	wantRateLimited(t, u.post("busy", "u3", "", danmaku("hi"), nil), protocol.CodeRoomRateLimited)
	if b := u.post("calm", "u3", "", danmaku("hi"), nil); b.status != http.StatusAccepted {
		t.Errorf("another room is limited too: %d %s", b.status, b.raw)
	}
	if got := e.barrier(u, live); len(got) != 1 {
		t.Errorf("%d messages on the busy room, want 1", len(got))
	}
}

// wantRateLimited fails unless a is a 429 with code whose wait, at most 2 s,
// is announced in whole seconds.
func wantRateLimited(t *testing.T, a answer, code string) {
	t.Helper()
	if a.status != http.StatusTooManyRequests || a.Error.Code != code {
		t.Fatalf("got %d %s, want 429 %s", a.status, a.raw, code)
	}
	if ra := a.header.Get("Retry-After"); ra != "1" && ra != "2" || a.Error.RetryAfterMS < 1 || a.Error.RetryAfterMS > 2000 {
		t.Errorf("Retry-After %q retry_after_ms %d", ra, a.Error.RetryAfterMS)
	}
}

// TestAdmitRefundsUserToken pins the order of the two buckets with a fixed
// clock: a room rejection gives the user's token back, a user rejection
// takes nothing from the room.
func TestAdmitRefundsUserToken(t *testing.T) {
	e := newEnv(t)
	u := e.start(func(c *Config) { c.UserRate = 0.001; c.UserBurst = 1; c.RoomRate = 0.001 })
	s := u.srv
	now := time.Unix(1_700_000_000, 0)
	check := func(user protocol.User, room protocol.Room, want string) {
		t.Helper()
		got := ""
		if perr := s.admitDanmaku(now, user, room); perr != nil {
			got = perr.Body.Code
			if perr.Body.RetryAfterMS < 1 {
				t.Errorf("%s in %s: retry %d ms", user, room, perr.Body.RetryAfterMS)
			}
		}
		if got != want {
			t.Fatalf("%s in %s: got %q, want %q", user, room, got, want)
		}
	}
	check("a", "r", "")                            // a and r spent
	check("b", "r", protocol.CodeRoomRateLimited)  // b refunded
	check("b", "other", "")                        // so b still has its token
	check("a", "r2", protocol.CodeUserRateLimited) // a is out, r2 untouched
	check("c", "r2", "")                           // so r2 still has its token
	check("d", "r2", protocol.CodeRoomRateLimited) // and now it is spent
	check("d", "r3", "")                           // d was refunded
	check("a", "r3", protocol.CodeUserRateLimited) // still out
	check("e", "r3", protocol.CodeRoomRateLimited) // r3 spent by d only
}

func TestLimiterEviction(t *testing.T) {
	l := newLimiterSet(2, 5) // refills in 2.5 s; idle = 6 s
	t0 := time.Unix(1_700_000_000, 0)
	for i := range 100 {
		l.take("user"+strconv.Itoa(i), t0, 1)
	}
	l.take("user7", t0.Add(5*time.Second), 1)
	if n := l.sweep(t0.Add(l.idle - time.Nanosecond)); n != 0 || l.size() != 100 {
		t.Fatalf("evicted %d early (size %d)", n, l.size())
	}
	if n := l.sweep(t0.Add(l.idle)); n != 99 || l.size() != 1 {
		t.Fatalf("evicted %d, size %d; want 99 and 1", n, l.size())
	}
	// A used limiter is charged, not replaced, until it is evicted.
	if _, _, ok := l.take("user7", t0.Add(6*time.Second), 5); !ok {
		t.Fatal("the bucket of a live key did not refill")
	}
	if _, _, ok := l.take("user7", t0.Add(6*time.Second), 1); ok {
		t.Fatal("the bucket of a live key was replaced by a full one")
	}
}

func TestLimiterBound(t *testing.T) {
	l := newLimiterSet(2, 5)
	now := time.Unix(1_700_000_000, 0)
	added := 0
	for i := 0; added < maxLimitersPerShard+50; i++ {
		k := "k" + strconv.Itoa(i)
		if maphashShard(l, k) != 0 {
			continue
		}
		l.take(k, now, 1)
		added++
	}
	if n := l.m.ShardLen(0); n != maxLimitersPerShard {
		t.Fatalf("shard holds %d limiters, bound is %d", n, maxLimitersPerShard)
	}
	// Idle entries go first when the bound is reached.
	for i := 0; ; i++ {
		k := "fresh" + strconv.Itoa(i)
		if maphashShard(l, k) == 0 {
			l.take(k, now.Add(l.idle), 1)
			break
		}
	}
	if n := l.size(); n != 1 {
		t.Fatalf("size %d after an insert that found every entry idle", n)
	}
}

func maphashShard(l *limiterSet, k string) uint64 {
	return maphash.String(l.seed, k) % limiterShards
}

func jsonUnmarshalStrict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}
