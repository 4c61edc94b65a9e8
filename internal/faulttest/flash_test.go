package faulttest

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/liveroom/liveroom/client"
	"github.com/liveroom/liveroom/internal/bus"
	"github.com/liveroom/liveroom/internal/protocol"
	"github.com/liveroom/liveroom/internal/testutil"
)

// The flash-crowd tests run `serve --autoscale` as a process of the real
// binary with small gateways (tens of viewers each) and throw the goals of
// issue 19 at it, sized down: a steep ramp, a ramp onto gateways that take
// seconds to start, a step, an announced show. They assert what holds by
// construction (no viewer refused for good, no gateway past dispatch's
// ceiling, the fleet's size at the peak, every gift once); the times to
// connect are logged here and measured at full size by `liveroom bench
// flash` (docs/BENCHMARKS.md).

// flashCap is one gateway's connection capacity in these tests.
const flashCap = 60

// flashRig is one serve --autoscale with its beats watched, its viewers
// joined through dispatch with the Go client, and gifts sent to its rooms.
type flashRig struct {
	t     *testing.T
	base  string
	serve *testutil.Proc
	nc    *nats.Conn
	rooms int

	fw *fleetWatch

	mu sync.Mutex
	// peak is the highest conns / max_conns of an active gateway's beat.
	peak   float64
	peakGW string
	// over80 is when a beat first showed a gateway above 80 %, grewAt when
	// more than initial gateways first beat together.
	over80, grewAt time.Time
	initial        int
	maxActive      int
	joins          []*flashJoin

	gmu      sync.Mutex
	acked    map[string]ackedGift
	stopGift chan struct{}
	gwg      sync.WaitGroup
}

// flashJoin is one viewer's join: when it first asked, when it was in,
// how many times dispatch asked it to wait.
type flashJoin struct {
	v                *viewer
	room             string
	first, connected time.Time
	waits            atomic.Int32
	welcomeSeq       atomic.Uint64
	err              error
}

// startFlash starts serve --autoscale with gateways of flashCap connections
// and the extra flags, and returns once the first gateway beats.
func startFlash(t *testing.T, rooms int, extra ...string) *flashRig {
	t.Helper()
	if raceEnabled {
		t.Skip("runs without -race (make test runs it): several gateway processes on two cores")
	}
	if testing.Short() {
		t.Skip("multi-process test")
	}
	port, natsPort := testutil.FreePort(t), testutil.FreePort(t)
	args := append([]string{"serve", "--autoscale", "--gateway-max-conns", strconv.Itoa(flashCap),
		"--addr", testutil.Addr(port), "--nats-port", strconv.Itoa(natsPort), "--nats-key-file", testutil.NATSKeyFile(t), "--data-dir", t.TempDir(),
		"--drain-delay", "500ms", "--drain-window", "2s", "--drain-grace", "1s", "--log-level", "info",
		"--gift-rate", "10000", "--gift-burst", "10000"}, append(loadTestEdge, extra...)...)
	r := &flashRig{t: t, base: "http://" + testutil.Addr(port), rooms: rooms, acked: map[string]ackedGift{},
		fw: &fleetWatch{beats: map[string]bus.Beat{}, seen: map[string]time.Time{}}}
	r.serve = testutil.StartProc(t, "serve", []string{"LIVEROOM_JWT_SECRET=" + secret}, args...)
	testutil.WaitHTTP(t, r.base+"/healthz", 90*time.Second)
	nc, err := bus.Connect(testutil.CredURL(t, "nats://"+testutil.Addr(natsPort), bus.RoleMonitor, ""), "flash-test", testutil.Logger())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	r.nc = nc
	if _, err := nc.Subscribe(bus.BeatWildcard, func(m *nats.Msg) {
		var b bus.Beat
		if json.Unmarshal(m.Data, &b) == nil {
			r.observe(b)
		}
	}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 60*time.Second, "the first gateway beats", func() bool { return r.active() >= 1 })
	r.mu.Lock()
	r.initial = r.active()
	r.mu.Unlock()
	t.Cleanup(r.closeViewers)
	return r
}

func (r *flashRig) observe(b bus.Beat) {
	r.fw.observe(b)
	n := r.active()
	r.mu.Lock()
	defer r.mu.Unlock()
	if b.State == bus.StateActive && b.MaxConns > 0 {
		if l := float64(b.Conns) / float64(b.MaxConns); l > r.peak {
			r.peak, r.peakGW = l, b.ID
		}
		if float64(b.Conns) > 0.8*float64(b.MaxConns) && r.over80.IsZero() {
			r.over80 = time.Now()
		}
	}
	r.maxActive = max(r.maxActive, n)
	if r.initial > 0 && n > r.initial && r.grewAt.IsZero() {
		r.grewAt = time.Now()
	}
}

