package fleet_test

import (
	"context"
	"encoding/json"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/liveroom/liveroom/internal/bus"
	"github.com/liveroom/liveroom/internal/fleet"
	"github.com/liveroom/liveroom/internal/testutil"
)

var t0 = time.Unix(1000, 0)

func beat(id string, intervalMS int64) bus.Beat {
	return bus.Beat{ID: id, URL: "ws://" + id + ".example.com/v1/ws", State: bus.StateActive, Started: 1, IntervalMS: intervalMS}
}

func newView(t *testing.T, cfg fleet.Config) *fleet.View {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = testutil.Logger()
	}
	v, err := fleet.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func ids(gs []fleet.Gateway) []string {
	out := make([]string, len(gs))
	for i, g := range gs {
		out[i] = g.Beat.ID
	}
	return out
}

func TestNewValidates(t *testing.T) {
	for _, cfg := range []fleet.Config{{StaleAfter: -time.Second}, {ForgetAfter: -time.Second}} {
		if _, err := fleet.New(cfg); err == nil {
			t.Errorf("New(%+v) accepted", cfg)
		}
	}
	v := newView(t, fleet.Config{})
	if err := v.Start(context.Background()); err == nil {
		t.Error("Start without a NATS connection succeeded")
	}
	if err := v.Close(); err != nil {
		t.Errorf("Close of a view never started: %v", err)
	}
}

// TestFreshness: a gateway is fresh for three of its own intervals (1 s when
// its beats carry none), or for StaleAfter when set; snapshots are by id
// whatever the order the beats came in.
func TestFreshness(t *testing.T) {
	for _, tc := range []struct {
		name       string
		staleAfter time.Duration
		intervalMS int64
		want       time.Duration
	}{
		{"three of its intervals", 0, 200, 600 * time.Millisecond},
		{"no interval: three seconds", 0, 0, 3 * time.Second},
		{"StaleAfter overrides", 400 * time.Millisecond, 1000, 400 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := newView(t, fleet.Config{StaleAfter: tc.staleAfter})
			for _, id := range []string{"c", "a", "b"} {
				if _, ok := v.Observe(beat(id, tc.intervalMS), t0); !ok {
					t.Fatalf("beat of %s not taken", id)
				}
			}
			if got := ids(v.Fresh(t0.Add(tc.want - time.Nanosecond))); !slices.Equal(got, []string{"a", "b", "c"}) {
				t.Fatalf("fresh just before %v: %v", tc.want, got)
			}
			if got := v.Fresh(t0.Add(tc.want)); len(got) != 0 {
				t.Fatalf("fresh after %v of silence: %v", tc.want, ids(got))
			}
			g, ok := v.Get("b")
			if !ok || g.Stale != tc.want || !g.At.Equal(t0) || g.Fresh(t0.Add(tc.want)) {
				t.Fatalf("Get(b) = %+v, %v", g, ok)
			}
			if got := ids(v.All(t0.Add(tc.want))); !slices.Equal(got, []string{"a", "b", "c"}) {
				t.Fatalf("All lists silent gateways until they are forgotten: %v", got)
			}
		})
	}
	if got := fleet.StaleAfter(0); got != 3*time.Second {
		t.Errorf("StaleAfter(0) = %v", got)
	}
}

// TestForget: a gateway silent ten stale windows (or ForgetAfter) is
// forgotten by the next beat of any gateway, and OnBeat hears of it with
// that beat.
func TestForget(t *testing.T) {
	type call struct {
		id        string
		forgotten []string
	}
	for _, tc := range []struct {
		name   string
		forget time.Duration
		after  time.Duration // silence that forgets
	}{
		{"ten stale windows", 0, 30 * time.Second},
		{"ForgetAfter", 2 * time.Minute, 2 * time.Minute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var calls []call
			v := newView(t, fleet.Config{ForgetAfter: tc.forget, OnBeat: func(g fleet.Gateway, forgotten []fleet.Gateway) {
				calls = append(calls, call{g.Beat.ID, ids(forgotten)})
			}})
			v.Observe(beat("old", 1000), t0)
			v.Observe(beat("a", 1000), t0.Add(tc.after))
			if _, ok := v.Get("old"); !ok {
				t.Fatal("forgotten at exactly the limit")
			}
			if got := ids(v.All(t0.Add(tc.after + time.Millisecond))); !slices.Equal(got, []string{"a"}) {
				t.Fatalf("All past the limit lists %v", got)
			}
			v.Observe(beat("a", 1000), t0.Add(tc.after+time.Millisecond))
			if _, ok := v.Get("old"); ok {
				t.Fatal("old not forgotten")
			}
			want := []call{{"old", nil}, {"a", nil}, {"a", []string{"old"}}}
			if len(calls) != len(want) {
				t.Fatalf("OnBeat calls %+v", calls)
			}
			for i := range want {
				if calls[i].id != want[i].id || !slices.Equal(calls[i].forgotten, want[i].forgotten) {
					t.Fatalf("OnBeat calls %+v, want %+v", calls, want)
				}
			}
		})
	}
}

