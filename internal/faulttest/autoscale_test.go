package faulttest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/liveroom/liveroom/client"
	"github.com/liveroom/liveroom/internal/bus"
	"github.com/liveroom/liveroom/internal/protocol"
	"github.com/liveroom/liveroom/internal/testutil"
)

// fleetWatch follows the gateways' beats on NATS: the fleet as the
// autoscaler and dispatch see it.
type fleetWatch struct {
	mu    sync.Mutex
	beats map[string]bus.Beat
	seen  map[string]time.Time // last beat received
	// peak is the most connections any one gateway reported.
	peak int
	// firstFull is when a gateway first reported capacity (3,000) or more;
	// threeAt when three active gateways first beat together.
	firstFull, threeAt time.Time
}

func (f *fleetWatch) observe(b bus.Beat) {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := time.Now()
	f.beats[b.ID], f.seen[b.ID] = b, now
	f.peak = max(f.peak, b.Conns)
	if b.Conns >= 3000 && f.firstFull.IsZero() {
		f.firstFull = now
	}
	if f.threeAt.IsZero() && len(f.activeLocked(now)) >= 3 {
		f.threeAt = now
	}
}

// activeLocked lists the active gateways that beat within 3 s.
func (f *fleetWatch) activeLocked(now time.Time) []bus.Beat {
	var out []bus.Beat
	for id, b := range f.beats {
		if now.Sub(f.seen[id]) <= 3*time.Second && b.State == bus.StateActive {
			out = append(out, b)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func (f *fleetWatch) active() []bus.Beat {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.activeLocked(time.Now())
}

// ackedGift is one gift the uplink acknowledged.
type ackedGift struct {
	room string
	seq  uint64
}

// TestAutoscaleRamp runs `serve --autoscale` (min 1, max 4, no spare, 3,000
// connections per gateway at the default 70 % target, 10 s stabilisation)
// as a process of the real binary. 9,000 viewers join through dispatch over
// 30 s in 30 rooms while gifts flow. The fleet must reach three gateways
// before any gateway fills to 3,000, dispatch must fill the new ones, and
// when most viewers leave the fleet must shrink to one gateway through
// drains, with every viewer that stayed receiving every acknowledged gift
// exactly once. The decisions must show in the log and on /metrics.
func TestAutoscaleRamp(t *testing.T) {
	if raceEnabled {
		t.Skip("runs without -race (make test runs it): 9,000 viewers and five processes on two cores")
	}
	if testing.Short() {
		t.Skip("takes about two minutes")
	}
	const (
		viewers  = 9000
		rooms    = 30
		ramp     = 30 * time.Second
		keepEach = 6 // every 6th viewer stays for the ramp down: 1,500
		giftRate = 4 // per second
	)
	port, natsPort := testutil.FreePort(t), testutil.FreePort(t)
	base := "http://" + testutil.Addr(port)
	keyFile := testutil.NATSKeyFile(t)
	serve := testutil.StartProc(t, "serve", []string{"LIVEROOM_JWT_SECRET=" + secret},
		"serve", "--autoscale", "--autoscale-min", "1", "--autoscale-max", "4", "--autoscale-spare", "0", "--gateway-max-conns", "3000",
		"--autoscale-stabilization", "10s", "--addr", testutil.Addr(port), "--nats-port", strconv.Itoa(natsPort),
		"--nats-key-file", keyFile, "--gift-rate", "10000", "--gift-burst", "10000", "--max-conns-per-ip", "-1", "--handshake-rate", "-1",
		"--data-dir", t.TempDir(), "--drain-delay", "1s", "--drain-window", "4s", "--drain-grace", "2s", "--log-level", "info")
	testutil.WaitHTTP(t, base+"/healthz", 90*time.Second)

	nc, err := bus.Connect(testutil.CredURL(t, "nats://"+testutil.Addr(natsPort), bus.RoleMonitor, ""), "autoscale-test", testutil.Logger())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	fw := &fleetWatch{beats: map[string]bus.Beat{}, seen: map[string]time.Time{}}
	sub, err := nc.Subscribe(bus.BeatWildcard, func(m *nats.Msg) {
		var b bus.Beat
		if json.Unmarshal(m.Data, &b) == nil {
			fw.observe(b)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	testutil.Eventually(t, 30*time.Second, "the first gateway process beats", func() bool { return len(fw.active()) == 1 })
	time.Sleep(2 * time.Second) // let the autoscaler see a quiet fleet first
	if n := len(fw.active()); n != 1 {
		t.Fatalf("%d gateways before any viewer, want min 1", n)
	}

	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 256, IdleConnTimeout: 30 * time.Second}}
	defer hc.CloseIdleConnections()
	vs := make([]*viewer, viewers)
	// welcomeSeq is the room's sequence when each viewer joined: it is owed
	// every gift stored after it.
	welcomeSeq := make([]atomic.Uint64, viewers)
	for i := range vs {
		vs[i] = &viewer{id: i, user: "as" + strconv.Itoa(i), arrived: map[string][]time.Time{}}
		tokens.Store(vs[i].user, testutil.Token(t, vs[i].user, protocol.RoleViewer))
	}
	roomOf := func(v *viewer) string { return "room" + strconv.Itoa(v.id%rooms) }
	var connected, failed atomic.Int64
	var closeOnce sync.Once
	closeAll := func() {
		closeOnce.Do(func() {
			var wg sync.WaitGroup
			for _, v := range vs {
				v.mu.Lock()
				c := v.conn
				v.mu.Unlock()
				if c != nil {
					wg.Add(1)
					go func() { defer wg.Done(); _ = c.Close() }()
				}
			}
			wg.Wait()
		})
	}
	t.Cleanup(closeAll)

	// Gifts for the whole test, each with its own key and the client's
	// retries; the ack time decides which viewers must have it.
	var gmu sync.Mutex
	acked := map[string]ackedGift{}
	var sent, sendFailed atomic.Int64
	stopGifts := make(chan struct{})
	var gwg sync.WaitGroup
	gwg.Add(1)
	go func() {
		defer gwg.Done()
		sender := &client.Sender{BaseURL: base, Token: testutil.Token(t, "gifter", protocol.RoleViewer)}
		tk := time.NewTicker(time.Second / giftRate)
		defer tk.Stop()
		for i := 0; ; i++ {
			select {
			case <-stopGifts:
				return
			case <-tk.C:
			}
			room := "room" + strconv.Itoa(i%rooms)
			gwg.Add(1)
			go func() {
				defer gwg.Done()
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				sent.Add(1)
				r, err := sender.Gift(ctx, room, "rose", 1, "as-key-"+strconv.Itoa(i))
				if err != nil {
					sendFailed.Add(1)
					return
				}
				gmu.Lock()
				acked[r.ID] = ackedGift{room: room, seq: r.Seq}
				gmu.Unlock()
			}()
		}
	}()

	// The ramp: two groups of goroutines, each joining its half of the
	// viewers at an even pace, through dispatch.
	start := time.Now()
	var rwg sync.WaitGroup
	for g := range 2 {
		rwg.Add(1)
		go func() {
			defer rwg.Done()
			sem := make(chan struct{}, 100)
			var wg sync.WaitGroup
			for i := g; i < viewers; i += 2 {
				at := start.Add(time.Duration(float64(ramp) * float64(i) / viewers))
				time.Sleep(time.Until(at))
				sem <- struct{}{}
				wg.Add(1)
				go func() {
					defer wg.Done()
					defer func() { <-sem }()
					v := vs[i]
					ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
					defer cancel()
					on := func(ev client.Event) {
						if ev.Kind == client.EventWelcome {
							welcomeSeq[i].Store(ev.Welcome.Seq)
						}
						v.on(ev)
					}
					c, err := client.Connect(ctx, client.Config{BaseURL: base, Room: roomOf(v), Token: mustToken(v.user), HTTP: hc, OnEvent: on})
					if err != nil {
						failed.Add(1)
						t.Errorf("viewer %d: %v", i, err)
						return
					}
					v.mu.Lock()
					v.conn = c
					v.mu.Unlock()
					connected.Add(1)
				}()
			}
			wg.Wait()
		}()
	}

	// Timeline, once a second, until the ramp is over and the fleet holds.
	type point struct {
		t                 time.Duration
		viewers, gateways int
		maxConns          int
		perGW             []int
	}
	var timeline []point
	rampDone := make(chan struct{})
	go func() { rwg.Wait(); close(rampDone) }()
	for tick := time.NewTicker(time.Second); ; {
		<-tick.C
		act := fw.active()
		p := point{t: time.Since(start), viewers: int(connected.Load()), gateways: len(act)}
		for _, b := range act {
			p.maxConns = max(p.maxConns, b.Conns)
			p.perGW = append(p.perGW, b.Conns)
		}
		timeline = append(timeline, p)
		select {
		case <-rampDone:
		default:
			continue
		}
		if time.Since(start) > ramp+5*time.Second {
			tick.Stop()
			break
		}
	}
	var tl strings.Builder
	for _, p := range timeline {
		fmt.Fprintf(&tl, "  t=%5.1fs viewers %5d gateways %d max conns/gateway %5d %v\n", p.t.Seconds(), p.viewers, p.gateways, p.maxConns, p.perGW)
	}
	fw.mu.Lock()
	threeAt, firstFull, peak := fw.threeAt, fw.firstFull, fw.peak
	fw.mu.Unlock()
	t.Logf("scale-out timeline (ramp 0 → %d viewers in %v):\n%s", viewers, ramp, tl.String())
	t.Logf("three gateways beating at t=%.1fs; highest connections on one gateway %d", threeAt.Sub(start).Seconds(), peak)
	if failed.Load() > 0 || connected.Load() != viewers {
		t.Fatalf("%d viewers connected, %d failed", connected.Load(), failed.Load())
	}
	if threeAt.IsZero() {
		t.Fatal("the fleet never reached three gateways")
	}
	if !firstFull.IsZero() && firstFull.Before(threeAt) {
		t.Errorf("a gateway reached its capacity of 3,000 at t=%.1fs, before the fleet had three gateways (t=%.1fs)",
			firstFull.Sub(start).Seconds(), threeAt.Sub(start).Seconds())
	}
	// Dispatch filled the new gateways: at the peak, none is far below the
	// mean.
	peakFleet := fw.active()
	mean := float64(viewers) / float64(len(peakFleet))
	for _, b := range peakFleet {
		if float64(b.Conns) < 0.6*mean {
			t.Errorf("after the ramp gateway %s holds %d viewers, under 60%% of the mean %.0f", b.ID, b.Conns, mean)
		}
	}
	if len(peakFleet) != 4 {
		t.Errorf("%d gateways at 9,000 viewers, want max 4", len(peakFleet))
	}

	// Ramp down: all but every keepEach-th viewer leave over 10 s. The
	// fleet must shrink to one gateway, one drain at a time.
	var stay []*viewer
	var leave []*viewer
	for _, v := range vs {
		if v.id%keepEach == 0 {
			stay = append(stay, v)
		} else {
			leave = append(leave, v)
		}
	}
	downStart := time.Now()
	for i, v := range leave {
		time.Sleep(time.Until(downStart.Add(time.Duration(float64(10*time.Second) * float64(i) / float64(len(leave))))))
		v.mu.Lock()
		c := v.conn
		v.conn = nil
		v.mu.Unlock()
		go func() { _ = c.Close() }()
	}
	t.Logf("ramp down: %d viewers left over 10 s, %d stay", len(leave), len(stay))
	var shrink []string
	deadline := time.Now().Add(120 * time.Second)
	last := -1
	for time.Now().Before(deadline) {
		n := len(fw.active())
		if n != last {
			shrink = append(shrink, fmt.Sprintf("t=%.1fs %d gateways", time.Since(downStart).Seconds(), n))
			last = n
		}
		if n == 1 && strings.Count(serve.Log(), "gateway drained and removed") >= 3 {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Logf("scale-in after the ramp down: %s", strings.Join(shrink, ", "))
	if n := len(fw.active()); n != 1 {
		t.Fatalf("%d gateways two minutes after the ramp down, want 1", n)
	}
	time.Sleep(2 * time.Second)
	close(stopGifts)
	gwg.Wait()

	// Every gift stored after a staying viewer joined (a sequence above its
	// welcome's) reached it exactly once, drains included; none twice.
	gmu.Lock()
	defer gmu.Unlock()
	var report []string
	count := func() (missing, doubled, expected int) {
		report = report[:0]
		for _, v := range stay {
			v.mu.Lock()
			for id, g := range acked {
				if g.room != roomOf(v) {
					continue
				}
				n := len(v.arrived[id])
				if n > 1 {
					doubled++
				}
				if g.seq > welcomeSeq[v.id].Load() {
					expected++
					if n == 0 {
						missing++
						report = append(report, fmt.Sprintf("viewer %d (%s, welcome seq %d, on %s, hops %+v) missed gift %s seq %d",
							v.id, roomOf(v), welcomeSeq[v.id].Load(), v.conn.Gateway(), v.reconnects, id, g.seq))
					}
				}
			}
			v.mu.Unlock()
		}
		return
	}
	missing, doubled, expected := count()
	for wait := time.Now().Add(20 * time.Second); missing > 0 && time.Now().Before(wait); {
		time.Sleep(200 * time.Millisecond)
		missing, doubled, expected = count()
	}
	moved := 0
	for _, v := range stay {
		v.mu.Lock()
		for _, h := range v.reconnects {
			if !h.joined.IsZero() {
				moved++
			}
		}
		if v.fatal != nil {
			t.Errorf("viewer %d ended: %v", v.id, v.fatal)
		}
		v.mu.Unlock()
	}
	t.Logf("gifts sent %d, acked %d, failed %d; %d staying viewers, %d moves by drains; expected deliveries %d, missing %d, doubled %d",
		sent.Load(), len(acked), sendFailed.Load(), len(stay), moved, expected, missing, doubled)
	if missing > 0 || doubled > 0 || len(acked) == 0 {
		t.Errorf("gifts missing %d, doubled %d (acked %d)", missing, doubled, len(acked))
		for i, r := range report {
			if i < 10 {
				t.Log(r)
			}
		}
	}
	if d := os.Getenv("LIVEROOM_KEEP_LOGS"); d != "" {
		_ = os.WriteFile(d+"/autoscale-serve.log", []byte(serve.Log()), 0o644)
	}
	if moved == 0 {
		t.Error("no staying viewer was moved by a drain: the scale-in drained only empty gateways")
	}

	// The decisions, with reasons, in the log ...
	log := serve.Log()
	outs := regexp.MustCompile(`msg="autoscale decision" .*action=scale_out reason=(\w+)`).FindAllStringSubmatch(log, -1)
	ins := regexp.MustCompile(`msg="autoscale decision" .*action=scale_in reason=(\w+)`).FindAllStringSubmatch(log, -1)
	var reasons []string
	for _, m := range append(outs, ins...) {
		reasons = append(reasons, m[1])
	}
	t.Logf("decisions in the log: %d scale-outs, %d scale-ins; reasons %v", len(outs), len(ins), reasons)
	if len(outs) < 2 || len(ins) != 3 {
		t.Errorf("log has %d scale-out and %d scale-in decisions, want ≥ 2 and 3", len(outs), len(ins))
	}
	for _, m := range ins {
		if m[1] != "stabilized" {
			t.Errorf("scale-in reason %q, want stabilized", m[1])
		}
	}
	// ... and on /metrics.
	resp, err := operatorGet(t, base+"/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("metrics do not parse: %v", err)
	}
	byLabel := map[string]float64{}
	for _, m := range fams["liveroom_autoscale_decisions_total"].GetMetric() {
		var l []string
		for _, p := range m.GetLabel() {
			l = append(l, p.GetValue())
		}
		byLabel[strings.Join(l, "/")] = m.GetCounter().GetValue()
	}
	t.Logf("liveroom_autoscale_decisions_total: %v", byLabel)
	scaleOuts := 0.0
	for k, v := range byLabel {
		if strings.HasPrefix(k, "scale_out/") {
			scaleOuts += v
		}
	}
	if scaleOuts < 2 || byLabel["scale_in/stabilized"] != 3 {
		t.Errorf("metrics: %v scale-outs and %v scale_in/stabilized, want ≥ 2 and 3", scaleOuts, byLabel["scale_in/stabilized"])
	}
	if g := fams["liveroom_autoscale_current_gateways"].GetMetric(); len(g) != 1 || g[0].GetGauge().GetValue() != 1 {
		t.Errorf("liveroom_autoscale_current_gateways %v, want 1", g)
	}
	var dec struct {
		Decisions []struct {
			Action, Reason string
		} `json:"decisions"`
	}
	r2, err := operatorGet(t, base+"/v1/autoscale/decisions")
	if err != nil {
		t.Fatal(err)
	}
	_ = json.NewDecoder(r2.Body).Decode(&dec)
	r2.Body.Close()
	if !slices.ContainsFunc(dec.Decisions, func(d struct{ Action, Reason string }) bool {
		return d.Action == "scale_in" && d.Reason == "stabilized"
	}) {
		t.Errorf("GET /v1/autoscale/decisions lists no scale-in: %+v", dec.Decisions)
	}
	closeAll()
}