func (r *flashRig) active() int { return len(r.fw.active()) }

// join connects n viewers spread over rooms rooms through dispatch at an
// even pace over d (all at once when d is 0), each with up to 30 s to get
// in, and returns when every one is in or has given up.
func (r *flashRig) join(n, rooms int, d time.Duration) []*flashJoin {
	r.t.Helper()
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 256, IdleConnTimeout: 30 * time.Second}}
	defer hc.CloseIdleConnections()
	r.mu.Lock()
	base := len(r.joins)
	js := make([]*flashJoin, n)
	for i := range js {
		id := base + i
		v := &viewer{id: id, user: "fl" + strconv.Itoa(id), arrived: map[string][]time.Time{}}
		tokens.Store(v.user, testutil.Token(r.t, v.user, protocol.RoleViewer))
		js[i] = &flashJoin{v: v, room: "star" + strconv.Itoa(id%rooms)}
	}
	r.joins = append(r.joins, js...)
	r.mu.Unlock()
	start := time.Now()
	var wg sync.WaitGroup
	for i, j := range js {
		if d > 0 {
			time.Sleep(time.Until(start.Add(time.Duration(float64(d) * float64(i) / float64(n)))))
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			on := func(ev client.Event) {
				switch ev.Kind {
				case client.EventWaiting:
					j.waits.Add(1)
				case client.EventWelcome:
					j.welcomeSeq.Store(ev.Welcome.Seq)
				}
				j.v.on(ev)
			}
			j.first = time.Now()
			c, err := client.Connect(ctx, client.Config{BaseURL: r.base, Room: j.room, Token: mustToken(j.v.user), HTTP: hc, OnEvent: on})
			if err != nil {
				j.err = err
				return
			}
			j.connected = time.Now()
			j.v.mu.Lock()
			j.v.conn = c
			j.v.mu.Unlock()
		}()
	}
	wg.Wait()
	return js
}

// joinFigures sums up joins: how many failed, how many waited, and the
// times from the first try to the welcome.
type joinFigures struct {
	n, failed, waited, waits int
	p50, p99, worst          time.Duration
}

func (f joinFigures) String() string {
	return fmt.Sprintf("%d joins: %d refused for good, %d waited (%d wait answers); first try to welcome p50 %v p99 %v max %v",
		f.n, f.failed, f.waited, f.waits, f.p50.Round(time.Millisecond), f.p99.Round(time.Millisecond), f.worst.Round(time.Millisecond))
}

func figures(js []*flashJoin) joinFigures {
	f := joinFigures{n: len(js)}
	var took []time.Duration
	for _, j := range js {
		if j.err != nil {
			f.failed++
			continue
		}
		if w := int(j.waits.Load()); w > 0 {
			f.waited++
			f.waits += w
		}
		took = append(took, j.connected.Sub(j.first))
	}
	slices.Sort(took)
	if len(took) > 0 {
		f.p50, f.p99, f.worst = took[len(took)/2], took[min(len(took)-1, len(took)*99/100)], took[len(took)-1]
	}
	return f
}

// sendGifts sends one gift a second to every room, each acknowledged one
// remembered, until checkGifts.
func (r *flashRig) sendGifts() {
	r.stopGift = make(chan struct{})
	sender := &client.Sender{BaseURL: r.base, Token: testutil.Token(r.t, "gifter", protocol.RoleViewer)}
	r.gwg.Add(1)
	go func() {
		defer r.gwg.Done()
		tk := time.NewTicker(time.Second / time.Duration(r.rooms))
		defer tk.Stop()
		for i := 0; ; i++ {
			select {
			case <-r.stopGift:
				return
			case <-tk.C:
			}
			room := "star" + strconv.Itoa(i%r.rooms)
			r.gwg.Add(1)
			go func() {
				defer r.gwg.Done()
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				res, err := sender.Gift(ctx, room, "rose", 1, fmt.Sprintf("fl-%s-%d", r.t.Name(), i))
				if err != nil {
					return
				}
				r.gmu.Lock()
				r.acked[res.ID] = ackedGift{room: room, seq: res.Seq}
				r.gmu.Unlock()
			}()
		}
	}()
}