// TestFirstBeatOfAProcess: First is the arrival of the first beat of the
// gateway process; a restart under the same id (a new Started) starts
// again.
func TestFirstBeatOfAProcess(t *testing.T) {
	v := newView(t, fleet.Config{})
	b := beat("g", 1000)
	v.Observe(b, t0)
	g, _ := v.Observe(b, t0.Add(time.Second))
	if !g.First.Equal(t0) || !g.At.Equal(t0.Add(time.Second)) {
		t.Fatalf("second beat: first %v at %v", g.First, g.At)
	}
	b.Started = 2
	if g, _ = v.Observe(b, t0.Add(2*time.Second)); !g.First.Equal(t0.Add(2 * time.Second)) {
		t.Fatalf("restarted process keeps first %v", g.First)
	}
	if _, ok := v.Observe(bus.Beat{ID: "not an id"}, t0); ok {
		t.Fatal("a beat without a gateway id was taken")
	}
	if len(v.All(t0)) != 1 {
		t.Fatalf("view %v", ids(v.All(t0)))
	}
}

// connectAs connects to e with the credential of role, until the test ends.
func connectAs(t *testing.T, e *bus.Embedded, role bus.Role) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(testutil.NATSURL(t, e, role, ""))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

func publish(t *testing.T, nc *nats.Conn, subject string, b bus.Beat) {
	t.Helper()
	data, _ := json.Marshal(b)
	if err := nc.Publish(subject, data); err != nil {
		t.Fatal(err)
	}
}

// TestReadsBeatsFromNATS runs a view on a real NATS server: it takes the
// beats of real shape, refuses and counts the others (including a URL on a
// host not listed), and after Close takes nothing more.
func TestReadsBeatsFromNATS(t *testing.T) {
	e := testutil.StartNATS(t)
	vnc := connectAs(t, e, bus.RoleMonitor)
	var mu sync.Mutex
	var taken []string
	v := newView(t, fleet.Config{NC: vnc, Hosts: []string{"*.example.com"}, OnBeat: func(g fleet.Gateway, _ []fleet.Gateway) {
		mu.Lock()
		taken = append(taken, g.Beat.ID)
		mu.Unlock()
	}})
	if err := v.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	gnc := connectAs(t, e, bus.RoleGateway)
	publish(t, gnc, bus.BeatSubject("b"), beat("b", 1000))
	publish(t, gnc, bus.BeatSubject("a"), beat("a", 1000))
	foreign := beat("f", 1000)
	foreign.URL = "wss://attacker.example.net/v1/ws"
	publish(t, gnc, bus.BeatSubject("f"), foreign)
	publish(t, gnc, bus.BeatSubject("x"), beat("other", 1000)) // id is not the subject's
	if err := gnc.Publish(bus.BeatSubject("j"), []byte("{not json")); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, "both beats taken", func() bool { return len(v.Fresh(time.Now())) == 2 })
	testutil.Eventually(t, 5*time.Second, "three beats refused", func() bool { return v.Refused() == 3 })
	if got := ids(v.Fresh(time.Now())); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("fresh %v", got)
	}
	g, _ := v.Get("a")
	if since := time.Since(g.At); since < 0 || since > time.Minute {
		t.Fatalf("arrival %v is not the local clock's", g.At)
	}

	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	if err := v.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	mu.Lock()
	n := len(taken)
	mu.Unlock()
	publish(t, gnc, bus.BeatSubject("c"), beat("c", 1000))
	if err := gnc.Flush(); err != nil {
		t.Fatal(err)
	}
	// Proof that c reached the server and would have been delivered: a
	// second subscriber on the same connection sees it.
	probe, err := vnc.SubscribeSync(bus.BeatSubject("c"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = probe.Unsubscribe() }()
	if err := vnc.Flush(); err != nil {
		t.Fatal(err)
	}
	publish(t, gnc, bus.BeatSubject("c"), beat("c", 1000))
	if _, err := probe.NextMsg(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(taken) != n {
		t.Fatalf("beats taken after Close: %v", taken[n:])
	}
	if _, ok := v.Get("c"); ok {
		t.Fatal("a beat published after Close is in the view")
	}
}

// TestStrangerCannotReadBeats: a credential without the right to read
// beats (an uplink's) cannot start a view; one that may (dispatch,
// autoscale, monitor) can.
func TestStrangerCannotReadBeats(t *testing.T) {
	e := testutil.StartNATS(t)
	for _, tc := range []struct {
		role bus.Role
		ok   bool
	}{
		{bus.RoleUplink, false},
		{bus.RoleControl, false},
		{bus.RoleDispatch, true},
		{bus.RoleAutoscale, true},
		{bus.RoleMonitor, true},
	} {
		t.Run(string(tc.role), func(t *testing.T) {
			nc := connectAs(t, e, tc.role)
			v := newView(t, fleet.Config{NC: nc})
			err := v.Start(context.Background())
			defer v.Close()
			if (err == nil) != tc.ok {
				t.Fatalf("Start: %v, want allowed %v", err, tc.ok)
			}
		})
	}
}

// TestConnectionClosedUnderTheView: the reader ends when the connection
// does (goleak in TestMain checks it), and Close still returns.
func TestConnectionClosedUnderTheView(t *testing.T) {
	e := testutil.StartNATS(t)
	nc := connectAs(t, e, bus.RoleMonitor)
	var calls atomic.Int64
	v := newView(t, fleet.Config{NC: nc, OnBeat: func(fleet.Gateway, []fleet.Gateway) { calls.Add(1) }})
	if err := v.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	gnc := connectAs(t, e, bus.RoleGateway)
	publish(t, gnc, bus.BeatSubject("a"), beat("a", 1000))
	testutil.Eventually(t, 5*time.Second, "the beat", func() bool { return calls.Load() == 1 })
	nc.Close()
	if err := v.Close(); err != nil {
		t.Fatalf("Close after the connection closed: %v", err)
	}
}
