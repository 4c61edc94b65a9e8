package autoscale

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/liveroom/liveroom/internal/bus"
	"github.com/liveroom/liveroom/internal/metrics"
	"github.com/liveroom/liveroom/internal/testutil"
)

// fakeFleet is a set of pretend gateways on a real NATS: each beats every
// 100 ms and answers its control subject; a drained one beats "draining"
// a few times and then goes silent, as a real one exits after its drain.
// It is also the actuator that starts and removes them.
type fakeFleet struct {
	t  *testing.T
	nc *nats.Conn

	mu    sync.Mutex
	gws   map[string]*fakeGW
	n     int
	perGW int // connections each active gateway reports
	// readyAfter is how long a new gateway stays silent after Add.
	readyAfter time.Duration
	events     []string
	removed    []string
}

type fakeGW struct {
	id       string
	since    time.Time
	started  int64
	state    string
	conns    int
	beatsOut int // beats left before a drained gateway goes silent
	sub      *nats.Subscription
}

func newFakeFleet(t *testing.T, nc *nats.Conn) *fakeFleet {
	f := &fakeFleet{t: t, nc: nc, gws: map[string]*fakeGW{}}
	every(t, 100*time.Millisecond, func(time.Time) { f.beat() })
	return f
}

// every calls f every d from a goroutine that stops when the test ends.
func every(t *testing.T, d time.Duration, f func(now time.Time)) {
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tk := time.NewTicker(d)
		defer tk.Stop()
		for {
			select {
			case <-stop:
				return
			case now := <-tk.C:
				f(now)
			}
		}
	}()
	t.Cleanup(func() { close(stop); <-done })
}

func (f *fakeFleet) setLoad(perGW int) {
	f.mu.Lock()
	f.perGW = perGW
	f.mu.Unlock()
}

func (f *fakeFleet) beat() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, g := range f.gws {
		if time.Since(g.since) < f.readyAfter {
			continue
		}
		if g.state == bus.StateDraining {
			if g.beatsOut <= 0 {
				continue
			}
			g.beatsOut--
			g.conns = 0
		} else {
			g.conns = f.perGW
		}
		b, _ := json.Marshal(bus.Beat{ID: g.id, URL: "ws://127.0.0.1:1/v1/ws", State: g.state, Conns: g.conns, Started: g.started, TS: time.Now().UnixMilli(),
			MaxConns: 3000, Load: float64(g.conns) / 3000, IntervalMS: 100})
		_ = f.nc.Publish(bus.BeatSubject(g.id), b)
	}
}

func (f *fakeFleet) Members(context.Context) ([]Member, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []Member
	for _, g := range f.gws {
		out = append(out, Member{ID: g.id, Since: g.since})
	}
	return out, nil
}

func (f *fakeFleet) Add(_ context.Context, n int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for range n {
		f.n++
		g := &fakeGW{id: fmt.Sprintf("fake%d", f.n), since: time.Now(), started: time.Now().UnixMilli(), state: bus.StateActive}
		sub, err := f.nc.Subscribe(bus.ControlSubject(g.id), func(m *nats.Msg) {
			f.mu.Lock()
			g.state, g.beatsOut = bus.StateDraining, 3
			f.events = append(f.events, "drain "+g.id)
			f.mu.Unlock()
			b, _ := json.Marshal(bus.ControlReply{Gateway: g.id, State: bus.StateDraining})
			_ = m.Respond(b)
		})
		if err != nil {
			return err
		}
		g.sub = sub
		f.gws[g.id] = g
		f.events = append(f.events, "add "+g.id)
	}
	return nil
}

func (f *fakeFleet) Remove(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	g, ok := f.gws[id]
	if !ok {
		return fmt.Errorf("no gateway %s", id)
	}
	if g.beatsOut > 0 {
		f.t.Errorf("gateway %s removed while it still beats", id)
	}
	_ = g.sub.Unsubscribe()
	delete(f.gws, id)
	f.removed = append(f.removed, id)
	f.events = append(f.events, "remove "+id)
	return nil
}

func (f *fakeFleet) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.gws)
}

func (f *fakeFleet) eventLog() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.events)
}