// checkGifts stops the gifts and checks that every viewer that got in got
// every gift stored after its welcome, once.
func (r *flashRig) checkGifts() {
	r.t.Helper()
	close(r.stopGift)
	r.gwg.Wait()
	r.gmu.Lock()
	defer r.gmu.Unlock()
	count := func() (missing, doubled, expected int) {
		for _, j := range r.joins {
			if j.err != nil {
				continue
			}
			j.v.mu.Lock()
			for id, g := range r.acked {
				if g.room != j.room {
					continue
				}
				n := len(j.v.arrived[id])
				if n > 1 {
					doubled++
				}
				if g.seq > j.welcomeSeq.Load() {
					expected++
					if n == 0 {
						missing++
					}
				}
			}
			j.v.mu.Unlock()
		}
		return
	}
	missing, doubled, expected := count()
	for wait := time.Now().Add(15 * time.Second); missing > 0 && time.Now().Before(wait); {
		time.Sleep(200 * time.Millisecond)
		missing, doubled, expected = count()
	}
	r.t.Logf("gifts: %d acked, %d deliveries owed, %d missing, %d doubled", len(r.acked), expected, missing, doubled)
	if missing > 0 || doubled > 0 || len(r.acked) == 0 {
		r.t.Errorf("gifts missing %d, doubled %d (acked %d)", missing, doubled, len(r.acked))
	}
}

func (r *flashRig) closeViewers() {
	var wg sync.WaitGroup
	r.mu.Lock()
	js := slices.Clone(r.joins)
	r.mu.Unlock()
	for _, j := range js {
		j.v.mu.Lock()
		c := j.v.conn
		j.v.conn = nil
		j.v.mu.Unlock()
		if c != nil {
			wg.Add(1)
			go func() { defer wg.Done(); _ = c.Close() }()
		}
	}
	wg.Wait()
}

var decisionLine = regexp.MustCompile(`msg="autoscale decision" .*?action=(\w+) reason=(\w+).*?why="([^"]*)"`)

// decisions returns the autoscaler's logged decisions that acted:
// "scale_out/lookahead: why…".
func (r *flashRig) decisions() []string {
	var out []string
	for _, m := range decisionLine.FindAllStringSubmatch(r.serve.Log(), -1) {
		if m[1] != "none" {
			out = append(out, m[1]+"/"+m[2]+": "+m[3])
		}
	}
	return out
}

// summary logs what the fleet did and checks that no gateway was filled
// past its capacity (the gateway refuses past it; dispatch stops offering
// a gateway at 90 %, counting the clients on their way for two beats, so a
// beat above 90 % means handshakes slower than that).
func (r *flashRig) summary(js []*flashJoin) joinFigures {
	r.t.Helper()
	f := figures(js)
	r.mu.Lock()
	peak, peakGW, maxActive := r.peak, r.peakGW, r.maxActive
	r.mu.Unlock()
	r.t.Log(f)
	r.t.Logf("fullest gateway %s at %.0f %%; at most %d active gateways", peakGW, peak*100, maxActive)
	for _, d := range r.decisions() {
		r.t.Log("  " + d)
	}
	if f.failed > 0 {
		for _, j := range js {
			if j.err != nil {
				r.t.Errorf("viewer %s refused for good: %v", j.v.user, j.err)
				break
			}
		}
		r.t.Errorf("%d of %d viewers never got in", f.failed, f.n)
	}
	if peak > 1 {
		r.t.Errorf("gateway %s reached %.0f %% of its capacity", peakGW, peak*100)
	}
	return f
}

// need is ceil(viewers ÷ (capacity × 0.7)).
func need(viewers int) int { return int(math.Ceil(float64(viewers) / (flashCap * 0.7))) }

// TestFlashRamp: 0 → 3× one gateway's capacity in 10 s, a gift per room per
// second. The fleet grows before any gateway passes 80 %, nobody is refused,
// no gateway passes 90 %, and at the peak the fleet is at most one gateway
// above the need plus the spare.
func TestFlashRamp(t *testing.T) {
	r := startFlash(t, 6, "--autoscale-max", "10", "--autoscale-spare", "1")
	r.sendGifts()
	js := r.join(3*flashCap, r.rooms, 10*time.Second)
	time.Sleep(3 * time.Second) // the fleet settles at the peak
	r.summary(js)
	r.mu.Lock()
	over80, grewAt, maxActive, peak := r.over80, r.grewAt, r.maxActive, r.peak
	r.mu.Unlock()
	if !over80.IsZero() && (grewAt.IsZero() || over80.Before(grewAt)) {
		t.Errorf("a gateway passed 80 %% before the fleet grew")
	}
	if peak > 0.9+1e-9 {
		t.Errorf("a gateway reached %.0f %% of its capacity, above dispatch's 90 %% ceiling", peak*100)
	}
	if limit := need(3*flashCap) + 1 + 1; maxActive > limit {
		t.Errorf("%d gateways at the peak, want at most need %d + 1 + spare 1", maxActive, need(3*flashCap))
	}
	r.checkGifts()
}

