package uplink

import (
	"context"
	"hash/fnv"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/liveroom/liveroom/internal/bus"
	"github.com/liveroom/liveroom/internal/moderation"
	"github.com/liveroom/liveroom/internal/protocol"
	"github.com/liveroom/liveroom/internal/testutil"
)

// The fleet tests run three uplinks on one embedded NATS, each behind its
// own HTTP server, and send to them over real HTTP. The bound they check is
// the issue's: at most rate × elapsed + burst, plus 10 %, over a few seconds.

// startFleet starts n uplinks that know of each other.
func (e *env) startFleet(n int, mod func(*Config)) []*uplink {
	e.t.Helper()
	ups := make([]*uplink, n)
	for i := range ups {
		ups[i] = e.start(func(c *Config) {
			if mod != nil {
				mod(c)
			}
			c.ID = "up-" + strconv.Itoa(i)
		})
	}
	testutil.Eventually(e.t, 10*time.Second, "every uplink counts the others", func() bool {
		for _, u := range ups {
			if u.srv.Fleet().Uplinks != n {
				return false
			}
		}
		return true
	})
	return ups
}

// sendStats counts the answers of a spray.
type sendStats struct {
	accepted, refused atomic.Int64
	// acceptedAfter counts accepted sends later than warm after the start.
	acceptedAfter atomic.Int64
}

