package moderation

import (
	"context"
	"crypto/sha256"
	"encoding/base32"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/liveroom/liveroom/internal/auth"
	"github.com/liveroom/liveroom/internal/bus"
	"github.com/liveroom/liveroom/internal/protocol"
	"github.com/liveroom/liveroom/internal/testutil"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type fixture struct {
	nc    *nats.Conn
	js    jetstream.JetStream
	svc   *Service
	other *Cache // a second process's view, fed by its own watch
	seen  chan Change
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	_, nc, js := testutil.StartBackbone(t)
	ctx := context.Background()
	c, err := NewCache(ctx, CacheConfig{JS: js, Logger: testutil.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	svc, err := NewService(ctx, Config{NC: nc, JS: js, Cache: c, Verifier: testutil.Verifier(t), Logger: testutil.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{nc: nc, js: js, svc: svc, seen: make(chan Change, 64)}
	f.other, err = NewCache(ctx, CacheConfig{JS: js, Logger: testutil.Logger(), OnChange: func(ch Change) { f.seen <- ch }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.other.Close)
	return f
}

var admin = auth.Identity{User: "boss", Name: "boss", Role: protocol.RoleAdmin}

func (f *fixture) apply(t *testing.T, room string, who auth.Identity, req Request) (Result, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return f.svc.Apply(ctx, protocol.Room(room), who, req, "")
}

func (f *fixture) must(t *testing.T, room string, who auth.Identity, req Request) Result {
	t.Helper()
	res, err := f.apply(t, room, who, req)
	if err != nil {
		t.Fatalf("%s: %v", req.Action, err)
	}
	return res
}

func TestMuteIsSeenByAnotherCacheAndIsIdempotent(t *testing.T) {
	f := newFixture(t)
	sub, err := f.nc.SubscribeSync(bus.UserSubject("u1"))
	if err != nil {
		t.Fatal(err)
	}
	req := Request{Action: ActionMute, User: "u1", DurationS: 600, Reason: "spam"}
	res := f.must(t, "r1", admin, req)
	if !res.Changed || res.UntilMS < time.Now().Add(599*time.Second).UnixMilli() {
		t.Fatalf("first mute: %+v", res)
	}
	testutil.Eventually(t, 2*time.Second, "the other cache sees the mute", func() bool {
		_, ok := f.other.Muted("r1", "u1", time.Now())
		return ok
	})
	if _, ok := f.other.Muted("r2", "u1", time.Now()); ok {
		t.Fatal("a mute in r1 applies in r2")
	}
	again := f.must(t, "r1", admin, req)
	if again.Changed || again.UntilMS != res.UntilMS {
		t.Fatalf("repeated mute changed something: %+v then %+v", res, again)
	}
	m, err := sub.NextMsg(2 * time.Second)
	if err != nil {
		t.Fatalf("the user got no notice: %v", err)
	}
	var n protocol.Message
	if err := json.Unmarshal(m.Data, &n); err != nil || n.Type != protocol.TypeNotice || n.Action != ActionMute || n.Room != "r1" || n.UntilMS != res.UntilMS || n.Text != "spam" {
		t.Fatalf("notice %s (%v)", m.Data, err)
	}
	un := f.must(t, "r1", admin, Request{Action: ActionUnmute, User: "u1"})
	if !un.Changed {
		t.Fatalf("unmute: %+v", un)
	}
	testutil.Eventually(t, 2*time.Second, "the other cache sees the unmute", func() bool {
		_, ok := f.other.Muted("r1", "u1", time.Now())
		return !ok
	})
	if un2 := f.must(t, "r1", admin, Request{Action: ActionUnmute, User: "u1"}); un2.Changed {
		t.Fatalf("second unmute changed something: %+v", un2)
	}
}

func TestBanExpiresByItself(t *testing.T) {
	f := newFixture(t)
	res := f.must(t, "r1", admin, Request{Action: ActionBan, User: "u2", DurationS: 1})
	testutil.Eventually(t, 2*time.Second, "the other cache sees the ban", func() bool {
		_, ok := f.other.Banned("r1", "u2", time.Now())
		return ok
	})
	select {
	case ch := <-f.seen:
		if ch.Kind != KindBan || ch.Room != "r1" || ch.User != "u2" || ch.Deleted || ch.Sanction.UntilMS != res.UntilMS {
			t.Fatalf("change %+v", ch)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("OnChange not called")
	}
	testutil.Eventually(t, 3*time.Second, "the ban ends", func() bool {
		_, ok := f.other.Banned("r1", "u2", time.Now())
		return !ok
	})
	// The sweeper deletes the expired key; readers saw no difference.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); f.svc.Run(ctx, 50*time.Millisecond) }()
	kv, err := f.js.KeyValue(context.Background(), bus.ModerationKV)
	if err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 3*time.Second, "the expired ban is deleted", func() bool {
		_, err := kv.Get(context.Background(), "r1.ban.u2")
		return err != nil
	})
	cancel()
	<-done
}

func TestRoomControlsAndAnchor(t *testing.T) {
	f := newFixture(t)
	anchor := auth.Identity{User: "star", Role: protocol.RoleAnchor}
	viewer := auth.Identity{User: "v1", Role: protocol.RoleViewer}
	got, err := f.svc.ClaimAnchor(context.Background(), "show", "star")
	if err != nil || got != "star" {
		t.Fatalf("claim: %q %v", got, err)
	}
	if got, _ := f.svc.ClaimAnchor(context.Background(), "show", "other"); got != "star" {
		t.Fatalf("a second claim took the room: %q", got)
	}
	if !f.svc.mayModerate("show", anchor) || f.svc.mayModerate("elsewhere", anchor) || f.svc.mayModerate("show", viewer) {
		t.Fatal("anchor rights are wrong")
	}
	on, off, five := true, false, 5
	for _, tc := range []struct {
		req   Request
		check func(RoomState) bool
	}{
		{Request{Action: ActionSlowMode, IntervalS: &five}, func(s RoomState) bool { return s.SlowModeS == 5 }},
		{Request{Action: ActionMuteAll, On: &on}, func(s RoomState) bool { return s.MuteAll }},
		{Request{Action: ActionMuteAll, On: &off}, func(s RoomState) bool { return !s.MuteAll }},
	} {
		res := f.must(t, "show", anchor, tc.req)
		if !res.Changed || !tc.check(*res.State) {
			t.Fatalf("%s: %+v", tc.req.Action, res)
		}
		if again := f.must(t, "show", anchor, tc.req); again.Changed {
			t.Fatalf("%s repeated changed something", tc.req.Action)
		}
		testutil.Eventually(t, 2*time.Second, "the other cache sees "+tc.req.Action, func() bool { return tc.check(f.other.Room("show")) })
	}
	if _, err := f.apply(t, "show", anchor, Request{Action: ActionBan, User: "star", DurationS: 60}); err == nil {
		t.Fatal("the anchor was banned from their own room")
	}
	if _, err := f.apply(t, "show", anchor, Request{Action: ActionSetAnchor, User: "v1"}); err == nil {
		t.Fatal("an anchor handed the room over; only admins may")
	}
	close1 := f.must(t, "show", anchor, Request{Action: ActionClose, Reason: "stream over"})
	if !close1.Changed || close1.Seq == 0 || !close1.State.Closed {
		t.Fatalf("close: %+v", close1)
	}
	if again := f.must(t, "show", anchor, Request{Action: ActionClose, Reason: "stream over"}); again.Changed || again.Seq != 0 {
		t.Fatalf("closing a closed room published again: %+v", again)
	}
	st, err := f.js.Stream(context.Background(), bus.ReliableStream)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := st.GetMsg(context.Background(), close1.Seq)
	if err != nil {
		t.Fatal(err)
	}
	var n protocol.Message
	if err := json.Unmarshal(msg.Data, &n); err != nil || n.Action != ActionClose || !strings.Contains(n.Text, "stream over") {
		t.Fatalf("close notice %s", msg.Data)
	}
	if res := f.must(t, "show", anchor, Request{Action: ActionReopen}); !res.Changed || res.State.Closed {
		t.Fatalf("reopen: %+v", res)
	}
}

func TestAnnounceIsReliableAndIdempotentWithAKey(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	req := Request{Action: ActionAnnounce, Text: "welcome!"}
	a, err := f.svc.Apply(ctx, "r1", admin, req, "k1")
	if err != nil || !a.Changed || a.Seq == 0 {
		t.Fatalf("announce: %+v %v", a, err)
	}
	b, err := f.svc.Apply(ctx, "r1", admin, req, "k1")
	if err != nil || b.Changed || b.Seq != a.Seq || b.ID != a.ID {
		t.Fatalf("retried announce: %+v then %+v (%v)", a, b, err)
	}
}

func TestApplyRejectsBadRequests(t *testing.T) {
	f := newFixture(t)
	neg := -1
	for _, tc := range []struct {
		name  string
		req   Request
		field string
	}{
		{"no action", Request{}, "action"},
		{"unknown action", Request{Action: "explode"}, "action"},
		{"bad user", Request{Action: ActionMute, User: "a.b", DurationS: 5}, "user"},
		{"wildcard user", Request{Action: ActionBan, User: ">", DurationS: 5}, "user"},
		{"no duration", Request{Action: ActionMute, User: "u"}, "duration_s"},
		{"huge duration", Request{Action: ActionBan, User: "u", DurationS: 1 << 40}, "duration_s"},
		{"negative slow mode", Request{Action: ActionSlowMode, IntervalS: &neg}, "interval_s"},
		{"slow mode without interval", Request{Action: ActionSlowMode}, "interval_s"},
		{"mute_all without on", Request{Action: ActionMuteAll}, "on"},
		{"empty announce", Request{Action: ActionAnnounce, Text: "  "}, "text"},
		{"long reason", Request{Action: ActionMute, User: "u", DurationS: 5, Reason: strings.Repeat("x", MaxReasonLen+1)}, "reason"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := f.apply(t, "r1", admin, tc.req)
			var pe *protocol.Error
			if !asProtocolError(err, &pe) || pe.Status != http.StatusBadRequest || pe.Body.Field != tc.field {
				t.Fatalf("got %v, want 400 on field %s", err, tc.field)
			}
		})
	}
}

func asProtocolError(err error, pe **protocol.Error) bool {
	e, ok := err.(*protocol.Error)
	*pe = e
	return ok
}

func TestWordFilter(t *testing.T) {
	wf, err := ParseWordList(strings.NewReader("# comment\nblock buy followers\nmask darn\nheck\n\n"))
	if err != nil {
		t.Fatal(err)
	}
	if wf.Len() != 3 {
		t.Fatalf("len %d", wf.Len())
	}
	for _, tc := range []struct{ in, out, blocked string }{
		{"hello", "hello", ""},
		{"DARN it", "**** it", ""},
		{"darn, darn!", "****, ****!", ""},
		{"what the Heck", "what the ****", ""},
		{"cheap: Buy Followers now", "cheap: Buy Followers now", "buy followers"},
		{"ünïcode darn ✓", "ünïcode **** ✓", ""},
		{"", "", ""},
	} {
		out, blocked := wf.Check(tc.in)
		if out != tc.out || blocked != tc.blocked {
			t.Errorf("Check(%q) = %q, %q; want %q, %q", tc.in, out, blocked, tc.out, tc.blocked)
		}
	}
	var none *WordFilter
	if out, b := none.Check("darn"); out != "darn" || b != "" {
		t.Fatal("a nil filter filtered")
	}
	if _, err := NewWordFilter([]string{" "}, nil); err == nil {
		t.Fatal("an empty word was accepted")
	}
}

func FuzzWordFilter(f *testing.F) {
	wf, err := NewWordFilter([]string{"bad"}, []string{"darn", "İ"})
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{"darn", "BAD", "İi", "\xff\xfe", "dar\u0000n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out, blocked := wf.Check(s)
		if blocked != "" {
			if out != s {
				t.Fatal("a blocked text was changed")
			}
			return
		}
		if len([]rune(out)) != len([]rune(s)) {
			t.Fatalf("masking changed the length: %q → %q", s, out)
		}
	})
}

// TestHashIDIsStable pins the id format: JetStream de-duplicates on these
// ids, so a change would let a retry across a deploy store a notice twice.
func TestHashIDIsStable(t *testing.T) {
	data := []byte("r1\x00boss\x00announce\x00k")
	sum := sha256.Sum256(data)
	want := "n" + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(sum[:15]))
	if got := hashID("n", data); got != want || len(got) != 25 {
		t.Fatalf("hashID = %q, want %q", got, want)
	}
}