// TestFlashSlowStarts: gateways that take 3 s to start (the 10 s,
// sized down) and a ramp to 6× capacity in 12 s: nobody is refused for
// good, no gateway passes its ceiling, and the autoscaler plans over the
// start time it measured.
func TestFlashSlowStarts(t *testing.T) {
	const delay = 3 * time.Second
	r := startFlash(t, 6, "--autoscale-max", "12", "--autoscale-spare", "1", "--autoscale-start-delay", delay.String())
	r.sendGifts()
	js := r.join(6*flashCap, r.rooms, 12*time.Second)
	r.summary(js)
	measured := regexp.MustCompile(`ready_time=(\d+(?:\.\d+)?)`).FindAllStringSubmatch(r.serve.Log(), -1)
	if len(measured) == 0 {
		t.Fatal("no decision logged its ready time")
	}
	if rt, _ := strconv.ParseFloat(measured[len(measured)-1][1], 64); rt < delay.Seconds() || rt > delay.Seconds()+10 {
		t.Errorf("the autoscaler planned with a ready time of %v s; gateways take %v to start", rt, delay)
	}
	r.checkGifts()
}

// TestFlashStep: twice one gateway's capacity arrives within one second:
// every viewer gets in (some after a wait), none is refused for good.
func TestFlashStep(t *testing.T) {
	r := startFlash(t, 4, "--autoscale-max", "8", "--autoscale-spare", "1")
	r.sendGifts()
	js := r.join(2*flashCap, r.rooms, time.Second)
	r.summary(js)
	r.checkGifts()
}

// TestFlashAnnounced: a show of 5× capacity announced 8 s ahead: the
// capacity is ready before it starts (so not one viewer waits), the
// decision names the announcement, and with a 2 s stabilisation window
// nothing is scaled in while the announcement waits for its audience. A
// viewer's and an anchor's token may not announce.
func TestFlashAnnounced(t *testing.T) {
	r := startFlash(t, 4, "--autoscale-max", "10", "--autoscale-spare", "1", "--autoscale-stabilization", "2s")
	viewers := 5 * flashCap
	at := time.Now().Add(8 * time.Second)
	body := fmt.Sprintf(`{"room":"star0","viewers":%d,"at":%q,"note":"flash test"}`, viewers, at.UTC().Format(time.RFC3339Nano))
	for _, role := range []string{protocol.RoleViewer, protocol.RoleAnchor} {
		if code := testutil.APICall(t, "POST", r.base+"/v1/admin/announcements", testutil.Token(t, "x", role), body, nil); code != http.StatusForbidden {
			t.Errorf("a %s token announced: %d, want 403", role, code)
		}
	}
	var a struct{ ID string }
	if code := testutil.APICall(t, "POST", r.base+"/v1/admin/announcements", testutil.Token(t, "boss", protocol.RoleAdmin), body, &a); code != http.StatusCreated || a.ID == "" {
		t.Fatalf("announce: %d %+v", code, a)
	}
	// Ready before the show: enough active gateways for the audience at
	// the planned 70 %, before at.
	testutil.Eventually(t, time.Until(at), "the announced capacity active before the show", func() bool {
		return r.active() >= need(viewers)
	})
	time.Sleep(time.Until(at))
	r.sendGifts()
	// The whole audience in the show's room, within 3 s.
	js := r.join(viewers, 1, 3*time.Second)
	f := r.summary(js)
	if f.waited > 0 {
		t.Errorf("%d viewers of an announced show were told to wait", f.waited)
	}
	log := r.serve.Log()
	if !strings.Contains(log, a.ID) || !regexp.MustCompile(`action=scale_out reason=announced`).MatchString(log) {
		t.Errorf("no scale-out decision names announcement %s", a.ID)
	}
	if strings.Contains(log, "action=scale_in") {
		t.Error("a gateway was scaled in while the announced audience had not arrived")
	}
	r.checkGifts()
}