func connect(t *testing.T) *nats.Conn {
	t.Helper()
	e := testutil.StartNATS(t)
	nc, err := bus.Connect(testutil.NATSURL(t, e, bus.RoleAll, ""), "autoscale-test", testutil.Logger())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

func TestScalerScalesOutAndDrainsBeforeRemoving(t *testing.T) {
	nc := connect(t)
	f := newFakeFleet(t, nc)
	s, err := New(Config{
		NC: nc, Actuator: f, Interval: 50 * time.Millisecond, Warmup: -1, Logger: testutil.Logger(),
		Policy: Policy{Min: 1, Max: 3, Capacity: Capacity{Conns: 3000, Target: 0.7},
			Stabilization: 2 * time.Second, ReadyTime: time.Second, JoinSpan: time.Second},
	})
	if err != nil {
		t.Fatal(err)
	}
	reg := metrics.NewRegistry()
	if err := s.Register(reg); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	testutil.Eventually(t, 5*time.Second, "the minimum of one gateway is started", func() bool { return f.count() == 1 })
	// 2,500 on one gateway needs two (2,100 each at 70 %); once the second
	// one reports 2,500 too, 5,000 need three.
	f.setLoad(2500)
	testutil.Eventually(t, 5*time.Second, "scale-out to 2", func() bool { return f.count() >= 2 })
	testutil.Eventually(t, 5*time.Second, "scale-out to 3", func() bool { return f.count() == 3 })
	// Load gone: after the 2 s window, one at a time, drained then removed.
	f.setLoad(10)
	testutil.Eventually(t, 20*time.Second, "scale-in to the minimum", func() bool { return f.count() == 1 })
	time.Sleep(300 * time.Millisecond)
	if n := f.count(); n != 1 {
		t.Fatalf("%d gateways after the scale-in, want 1", n)
	}
	ev := f.eventLog()
	var drains []string
	for i, e := range ev {
		if id, ok := strings.CutPrefix(e, "remove "); ok {
			if j := slices.Index(ev, "drain "+id); j < 0 || j > i {
				t.Errorf("%s removed without a drain before it: %v", id, ev)
			}
		}
		if id, ok := strings.CutPrefix(e, "drain "); ok {
			drains = append(drains, id)
			// One at a time: the previous drained gateway was removed first.
			if len(drains) > 1 {
				prev := drains[len(drains)-2]
				if j := slices.Index(ev, "remove "+prev); j < 0 || j > i {
					t.Errorf("%s drained before %s was removed: %v", id, prev, ev)
				}
			}
		}
	}
	if len(drains) != 2 {
		t.Errorf("drains %v, want 2", drains)
	}

	// The decisions endpoint lists them, newest first, with reasons.
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, DecisionsPath, nil))
	var ans DecisionsAnswer
	if err := json.Unmarshal(rec.Body.Bytes(), &ans); err != nil {
		t.Fatalf("decisions: %v\n%s", err, rec.Body)
	}
	actions := map[Action]int{}
	for i, d := range ans.Decisions {
		actions[d.Action]++
		if i > 0 && d.At.After(ans.Decisions[i-1].At) {
			t.Errorf("decisions not newest first")
		}
		if d.Reason == "" {
			t.Errorf("decision without a reason: %+v", d)
		}
	}
	if actions[ActionScaleOut] < 2 || actions[ActionScaleIn] != 2 || ans.Latest == nil || ans.Policy.Max != 3 {
		t.Errorf("decisions endpoint: %d scale-outs, %d scale-ins, latest %v, policy %+v", actions[ActionScaleOut], actions[ActionScaleIn], ans.Latest, ans.Policy)
	}

	// The metrics parse and carry the decisions with their reasons.
	srv := httptest.NewServer(metrics.Handler(reg))
	defer srv.Close()
	fams := scrape(t, srv.URL)
	for _, name := range []string{"liveroom_autoscale_desired_gateways", "liveroom_autoscale_current_gateways", "liveroom_autoscale_decisions_total",
		"liveroom_autoscale_demand_connections", "liveroom_autoscale_join_rate_per_second", "liveroom_autoscale_lookahead_connections",
		"liveroom_autoscale_needed_gateways", "liveroom_autoscale_gateways", "liveroom_autoscale_gateways_removed_total"} {
		if fams[name] == nil {
			t.Errorf("metric %s missing", name)
		}
	}
	reasons := map[string]float64{}
	for _, m := range fams["liveroom_autoscale_decisions_total"].GetMetric() {
		var action, reason string
		for _, l := range m.GetLabel() {
			switch l.GetName() {
			case "action":
				action = l.GetValue()
			case "reason":
				reason = l.GetValue()
			}
		}
		reasons[action+"/"+reason] += m.GetCounter().GetValue()
	}
	if reasons["scale_in/stabilized"] != 2 || reasons["scale_out/min"] != 1 {
		t.Errorf("decisions by action/reason %v: want 2 scale_in/stabilized and 1 scale_out/min", reasons)
	}
	if v := fams["liveroom_autoscale_gateways_removed_total"].GetMetric()[0].GetCounter().GetValue(); v != 2 {
		t.Errorf("removed %v, want 2", v)
	}
}