// spray sends body as one of users (in turn) to each of ups, all at once:
// one sender per uplink, a request every 10 ms, for d. It returns the time
// the spray took, from before the first request to after the last answer.
func spray(t *testing.T, ups []*uplink, room string, users []string, body string, d, warm time.Duration, st *sendStats) time.Duration {
	t.Helper()
	tokens := make([]string, len(users))
	for i, u := range users {
		tokens[i] = testutil.Token(t, u, protocol.RoleViewer)
	}
	start := time.Now()
	var wg sync.WaitGroup
	for i, u := range ups {
		wg.Go(func() {
			for j := i; time.Since(start) < d; j++ {
				a := u.do(request{room: room, token: tokens[j%len(tokens)], body: body})
				switch a.status {
				case http.StatusAccepted:
					st.accepted.Add(1)
					if time.Since(start) > warm {
						st.acceptedAfter.Add(1)
					}
				case http.StatusTooManyRequests:
					st.refused.Add(1)
				default:
					t.Errorf("answer %d %s", a.status, a.raw)
					return
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
	wg.Wait()
	return time.Since(start)
}

// bound is the most a spray of elapsed may get: rate × elapsed + burst,
// plus 10 %.
func bound(rate float64, burst int, elapsed time.Duration) int64 {
	return int64((rate*elapsed.Seconds() + float64(burst)) * 1.1)
}

func TestFleetUserRateAcrossUplinks(t *testing.T) {
	e := newEnv(t)
	const rate, burst = 4.0, 6
	ups := e.startFleet(3, func(c *Config) { c.UserRate, c.UserBurst = rate, burst })
	var st sendStats
	elapsed := spray(t, ups, "r1", []string{"sprayer"}, danmaku("again"), 4*time.Second, 0, &st)
	got, max := st.accepted.Load(), bound(rate, burst, elapsed)
	t.Logf("sprayer: %d accepted, %d refused in %v through 3 uplinks; bound %d", got, st.refused.Load(), elapsed, max)
	if got > max {
		t.Errorf("a user spraying three uplinks got %d danmaku in %v, more than rate × time + burst + 10 %% = %d", got, elapsed, max)
	}
	// The limit must not hold by refusing everything: the sprayer gets at
	// least half the rate.
	if min := int64(rate * elapsed.Seconds() / 2); got < min {
		t.Errorf("a user spraying three uplinks got %d danmaku in %v, less than half the rate (%d)", got, elapsed, min)
	}
	// Only hot keys travel: the sprayer is in the reports, nothing else.
	for _, u := range ups {
		if f := u.srv.Fleet(); f.ReportsSent == 0 || f.ReportsDropped != 0 {
			t.Errorf("uplink reports: %+v", f)
		}
	}
}

func TestFleetOneUplinkGetsFullRate(t *testing.T) {
	e := newEnv(t)
	const rate, burst = 4.0, 6
	ups := e.startFleet(3, func(c *Config) { c.UserRate, c.UserBurst = rate, burst })
	var st sendStats
	// After one report interval (250 ms) the user's uplink holds the whole
	// rate: count what it admits after a second.
	const warm = time.Second
	elapsed := spray(t, ups[:1], "r1", []string{"loyal"}, danmaku("hello"), 5*time.Second, warm, &st)
	steady := elapsed - warm
	got, want := st.acceptedAfter.Load(), int64(rate*steady.Seconds()*0.9)-1
	t.Logf("one uplink: %d accepted after %v, %d in all, %d refused in %v; %+v", got, warm, st.accepted.Load(), st.refused.Load(), elapsed, ups[0].srv.Fleet())
	if got < want {
		t.Errorf("a user on one uplink of three got %d danmaku in the %v after the first second, want at least %d (the full rate)", got, steady, want)
	}
	if max := bound(rate, burst, elapsed); st.accepted.Load() > max {
		t.Errorf("a user on one uplink got %d, more than %d", st.accepted.Load(), max)
	}
}

func TestFleetRoomRateAcrossUplinks(t *testing.T) {
	e := newEnv(t)
	const rate = 10.0 // the room's burst equals its rate
	ups := e.startFleet(3, func(c *Config) { c.RoomRate, c.UserRate, c.UserBurst = rate, 1000, 1000 })
	users := make([]string, 30)
	for i := range users {
		users[i] = "crowd" + strconv.Itoa(i)
	}
	var st sendStats
	elapsed := spray(t, ups, "busy", users, danmaku("wow"), 4*time.Second, 0, &st)
	got, max := st.accepted.Load(), bound(rate, int(rate), elapsed)
	t.Logf("room: %d accepted, %d refused in %v through 3 uplinks; bound %d", got, st.refused.Load(), elapsed, max)
	if got > max {
		t.Errorf("a room sprayed through three uplinks got %d danmaku in %v, more than %d", got, elapsed, max)
	}
	if min := int64(rate * elapsed.Seconds() / 2); got < min {
		t.Errorf("the room got %d danmaku in %v, less than half its rate (%d)", got, elapsed, min)
	}
}

// Likes are charged by their count: a request of 50 takes 50 tokens, more
// than a small share holds at once.
func TestFleetLikeRateAcrossUplinks(t *testing.T) {
	e := newEnv(t)
	const rate, burst, count = 100.0, 999, 50
	ups := e.startFleet(3, func(c *Config) { c.LikeRate, c.LikeBurst = rate, burst })
	var st sendStats
	elapsed := spray(t, ups, "r1", []string{"tapper"}, like(count), 4*time.Second, 0, &st)
	got, max := count*st.accepted.Load(), bound(rate, burst, elapsed)
	t.Logf("likes: %d accepted (%d requests), %d requests refused in %v through 3 uplinks; bound %d", got, st.accepted.Load(), st.refused.Load(), elapsed, max)
	if got > max {
		t.Errorf("a user spraying likes on three uplinks got %d in %v, more than %d", got, elapsed, max)
	}
	if min := int64(rate * elapsed.Seconds() / 2); got < min {
		t.Errorf("a user spraying likes got %d in %v, less than half the rate (%d)", got, elapsed, min)
	}
}

// setSlowMode turns slow mode on in room and waits until cache sees it.
func (e *env) setSlowMode(c *moderation.Cache, room protocol.Room, seconds int) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	kv, err := e.js.KeyValue(ctx, bus.ModerationKV)
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := kv.Put(ctx, string(room)+".room", []byte(`{"slow_mode_s":`+strconv.Itoa(seconds)+`}`)); err != nil {
		e.t.Fatal(err)
	}
	testutil.Eventually(e.t, 5*time.Second, "slow mode seen", func() bool { return c.Room(room).SlowModeS == seconds })
}

func (e *env) moderationCache() *moderation.Cache {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := moderation.NewCache(ctx, moderation.CacheConfig{JS: e.js, Logger: testutil.Logger()})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(c.Close)
	return c
}

func TestFleetSlowModeAcrossUplinks(t *testing.T) {
	e := newEnv(t)
	c := e.moderationCache()
	ups := e.startFleet(3, func(cfg *Config) { cfg.Moderation = c })
	const room, interval = "slow", 1
	e.setSlowMode(c, room, interval)
	var st sendStats
	elapsed := spray(t, ups, room, []string{"chatty"}, danmaku("me again"), 5*time.Second, 0, &st)
	got, max := st.accepted.Load(), bound(1.0/interval, 1, elapsed)
	t.Logf("slow mode: %d accepted, %d refused in %v through 3 uplinks; bound %d", got, st.refused.Load(), elapsed, max)
	if got > max {
		t.Errorf("a user spraying three uplinks in slow mode (%d s) got %d danmaku in %v, more than %d", interval, got, elapsed, max)
	}
	if got < 2 {
		t.Errorf("slow mode let %d danmaku through in %v", got, elapsed)
	}
	var claims, fallbacks uint64
	for _, u := range ups {
		f := u.srv.Fleet()
		claims += f.SlowClaims
		fallbacks += f.SlowClaimFallbacks
	}
	if claims == 0 || fallbacks != 0 {
		t.Errorf("slow-mode claims %d, fallbacks %d: the owner should have decided", claims, fallbacks)
	}

	// A user who speaks through an uplink that does not own them still
	// speaks once per interval: the owner is asked and agrees.
	user := "patient"
	var via *uplink
	for _, u := range ups {
		if u.srv.fleet.current().owner(room, protocol.User(user)) != u.srv.fleet.id {
			via = u
			break
		}
	}
	var one sendStats
	elapsed = spray(t, []*uplink{via}, room, []string{user}, danmaku("hello"), 4*time.Second, 0, &one)
	if got, want := one.accepted.Load(), int64(elapsed.Seconds()/interval); got < want {
		t.Errorf("a user on a non-owner uplink got %d danmaku in %v of slow mode (%d s), want %d", got, elapsed, interval, want)
	}
}

// TestFleetShares checks the share arithmetic on reports built by hand: the
// shares of a reported key sum to 1 over the live uplinks, an uplink that
// does not report it gets none, a lone reporter gets all of it, a key nobody
// reports gets 1/N, and a silent uplink stops counting.
func TestFleetShares(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	views := map[string]*fleet{}
	reports := map[string]peerState{
		"a": {seen: now, interval: time.Second, hot: [numClasses]map[string]float64{classUser: {"spray": 6, "loyal": 0}}},
		"b": {seen: now, interval: time.Second, hot: [numClasses]map[string]float64{classUser: {"spray": 3}}},
		"c": {seen: now, interval: time.Second, hot: [numClasses]map[string]float64{classUser: {"spray": 3}, classRoom: {"busy": 1}}},
	}
	for id := range reports {
		f := newFleet(id, time.Second)
		for pid, p := range reports {
			f.peers[pid] = p
		}
		f.rebuild(now)
		views[id] = f
	}
	sum := func(class int, key string) float64 {
		total := 0.0
		for _, f := range views {
			s, _ := f.current().share(class, key)
			total += s
		}
		return total
	}
	for _, k := range []struct {
		class int
		key   string
	}{{classUser, "spray"}, {classUser, "loyal"}, {classRoom, "busy"}, {classUser, "quiet"}, {classLike, "spray"}} {
		if s := sum(k.class, k.key); s < 0.999 || s > 1.001 {
			t.Errorf("shares of %s/%s sum to %v", classNames[k.class], k.key, s)
		}
	}
	if s, cold := views["a"].current().share(classUser, "spray"); s != 0.5 || cold {
		t.Errorf("a's share of spray = %v (cold %v), want 0.5 (demand 6 of 12)", s, cold)
	}
	if s, _ := views["a"].current().share(classUser, "loyal"); s != 1 {
		t.Errorf("a, the only uplink reporting loyal, has share %v", s)
	}
	if s, _ := views["b"].current().share(classRoom, "busy"); s != 0 {
		t.Errorf("b, which does not report busy, has share %v", s)
	}
	if s, cold := views["b"].current().share(classUser, "quiet"); s != 1.0/3 || !cold {
		t.Errorf("b's share of an unreported key = %v (cold %v), want 1/3", s, cold)
	}
	// c falls silent: after three intervals a and b share everything.
	f := views["a"]
	f.peers["b"] = peerState{seen: now.Add(3 * time.Second), interval: time.Second, hot: reports["b"].hot}
	f.peers["a"] = peerState{seen: now.Add(3 * time.Second), interval: time.Second, hot: reports["a"].hot}
	f.rebuild(now.Add(3*time.Second + time.Millisecond))
	if v := f.current(); v.n != 2 || len(v.ids) != 2 {
		t.Fatalf("after c's silence a counts %d uplinks (%v)", v.n, v.ids)
	}
	if s, _ := f.current().share(classUser, "spray"); s < 0.66 || s > 0.67 {
		t.Errorf("a's share of spray without c = %v, want 2/3", s)
	}
}

// TestSlowModeOwner: every uplink picks the same owner for a pair, pairs
// spread over the uplinks, and a departing uplink moves only its own pairs.
func TestSlowModeOwner(t *testing.T) {
	three := &fleetView{n: 3, ids: []string{"up-0", "up-1", "up-2"}}
	two := &fleetView{n: 2, ids: []string{"up-0", "up-1"}}
	owned := map[string]int{}
	for i := range 300 {
		user := protocol.User("u" + strconv.Itoa(i))
		o := three.owner("r", user)
		owned[o]++
		if o != "up-2" && two.owner("r", user) != o {
			t.Fatalf("%s moved from %s although %s stayed", user, o, o)
		}
	}
	for id, n := range owned {
		if n < 60 {
			t.Errorf("%s owns only %d of 300 pairs: %v", id, n, owned)
		}
	}
	// The hash is FNV-1a, so it is the same in every process.
	h := fnv.New64a()
	_, _ = h.Write([]byte("up-0|r|u1"))
	if got := fnv1a(fnvOffset, "up-0|r|u1"); got != h.Sum64() {
		t.Errorf("fnv1a = %x, hash/fnv says %x", got, h.Sum64())
	}
}

// TestLimiterShareChange: a bucket follows its share, and a change of share
// never creates tokens.
func TestLimiterShareChange(t *testing.T) {
	f := newFleet("a", time.Second)
	f.peers["a"] = peerState{seen: time.Unix(1_700_000_000, 0), interval: time.Second}
	f.peers["b"] = peerState{seen: time.Unix(1_700_000_000, 0), interval: time.Second}
	now := time.Unix(1_700_000_000, 0)
	f.rebuild(now)
	l := newLimiterSet(2, 6)
	l.class, l.fleet = classUser, f
	// Two uplinks, the key cold: 3 tokens here.
	for i := range 3 {
		if _, _, ok := l.take("u", now, 1); !ok {
			t.Fatalf("take %d of the equal share refused", i)
		}
	}
	if _, _, ok := l.take("u", now, 1); ok {
		t.Fatal("a fourth token taken from a share of 3")
	}
	// b reports u, a does not: a's share drops to 0 and refuses with a
	// wait of one interval.
	f.peers["b"] = peerState{seen: now, interval: time.Second, hot: [numClasses]map[string]float64{classUser: {"u": 5}}}
	f.peers["a"] = peerState{seen: now, interval: time.Second}
	f.rebuild(now)
	later := now.Add(10 * time.Second)
	if _, wait, ok := l.take("u", later, 1); ok || wait != time.Second {
		t.Fatalf("share 0: ok %v wait %v, want a refusal for one interval", ok, wait)
	}
	// Only a reports it now: the whole rate, but the bucket starts from
	// what it had, not full.
	f.peers["a"] = peerState{seen: later, interval: time.Second, hot: [numClasses]map[string]float64{classUser: {"u": 1}}}
	f.peers["b"] = peerState{seen: later, interval: time.Second}
	f.rebuild(later)
	if _, _, ok := l.take("u", later, 1); ok {
		t.Fatal("a share raised from 0 came with tokens")
	}
	if _, _, ok := l.take("u", later.Add(3*time.Second), 6); !ok {
		t.Fatal("the whole share did not refill the whole burst in 3 s at 2/s")
	}
}

// TestFleetDropsForeignReports: a report that does not have the documented
// shape is dropped and changes no share.
func TestFleetDropsForeignReports(t *testing.T) {
	e := newEnv(t)
	ups := e.startFleet(2, nil)
	nc := e.connect() // an uplink credential: only uplinks may publish here
	for _, bad := range []string{`{"id":"x.y","interval_ms":250}`, `not json`, `{"id":"up-9","interval_ms":250,"hot":{"user":{"a":-1}}}`} {
		if err := nc.Publish(bus.UsageSubject, []byte(bad)); err != nil {
			t.Fatal(err)
		}
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	// Another process reporting under up-0's id is noticed by up-0.
	if err := nc.Publish(bus.UsageSubject, []byte(`{"id":"up-0","run":"someoneelse","ts":1,"interval_ms":250}`)); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, "bad reports dropped", func() bool {
		return ups[0].srv.Fleet().ReportsDropped >= 4 && ups[1].srv.Fleet().ReportsDropped >= 3
	})
	if n := ups[0].srv.Fleet().Uplinks; n != 2 {
		t.Errorf("after bad reports uplink counts %d uplinks", n)
	}
	// A malformed slow-mode claim gets an error answer, not a decision.
	for _, bad := range []string{`{"room":"r.x","user":"u","interval_ms":1000}`, `{"room":"r","user":"u","interval_ms":0}`, `[]`} {
		m, err := nc.Request(bus.SlowClaimSubject("up-0"), []byte(bad), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		var a slowAnswer
		if err := jsonUnmarshalStrict(m.Data, &a); err != nil || a.Error == "" {
			t.Errorf("claim %s answered %s", bad, m.Data)
		}
	}
}

// TestLimiterColdOverdraft: a cold key may overdraw its equal share by one
// request once it is two intervals old, not before, and that makes it hot;
// once the reports make it this uplink's alone, the overdraft is forgiven.
func TestLimiterColdOverdraft(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	f := newFleet("a", time.Second)
	f.peers["a"] = peerState{seen: now, interval: time.Second}
	f.peers["b"] = peerState{seen: now, interval: time.Second}
	f.rebuild(now)
	l := newLimiterSet(0.001, 2) // no refill to speak of; 1 token per uplink
	l.class, l.fleet = classUser, f
	if _, _, ok := l.take("fresh", now, 1); !ok {
		t.Fatal("first request refused")
	}
	if _, _, ok := l.take("fresh", now, 1); ok {
		t.Fatal("a new key overdrew its share")
	}
	if _, _, ok := l.take("old", now, 1); !ok {
		t.Fatal("first request refused")
	}
	later := now.Add(2 * time.Second)
	if _, _, ok := l.take("old", later, 1); !ok {
		t.Fatal("a cold key two intervals old could not overdraw one request")
	}
	if _, _, ok := l.take("old", later, 1); ok {
		t.Fatal("a cold key overdrew twice")
	}
	hot := l.hotKeys(later, f.period.Load(), 10)
	if _, ok := hot["old"]; !ok {
		t.Fatalf("an overdrawn key is not hot: %v", hot)
	}
	// Its report makes the key a's alone: the whole burst, the overdraft
	// forgiven (so 0 tokens, not -1).
	f.peers["a"] = peerState{seen: later, interval: time.Second, hot: [numClasses]map[string]float64{classUser: hot}}
	f.peers["b"] = peerState{seen: later, interval: time.Second}
	f.rebuild(later)
	if _, wait, _ := l.take("old", later, 1); wait > 1001*time.Second || wait < 999*time.Second {
		t.Fatalf("after the overdraft was forgiven the wait is %v, want 1000 s (one token at 0.001/s)", wait)
	}
}