func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("exposition does not parse: %v", err)
	}
	return fams
}

func TestScalerDryRunOnlyLogs(t *testing.T) {
	nc := connect(t)
	f := newFakeFleet(t, nc)
	_ = f.Add(context.Background(), 3) // gateways it does not run
	f.setLoad(100)
	var drains atomic.Int64
	sub, _ := nc.Subscribe(bus.ControlSubjectPrefix+">", func(*nats.Msg) { drains.Add(1) })
	defer sub.Unsubscribe()
	s, err := New(Config{NC: nc, Actuator: &DryRun{Log: testutil.Logger()}, Interval: 50 * time.Millisecond, Warmup: 200 * time.Millisecond, Logger: testutil.Logger(),
		Policy: Policy{Min: 1, Max: 5, Stabilization: 500 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	testutil.Eventually(t, 5*time.Second, "a dry-run scale-in decision", func() bool {
		return s.Latest().Action == ActionScaleIn
	})
	time.Sleep(200 * time.Millisecond)
	if drains.Load() != 0 || f.count() != 3 {
		t.Errorf("dry-run sent %d drain commands and left %d gateways; want 0 and 3", drains.Load(), f.count())
	}
}

func TestNewValidates(t *testing.T) {
	nc := connect(t)
	for _, cfg := range []Config{
		{Actuator: &DryRun{}},
		{NC: nc},
		{NC: nc, Actuator: &DryRun{}, Policy: Policy{Min: 5, Max: 2}},
		{NC: nc, Actuator: &DryRun{}, Policy: Policy{Capacity: Capacity{Conns: 100, Target: 1.5}}},
		{NC: nc, Actuator: &DryRun{}, Policy: Policy{Capacity: Capacity{Conns: -1}}},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v): want an error", cfg.Policy)
		}
	}
}

func TestLoadCapacity(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	c, err := LoadCapacity(write("a.json", `{"conns":3000,"cpu":1.5,"bytes_out":5e7,"msgs_out":200000,"target":0.6}`))
	if err != nil || c != (Capacity{Conns: 3000, CPU: 1.5, BytesOut: 5e7, MsgsOut: 200000, Target: 0.6}) {
		t.Errorf("capacity %+v, %v", c, err)
	}
	// The file bench capacity writes: target_utilisation, and measured steps.
	c, err = LoadCapacity(write("b.json", `{"conns":12000,"cpu":1.8,"bytes_out":0,"msgs_out":9e5,"target_utilisation":0.75,"gateway":"gw-1","steps":[{"viewers":2000}]}`))
	if err != nil || c.Conns != 12000 || c.Target != 0.75 {
		t.Errorf("bench file: %+v, %v", c, err)
	}
	if _, err := LoadCapacity(write("c.json", `{"target":0.7}`)); err == nil {
		t.Error("a file with no limit: want an error")
	}
	if _, err := LoadCapacity(write("d.json", `{`)); err == nil {
		t.Error("bad JSON: want an error")
	}
	if _, err := LoadCapacity(filepath.Join(dir, "none.json")); err == nil {
		t.Error("missing file: want an error")
	}
	if got := (Capacity{}).WithDefaults(); got.Conns != DefaultConns || got.Target != DefaultTarget {
		t.Errorf("defaults %+v", got)
	}
}

// TestScalerReadsTheDoor: the scaler measures how long its new gateways take
// to beat and plans over that, and scales out on the joins dispatch counts
// at the door while the gateways' beats still show no viewer at all.
func TestScalerReadsTheDoor(t *testing.T) {
	nc := connect(t)
	f := newFakeFleet(t, nc)
	f.readyAfter = 400 * time.Millisecond
	s, err := New(Config{
		NC: nc, Actuator: f, Interval: 50 * time.Millisecond, Warmup: -1, Logger: testutil.Logger(),
		Policy: Policy{Min: 1, Max: 3, Capacity: Capacity{Conns: 300, Target: 0.7}, ReadyTime: 10 * time.Second},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	testutil.Eventually(t, 5*time.Second, "the first gateway's ready time is measured", func() bool { return s.ReadyTime() > 0 })
	if rt := s.ReadyTime(); rt < f.readyAfter || rt > f.readyAfter+time.Second {
		t.Fatalf("measured ready time %v, want about %v", rt, f.readyAfter)
	}
	if d := s.Latest(); d.Figures.ReadyTime != s.ReadyTime().Seconds() || d.Action != ActionNone || f.count() != 1 {
		t.Fatalf("latest decision %+v with %d gateways", d, f.count())
	}
	// 500 new viewers every 100 ms at the door, none on a gateway yet.
	every(t, 100*time.Millisecond, func(now time.Time) {
		b, _ := json.Marshal(bus.DoorReport{ID: "d1", TS: now.UnixMilli(), IntervalMS: 100, Joins: 500, Waited: 500, WaitAnswers: 500})
		_ = nc.Publish(bus.DoorSubject, b)
	})
	testutil.Eventually(t, 5*time.Second, "scale-out to max on the door's joins", func() bool { return f.count() == 3 })
	var out Decision
	for _, d := range s.Decisions() {
		if d.Action == ActionScaleOut && d.Reason == ReasonLookahead {
			out = d
		}
	}
	if out.Figures.DoorRate < 500 || out.Figures.BeatRate != 0 || out.Figures.Demand.Conns != 0 || out.Figures.Waits == 0 ||
		!strings.Contains(out.Why, "door") {
		t.Errorf("look-ahead scale-out %+v, want it on the door's rate alone", out)
	}
}

// TestScalerIgnoresForgedBeats: a beat of the wrong shape (here one naming
// another gateway than its subject, with a crowd of viewers) does not
// steer the fleet's size; the real beat beside it counts.
func TestScalerIgnoresForgedBeats(t *testing.T) {
	nc := connect(t)
	s, err := New(Config{NC: nc, Actuator: &DryRun{Log: testutil.Logger()}, Interval: time.Hour, Warmup: -1, Logger: testutil.Logger(),
		Policy: Policy{Min: 1, Max: 10, Capacity: Capacity{Conns: 1000, Target: 0.7}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for subject, b := range map[string]bus.Beat{
		bus.BeatSubject("real"):  {ID: "real", URL: "ws://127.0.0.1:1/v1/ws", State: bus.StateActive, Conns: 10, IntervalMS: 1000},
		bus.BeatSubject("other"): {ID: "real", URL: "ws://127.0.0.1:1/v1/ws", State: bus.StateActive, Conns: 9000, IntervalMS: 1000},
	} {
		data, _ := json.Marshal(b)
		if err := nc.Publish(subject, data); err != nil {
			t.Fatal(err)
		}
	}
	testutil.Eventually(t, 5*time.Second, "the real beat taken and the forged one refused", func() bool {
		_, ok := s.fleet.Get("real")
		return ok && s.fleet.Refused() == 1
	})
	d := s.Tick(context.Background(), time.Now())
	if d.Figures.Active != 1 || d.Figures.Demand.Conns != 10 || d.Desired != 1 {
		t.Fatalf("decision %s desired %d, active %d, conns %v: %s", d.Action, d.Desired, d.Figures.Active, d.Figures.Demand.Conns, d.Why)
	}
}
