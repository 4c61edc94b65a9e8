package dispatch

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http/httptest"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/liveroom/liveroom/internal/bus"
	"github.com/liveroom/liveroom/internal/protocol"
	"github.com/liveroom/liveroom/internal/testutil"
)

// clock is a fake time source shared by the servers of one test. Tests move
// it only while no Choose runs.
type clock struct{ now time.Time }

func (c *clock) Now() time.Time      { return c.now }
func (c *clock) Add(d time.Duration) { c.now = c.now.Add(d) }
func newClock() *clock               { return &clock{now: time.Unix(1000, 0)} }
func seeded(seed uint64) func() float64 {
	return rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)).Float64
}

// newTestServer returns a server on a fake clock. A non-zero seed makes its
// draws reproducible (and unsafe for concurrent Choose); 0 keeps the
// concurrency-safe default source.
func newTestServer(t testing.TB, cfg Config, c *clock, seed uint64) *Server {
	t.Helper()
	if cfg.NC == nil {
		cfg.NC = &nats.Conn{}
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s.nowFn = c.Now
	if seed != 0 {
		s.randFn = seeded(seed)
	}
	return s
}

func active(id string, conns, maxConns int) bus.Beat {
	return bus.Beat{
		ID: id, URL: "ws://" + id + "/v1/ws", State: bus.StateActive, IntervalMS: 1000,
		Conns: conns, MaxConns: maxConns, Load: float64(conns) / float64(maxConns),
	}
}

func ids(cs []Candidate) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.ID
	}
	return out
}

// checkAnswer fails on duplicate gateways or on ids not in allowed.
func checkAnswer(t testing.TB, cs []Candidate, allowed map[string]bool) {
	t.Helper()
	seen := map[string]bool{}
	for _, c := range cs {
		if seen[c.ID] || !allowed[c.ID] {
			t.Errorf("answer %v: %s repeated or not allowed", ids(cs), c.ID)
		}
		seen[c.ID] = true
	}
}

func TestNewValidates(t *testing.T) {
	for name, cfg := range map[string]Config{
		"no nats":          {},
		"ceiling above 1":  {NC: &nats.Conn{}, LoadCeiling: 1.5},
		"negative ceiling": {NC: &nats.Conn{}, LoadCeiling: -0.1},
		"negative margin":  {NC: &nats.Conn{}, FillMargin: -1},
		"affinity load":    {NC: &nats.Conn{}, AffinityMaxLoad: 2},
		"negative stale":   {NC: &nats.Conn{}, StaleAfter: -time.Second},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: New accepted %+v", name, cfg)
		}
	}
	s, err := New(Config{NC: &nats.Conn{}})
	if err != nil {
		t.Fatal(err)
	}
	c := s.cfg
	if c.LoadCeiling != 0.9 || c.Candidates != 3 || c.FillMargin != 0.1 || c.AffinityMaxViewers != 500 ||
		c.AffinityMaxLoad != 0.6 || c.Replicas != 1 || c.StaleAfter != 0 || c.Reconnect.BaseMS != 500 {
		t.Fatalf("defaults: %+v", c)
	}
}

func TestEligibility(t *testing.T) {
	type step struct {
		after time.Duration // clock advance before Observe
		beat  bus.Beat
	}
	mk := func(id string, mut func(*bus.Beat)) bus.Beat {
		b := active(id, 100, 100000) // roomy: 200 answers move the load by 0.002
		if mut != nil {
			mut(&b)
		}
		return b
	}
	for _, tc := range []struct {
		name    string
		cfg     Config
		beats   []step
		wait    time.Duration // clock advance after the beats
		offered []string      // by Choose, in any order
		listed  []string      // by Gateways
	}{
		{
			name:    "fresh active",
			beats:   []step{{0, mk("a", nil)}, {0, mk("b", nil)}},
			wait:    2900 * time.Millisecond,
			offered: []string{"a", "b"}, listed: []string{"a", "b"},
		},
		{
			name:    "silent for 3 intervals of 1s",
			beats:   []step{{0, mk("a", nil)}, {time.Second, mk("b", nil)}},
			wait:    2 * time.Second, // a silent 3 s, b 2 s
			offered: []string{"b"}, listed: []string{"b"},
		},
		{
			name: "silent for 3 of its own 200ms intervals",
			beats: []step{
				{0, mk("slow", nil)},
				{0, mk("fast", func(b *bus.Beat) { b.IntervalMS = 200 })},
			},
			wait:    600 * time.Millisecond,
			offered: []string{"slow"}, listed: []string{"slow"},
		},
		{
			name:    "no interval in the beat means 1s",
			beats:   []step{{0, mk("a", func(b *bus.Beat) { b.IntervalMS = 0 })}},
			wait:    2999 * time.Millisecond,
			offered: []string{"a"}, listed: []string{"a"},
		},
		{
			name:    "StaleAfter overrides the interval",
			cfg:     Config{StaleAfter: 10 * time.Second},
			beats:   []step{{0, mk("a", func(b *bus.Beat) { b.IntervalMS = 200 })}},
			wait:    9 * time.Second,
			offered: []string{"a"}, listed: []string{"a"},
		},
		{
			name: "draining never",
			beats: []step{
				{0, mk("a", nil)},
				{0, mk("d", func(b *bus.Beat) { b.State = bus.StateDraining; b.Load = 0; b.Conns = 0 })},
			},
			offered: []string{"a"}, listed: []string{"a", "d"},
		},
		{
			name: "at or above the ceiling never",
			beats: []step{
				{0, mk("a", nil)},
				{0, mk("at", func(b *bus.Beat) { b.Load = 0.9 })},
				{0, mk("above", func(b *bus.Beat) { b.Load = 0.95 })},
				{0, mk("nan", func(b *bus.Beat) { b.Load = math.NaN() })},
			},
			offered: []string{"a"}, listed: []string{"a", "above", "at", "nan"},
		},
		{
			name: "a lower ceiling",
			cfg:  Config{LoadCeiling: 0.5},
			beats: []step{
				{0, mk("low", func(b *bus.Beat) { b.Load = 0.49 })},
				{0, mk("high", func(b *bus.Beat) { b.Load = 0.5 })},
			},
			offered: []string{"low"}, listed: []string{"high", "low"},
		},
		{
			name: "unknown state never",
			beats: []step{
				{0, mk("a", nil)},
				{0, mk("x", func(b *bus.Beat) { b.State = "" })},
			},
			offered: []string{"a"}, listed: []string{"a", "x"},
		},
		{
			name: "a new beat revives",
			beats: []step{
				{0, mk("a", nil)},
				{5 * time.Second, mk("a", nil)},
			},
			wait:    time.Second,
			offered: []string{"a"}, listed: []string{"a"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newClock()
			s := newTestServer(t, tc.cfg, c, 1)
			for _, st := range tc.beats {
				c.Add(st.after)
				s.Observe(st.beat)
			}
			c.Add(tc.wait)
			allowed := map[string]bool{}
			for _, id := range tc.offered {
				allowed[id] = true
			}
			got := map[string]bool{}
			for range 200 {
				cs := s.Choose("r")
				checkAnswer(t, cs, allowed)
				if len(cs) != min(3, len(tc.offered)) {
					t.Fatalf("answer %v, want %d candidates", ids(cs), min(3, len(tc.offered)))
				}
				for _, c := range cs {
					got[c.ID] = true
				}
			}
			if len(got) != len(tc.offered) {
				t.Fatalf("offered %v, want %v", got, tc.offered)
			}
			var listed []string
			for _, b := range s.Gateways() {
				listed = append(listed, b.ID)
			}
			if !reflect.DeepEqual(listed, tc.listed) {
				t.Fatalf("Gateways %v, want %v", listed, tc.listed)
			}
		})
	}
}

// TestNewGatewayFirst checks the weights: an empty gateway beside busy ones
// is drawn first nearly always, and equal gateways equally often.
func TestNewGatewayFirst(t *testing.T) {
	for _, tc := range []struct {
		name     string
		old, max int
		minShare float64 // of the new gateway in the first draw
	}{
		{"1000 of 19000", 1000, 19000, 0.95},
		{"300 of 19000", 300, 19000, 0.95},
		{"1000 of 2000", 1000, 2000, 0.95},
		{"17000 of 19000", 17000, 19000, 0.99}, // 0.895: nearly at the ceiling
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newClock()
			s := newTestServer(t, Config{}, c, 1)
			s.Observe(active("a", tc.old, tc.max))
			s.Observe(active("b", tc.old, tc.max))
			s.Observe(active("new", 0, tc.max))
			ws := s.Weights("r")
			total := 0.0
			for _, w := range ws {
				total += w.Weight
			}
			share := ws[2].Weight / total
			if ws[2].ID != "new" || share < tc.minShare || ws[0].Weight != ws[1].Weight {
				t.Fatalf("new gateway's share %.3f < %.2f: %+v", share, tc.minShare, ws)
			}
			t.Logf("new gateway's first-draw share %.3f", share)
		})
	}

	c := newClock()
	s := newTestServer(t, Config{}, c, 7)
	for i := range 4 {
		s.Observe(active(fmt.Sprintf("g%d", i), 5000, 19000))
	}
	firsts := map[string]int{}
	for range 4000 {
		firsts[s.Choose("r")[0].ID]++
	}
	for id, n := range firsts {
		// Equal loads, 4000 draws: 1000 each, and the assignments keep
		// them level between beats.
		if n < 950 || n > 1050 {
			t.Fatalf("balanced fleet: %s first %d times of 4000: %v", id, n, firsts)
		}
	}
}

// TestBurstBetweenBeats: thousands of requests with no beat in between
// spread over the gateways, move the effective load, and stop at the
// ceiling.
func TestBurstBetweenBeats(t *testing.T) {
	c := newClock()
	s := newTestServer(t, Config{}, c, 3)
	s.Observe(active("a", 300, 1000))
	s.Observe(active("b", 300, 1000))
	s.Observe(active("c", 300, 1000))
	firsts := map[string]int{}
	for range 1500 {
		cs := s.Choose("r")
		if len(cs) != 3 {
			t.Fatalf("answer %v", ids(cs))
		}
		firsts[cs[0].ID]++
	}
	for id, n := range firsts {
		if n < 450 || n > 550 {
			t.Fatalf("%s first %d times of 1500: %v", id, n, firsts)
		}
	}
	for _, w := range s.Weights("r") {
		if want := 0.3 + float64(w.Assigned)/1000; w.Assigned != int64(firsts[w.ID]) || math.Abs(w.Load-want) > 1e-9 {
			t.Fatalf("weights %+v, firsts %v", w, firsts)
		}
	}
	// The next beat carries the conns: the counts start again.
	for id, n := range firsts {
		s.Observe(active(id, 300+n, 1000))
	}
	for _, w := range s.Weights("r") {
		if w.Assigned != 0 || math.Abs(w.Load-w.BeatLoad) > 1e-12 {
			t.Fatalf("after the beat: %+v", w)
		}
	}

	// One gateway with 10 connections of room left under the ceiling gets
	// 10 clients, then nothing until its next beat says otherwise.
	s.Observe(active("a", 880, 1000))
	s.Observe(active("b", 880, 1000))
	s.Observe(active("c", 880, 1000))
	s.Observe(bus.Beat{ID: "b", URL: "ws://b/v1/ws", State: bus.StateDraining})
	s.Observe(bus.Beat{ID: "c", URL: "ws://c/v1/ws", State: bus.StateDraining})
	for i := range 30 {
		cs := s.Choose("r")
		if (i < 20) != (len(cs) == 1) {
			t.Fatalf("request %d: %v", i, ids(cs))
		}
	}
	if w := s.Weights("r"); len(w) != 1 || w[0].Weight != 0 || w[0].Assigned != 20 {
		t.Fatalf("full gateway: %+v", w)
	}
	// A beat that does not show those 20 carries them: they may still be
	// on their way. So does the next; the third forgets them.
	for range 2 {
		s.Observe(active("a", 880, 1000))
		if w := s.Weights("r"); len(w) != 1 || w[0].Weight != 0 || w[0].Assigned != 0 || w[0].Carried != 20 {
			t.Fatalf("after a beat without them: %+v", w)
		}
	}
	s.Observe(active("a", 880, 1000))
	if cs := s.Choose("r"); len(cs) != 1 {
		t.Fatalf("after three beats without them: %v", ids(cs))
	}
}

// TestCarryClientsOnTheirWay: clients sent to a gateway that its next beat
// does not show yet still count against its ceiling, as many as the beat's
// rise of connections leaves unexplained, for one more beat.
func TestCarryClientsOnTheirWay(t *testing.T) {
	c := newClock()
	s := newTestServer(t, Config{}, c, 4)
	s.Observe(active("a", 0, 100))
	for range 50 {
		if cs := s.Choose("r"); len(cs) != 1 {
			t.Fatal(ids(cs))
		}
	}
	// 30 of the 50 have connected when the gateway beats: 20 are on
	// their way.
	s.Observe(active("a", 30, 100))
	w := s.Weights("r")[0]
	if w.Assigned != 0 || w.Carried != 20 || math.Abs(w.Load-0.5) > 1e-9 {
		t.Fatalf("after 30 of 50 arrived: %+v, want 20 carried and load 0.5", w)
	}
	// 40 more are sent; the ceiling (90) holds against 30 + 20 + 40.
	admitted := 0
	for range 60 {
		if len(s.Choose("r")) > 0 {
			admitted++
		}
	}
	// 40 up to the ceiling, give or take the float rounding of 0.3 + 0.6.
	if admitted < 40 || admitted > 41 {
		t.Fatalf("admitted %d, want 40 up to the 90 %% ceiling", admitted)
	}
	// Next beat: all 60 arrived (conns 90): nothing carried.
	s.Observe(active("a", 90, 100))
	if w := s.Weights("r"); len(w) != 0 {
		t.Fatalf("a gateway at its ceiling is offered: %+v", w)
	}
	// A new process under the same id carries nothing.
	b := active("a", 10, 100)
	b.Started = 7
	s.Observe(b)
	if w := s.Weights("r")[0]; w.Carried != 0 {
		t.Fatalf("restarted gateway: %+v", w)
	}
}

// TestScaleOut is the spec's scale-out balance in simulation: two gateways
// with N viewers each, a third starts, and 1.5 N viewers arrive through
// dispatch in concurrent bursts of 500 between beats. Every gateway beats
// each second with the conns it then holds. Afterwards every gateway is
// within ±15 % of the mean.
func TestScaleOut(t *testing.T) {
	for _, tc := range []struct {
		n, maxConns, replicas int
	}{
		{1000, 19000, 1},
		{300, 19000, 1},
		{1000, 2000, 1},
		{300, 1000, 1},
		{10000, 19000, 1},
		{1000, 19000, 2},
		{300, 19000, 2},
		{1000, 19000, 4},
		{300, 19000, 4},
	} {
		t.Run(fmt.Sprintf("N=%d max_conns=%d replicas=%d", tc.n, tc.maxConns, tc.replicas), func(t *testing.T) {
			conns := scaleOut(t, tc.n, tc.maxConns, tc.replicas)
			mean := float64(conns[0]+conns[1]+conns[2]) / 3
			worst := 0.0
			for _, n := range conns {
				worst = max(worst, math.Abs(float64(n)-mean)/mean)
			}
			t.Logf("conns %v, mean %.0f, worst deviation %.1f %%", conns, mean, 100*worst)
			if worst > 0.15 {
				t.Fatalf("conns %v: %.1f %% from the mean", conns, 100*worst)
			}
		})
	}
}

func scaleOut(t *testing.T, n, maxConns, replicas int) [3]int {
	const burst, workers = 500, 16
	c := newClock()
	servers := make([]*Server, replicas)
	for i := range servers {
		servers[i] = newTestServer(t, Config{Replicas: replicas}, c, 0)
	}
	names := [3]string{"gw-a", "gw-b", "gw-new"}
	index := map[string]int{"gw-a": 0, "gw-b": 1, "gw-new": 2}
	conns := [3]int{n, n, 0}
	beat := func() {
		for i, id := range names {
			for _, s := range servers {
				s.Observe(active(id, conns[i], maxConns))
			}
		}
	}
	beat()
	for left := n * 3 / 2; left > 0; {
		k := min(burst, left)
		left -= k
		var (
			mu  sync.Mutex
			got [3]int
			wg  sync.WaitGroup
		)
		for w := range workers {
			wg.Go(func() {
				for i := w; i < k; i += workers {
					s := servers[i%replicas]
					cs := s.Choose(protocol.Room(fmt.Sprintf("room-%d", i%50)))
					if len(cs) != 3 {
						t.Errorf("answer %v", ids(cs))
						return
					}
					mu.Lock()
					got[index[cs[0].ID]]++
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		for i := range conns {
			conns[i] += got[i]
		}
		c.Add(time.Second)
		beat()
	}
	return conns
}

func TestAffinity(t *testing.T) {
	type gw struct {
		id    string
		conns int
		rooms map[string]int
	}
	for _, tc := range []struct {
		name  string
		cfg   Config
		gws   []gw
		room  string
		first string // "" when no gateway must come first
	}{
		{
			name: "small room sticks to its gateway",
			gws:  []gw{{"a", 500, map[string]int{"small": 10, "big": 5000}}, {"c", 500, nil}, {"b", 500, nil}},
			room: "small", first: "a",
		},
		{
			name: "the gateway with most viewers of the room",
			gws:  []gw{{"a", 500, map[string]int{"small": 10}}, {"b", 500, map[string]int{"small": 300}}, {"c", 500, nil}},
			room: "small", first: "b",
		},
		{
			name: "equal viewers: the lower load",
			gws:  []gw{{"a", 400, map[string]int{"small": 10}}, {"b", 380, map[string]int{"small": 10}}, {"c", 400, nil}},
			room: "small", first: "b",
		},
		{
			name: "large room spreads",
			gws:  []gw{{"a", 500, map[string]int{"big": 500}}, {"new", 0, nil}, {"b", 500, nil}},
			room: "big",
		},
		{
			name: "not on a busy gateway",
			gws:  []gw{{"a", 600, map[string]int{"small": 10}}, {"new", 0, nil}, {"b", 500, nil}},
			room: "small",
		},
		{
			name: "room elsewhere",
			gws:  []gw{{"a", 500, map[string]int{"other": 10}}, {"new", 0, nil}, {"b", 500, nil}},
			room: "small",
		},
		{
			name: "disabled",
			cfg:  Config{AffinityMaxViewers: -1},
			gws:  []gw{{"a", 500, map[string]int{"small": 10}}, {"new", 0, nil}, {"b", 500, nil}},
			room: "small",
		},
		{
			name: "a higher threshold",
			cfg:  Config{AffinityMaxViewers: 1000, AffinityMaxLoad: 0.8},
			gws:  []gw{{"a", 700, map[string]int{"big": 900}}, {"b", 700, nil}},
			room: "big", first: "a",
		},
		{
			name: "affinity yields while a new gateway fills",
			gws:  []gw{{"a", 500, map[string]int{"small": 10}}, {"new", 0, nil}, {"b", 500, nil}},
			room: "small",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newClock()
			firsts := map[string]int{}
			for i := range 50 {
				// Each request from the same beats, on a fresh replica
				// (a beat that does not show a client carries it).
				s := newTestServer(t, tc.cfg, c, uint64(5+i))
				for _, g := range tc.gws {
					b := active(g.id, g.conns, 1000)
					b.RoomConns = g.rooms
					s.Observe(b)
				}
				cs := s.Choose(protocol.Room(tc.room))
				if len(cs) != len(tc.gws) {
					t.Fatalf("answer %v", ids(cs))
				}
				firsts[cs[0].ID]++
			}
			if tc.first != "" && firsts[tc.first] != 50 {
				t.Fatalf("firsts %v, want %s always", firsts, tc.first)
			}
			// Without affinity the empty gateway fills first.
			if tc.first == "" && firsts["new"] < 40 {
				t.Fatalf("firsts %v, want mostly the new gateway", firsts)
			}
		})
	}

	// Affinity counts the viewers it sent since the beat: a room at 495
	// sticks for 5 more, then spreads until the next beat.
	c := newClock()
	s := newTestServer(t, Config{}, c, 9)
	b := active("a", 500, 1000)
	b.RoomConns = map[string]int{"r": 495}
	s.Observe(b)
	s.Observe(active("other", 520, 1000)) // a stays below the mean for these 5
	for i := range 5 {
		if cs := s.Choose("r"); cs[0].ID != "a" {
			t.Fatalf("request %d: %v", i, ids(cs))
		}
	}
	for _, w := range s.Weights("r") {
		if w.Affinity {
			t.Fatalf("affinity after 500 viewers: %+v", w)
		}
	}
}

// TestConsistentWeights: two dispatch processes fed the same beats, in any
// order, compute the same candidate set and weights; their own answers set
// them apart until the next beats.
func TestConsistentWeights(t *testing.T) {
	c := newClock()
	s1 := newTestServer(t, Config{}, c, 11)
	s2 := newTestServer(t, Config{}, c, 22)
	beats := []bus.Beat{
		active("a", 4000, 19000), active("b", 100, 19000), active("c", 0, 19000),
		active("d", 18000, 19000), // above the ceiling
		{ID: "e", URL: "ws://e/v1/ws", State: bus.StateDraining},
	}
	beats[0].RoomConns = map[string]int{"small": 20, "big": 3000}
	beats[1].RoomConns = map[string]int{"small": 3}
	feed := func() {
		for _, b := range beats {
			s1.Observe(b)
		}
		for i := len(beats) - 1; i >= 0; i-- {
			s2.Observe(beats[i])
		}
	}
	feed()
	for _, room := range []protocol.Room{"small", "big", "none"} {
		w1, w2 := s1.Weights(room), s2.Weights(room)
		if !reflect.DeepEqual(w1, w2) || len(w1) != 3 {
			t.Fatalf("room %s:\n%+v\n%+v", room, w1, w2)
		}
	}
	for range 100 {
		s1.Choose("big")
	}
	if reflect.DeepEqual(s1.Weights("big"), s2.Weights("big")) {
		t.Fatal("100 answers did not change the weights")
	}
	// The next beats do not show those clients: s1 carries them for two
	// beats more; after them, the replicas agree again.
	for range 3 {
		c.Add(time.Second)
		feed()
	}
	if w1, w2 := s1.Weights("big"), s2.Weights("big"); !reflect.DeepEqual(w1, w2) {
		t.Fatalf("after the next beats:\n%+v\n%+v", w1, w2)
	}
}

// TestConcurrentUse runs Choose, Weights and Gateways from many goroutines
// while beats arrive; -race checks the locking.
func TestConcurrentUse(t *testing.T) {
	s, err := New(Config{NC: &nats.Conn{}})
	if err != nil {
		t.Fatal(err)
	}
	allowed := map[string]bool{}
	for i := range 8 {
		allowed[fmt.Sprintf("g%d", i)] = true
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			b := active(fmt.Sprintf("g%d", i%10), i%5000, 19000)
			if i%10 >= 8 {
				b.State = bus.StateDraining
			}
			b.RoomConns = map[string]int{"r": i % 600}
			s.Observe(b)
		}
	})
	rooms := []protocol.Room{"r", "x", "y"}
	for w := range 32 {
		wg.Go(func() {
			for i := range 2000 {
				cs := s.Choose(rooms[(w+i)%len(rooms)])
				checkAnswer(t, cs, allowed)
				if i%100 == 0 {
					s.Weights("r")
					s.Gateways()
				}
			}
		})
	}
	testutil.Eventually(t, 5*time.Second, "answers", func() bool { return len(s.Choose("r")) == 3 })
	close(stop)
	wg.Wait()
}

func TestForgetsLongSilentGateways(t *testing.T) {
	c := newClock()
	s := newTestServer(t, Config{}, c, 1)
	old := active("old", 10, 1000)
	old.RoomConns = map[string]int{"r": 5, "gone": 5}
	s.Observe(old)
	c.Add(31 * time.Second) // 10 × 3 s
	a := active("a", 10, 1000)
	a.RoomConns = map[string]int{"r": 5}
	for range 3 {
		s.Observe(a)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if len(s.order) != 1 || s.order[0].Beat.ID != "a" {
		t.Fatalf("kept %v", s.order)
	}
	if gws := s.view.All(c.Now()); len(gws) != 1 || gws[0].Beat.ID != "a" {
		t.Fatalf("the fleet view kept %v", gws)
	}
	if len(s.rooms) != 1 || len(s.rooms["r"]) != 1 || s.rooms["r"][0].g != s.order[0] {
		t.Fatalf("room index %v", s.rooms)
	}
}

func TestHandler(t *testing.T) {
	c := newClock()
	s := newTestServer(t, Config{}, c, 1)
	h := s.Handler()
	for _, tc := range []struct {
		query  string
		status int
		code   string
	}{
		{"room=a.b", 400, protocol.CodeInvalidRoom},
		{"room=", 400, protocol.CodeInvalidRoom},
		{"room=ok", 503, protocol.CodeUnavailable},
	} {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", "/v1/dispatch?"+tc.query, nil))
		var body struct {
			Error protocol.ErrorBody `json:"error"`
		}
		_ = json.Unmarshal(w.Body.Bytes(), &body)
		if w.Code != tc.status || body.Error.Code != tc.code {
			t.Fatalf("%s: got %d %q", tc.query, w.Code, body.Error.Code)
		}
	}
	s.Observe(active("g", 190, 1900))
	s.Observe(bus.Beat{ID: "d", URL: "ws://d/v1/ws", State: bus.StateDraining})
	for i := range 2 {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", "/v1/dispatch?room=ok", nil))
		var raw map[string]any
		if err := json.Unmarshal(w.Body.Bytes(), &raw); err != nil || w.Code != 200 {
			t.Fatalf("answer %d %s", w.Code, w.Body)
		}
		gws, _ := raw["gateways"].([]any)
		rc, _ := raw["reconnect"].(map[string]any)
		if len(raw) != 2 || len(gws) != 1 || len(rc) != 3 || rc["base_ms"] != 500.0 || rc["max_ms"] != 15000.0 || rc["jitter"] != 0.5 {
			t.Fatalf("answer %s", w.Body)
		}
		g, _ := gws[0].(map[string]any)
		// The second answer's load includes the first client.
		if want := 0.1 + float64(i)/1900; len(g) != 3 || g["id"] != "g" || g["url"] != "ws://g/v1/ws" || math.Abs(g["load"].(float64)-want) > 1e-12 {
			t.Fatalf("answer %d: %s", i, w.Body)
		}
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "/v1/gateways", nil))
	var list struct{ Gateways []bus.Beat }
	if err := json.Unmarshal(w.Body.Bytes(), &list); err != nil || len(list.Gateways) != 2 || list.Gateways[0].ID != "d" {
		t.Fatalf("gateways %d %s", w.Code, w.Body)
	}
}

// TestStartReadsBeats runs dispatch on a real NATS server.
func TestStartReadsBeats(t *testing.T) {
	e := testutil.StartNATS(t)
	nc, err := nats.Connect(testutil.NATSURL(t, e, bus.RoleAll, ""))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	s, err := New(Config{NC: nc, Logger: testutil.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, b := range []bus.Beat{active("g", 10, 100), {ID: "nourl"}} {
		data, _ := json.Marshal(b)
		if err := nc.Publish(bus.BeatSubject(b.ID), data); err != nil {
			t.Fatal(err)
		}
	}
	if err := nc.Publish(bus.BeatSubject("h"), []byte("{not json")); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, "beat received", func() bool { return len(s.Choose("r")) == 1 })
	if gws := s.Gateways(); len(gws) != 1 || gws[0].ID != "g" {
		t.Fatalf("gateways %+v", gws)
	}
}

func BenchmarkChoose(b *testing.B) {
	for _, n := range []int{16, 256} {
		b.Run(fmt.Sprintf("gateways=%d", n), func(b *testing.B) {
			s, _, beat := benchServer(b, n)
			beat()
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				// A beat round per second's worth of requests keeps the
				// fleet below the ceiling, as in production.
				if i%10000 == 9999 {
					b.StopTimer()
					beat()
					b.StartTimer()
				}
				if len(s.Choose("room-7-3")) != 3 {
					b.Fatal("no answer")
				}
			}
		})
		b.Run(fmt.Sprintf("gateways=%d/parallel", n), func(b *testing.B) {
			s, _, beat := benchServer(b, n)
			beat()
			var done atomic.Int64
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if len(s.Choose("room-7-3")) != 3 {
						b.Error("no answer")
						return
					}
					if done.Add(1)%10000 == 0 {
						beat()
					}
				}
			})
		})
	}
}

// TestForgedBeatsNeverOffered: beats that do not have the documented shape
// are refused and counted, whoever publishes them: a javascript: or
// foreign-host URL, an id that is not the subject's, markup in an id, a
// negative load; with a host list, a URL elsewhere.
func TestForgedBeatsNeverOffered(t *testing.T) {
	e := testutil.StartNATS(t)
	dnc, err := nats.Connect(testutil.NATSURL(t, e, bus.RoleDispatch, ""))
	if err != nil {
		t.Fatal(err)
	}
	defer dnc.Close()
	s, err := New(Config{NC: dnc, Logger: testutil.Logger(), GatewayHosts: []string{"*.gw.example.com", "127.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// An unbound gateway credential: it may publish any gateway's beat
	// subject, so only the shape checks stand between it and dispatch.
	gnc, err := nats.Connect(testutil.NATSURL(t, e, bus.RoleGateway, ""))
	if err != nil {
		t.Fatal(err)
	}
	defer gnc.Close()
	good := func(id, url string) bus.Beat {
		b := active(id, 1, 100)
		b.URL = url
		return b
	}
	forged := []struct {
		name    string
		subject string
		beat    bus.Beat
	}{
		{"javascript URL", bus.BeatSubject("js"), good("js", "javascript:alert(1)//v1/ws")},
		{"http URL", bus.BeatSubject("h1"), good("h1", "http://a.gw.example.com/v1/ws")},
		{"host not listed", bus.BeatSubject("evil"), good("evil", "wss://attacker.example.net/v1/ws")},
		{"user info", bus.BeatSubject("ui"), good("ui", "wss://x@a.gw.example.com/v1/ws")},
		{"query", bus.BeatSubject("q"), good("q", "wss://a.gw.example.com/v1/ws?token=steal")},
		{"wrong path", bus.BeatSubject("p"), good("p", "wss://a.gw.example.com/collect")},
		{"id is not the subject's", bus.BeatSubject("a1"), good("other", "wss://a.gw.example.com/v1/ws")},
		{"markup in the id", bus.BeatSubject("x"), good("<img src=x onerror=alert(1)>", "wss://a.gw.example.com/v1/ws")},
		{"negative load", bus.BeatSubject("neg"), func() bus.Beat { b := good("neg", "wss://a.gw.example.com/v1/ws"); b.Load = -5; return b }()},
		{"unknown state", bus.BeatSubject("st"), func() bus.Beat { b := good("st", "wss://a.gw.example.com/v1/ws"); b.State = "best"; return b }()},
	}
	for _, f := range forged {
		data, _ := json.Marshal(f.beat)
		if err := gnc.Publish(f.subject, data); err != nil {
			t.Fatal(err)
		}
	}
	ok := good("real", "wss://b.gw.example.com/v1/ws")
	data, _ := json.Marshal(ok)
	if err := gnc.Publish(bus.BeatSubject("real"), data); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, "the real beat", func() bool { return len(s.Gateways()) == 1 })
	testutil.Eventually(t, 5*time.Second, "every forged beat counted", func() bool { return s.view.Refused() == int64(len(forged)) })
	for range 50 {
		for _, c := range s.Choose("r") {
			if c.ID != "real" {
				t.Fatalf("offered %+v", c)
			}
		}
	}
}

// TestAnswersFromLastGoodViewDuringNATSTrouble: when dispatch's own NATS
// connection stops answering, the gateways that were fresh keep being
// offered (not 503) for at most MaxStaleView; with NATS healthy, a gateway
// whose beats stop is dropped as before.
func TestAnswersFromLastGoodViewDuringNATSTrouble(t *testing.T) {
	dir := t.TempDir()
	srv, err := bus.StartEmbedded(bus.EmbeddedConfig{Host: "127.0.0.1", Port: -1, DataDir: dir, Logger: testutil.Logger(), Keys: testutil.NATSKeys()})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	nc, err := bus.Connect(testutil.NATSURL(t, srv, bus.RoleAll, ""), "dispatch-test", testutil.Logger())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	s, err := New(Config{NC: nc, Logger: testutil.Logger(), StaleAfter: 400 * time.Millisecond, MaxStaleView: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	beat := func(id string) {
		data, _ := json.Marshal(active(id, 1, 1_000_000)) // room for every Choose below
		if err := nc.Publish(bus.BeatSubject(id), data); err != nil {
			t.Fatal(err)
		}
	}
	// Healthy NATS, beats stop: the gateway is dropped after StaleAfter.
	beat("quiet")
	testutil.Eventually(t, 5*time.Second, "the first beat", func() bool { return len(s.Choose("r")) == 1 })
	testutil.Eventually(t, 5*time.Second, "the silent gateway dropped", func() bool { return len(s.Choose("r")) == 0 })

	// g keeps beating until the outage; dispatch's last good ping comes
	// after "quiet" went stale, so only g belongs to the last good view.
	for range 6 {
		beat("g")
		time.Sleep(200 * time.Millisecond)
	}
	if c := s.Choose("r"); len(c) != 1 || c[0].ID != "g" {
		t.Fatalf("before the outage dispatch offers %+v", c)
	}
	srv.Close() // dispatch's NATS goes away: no beat can arrive now
	testutil.Eventually(t, 5*time.Second, "dispatch notices", s.StaleView)
	time.Sleep(time.Second) // beyond StaleAfter
	if c := s.Choose("r"); len(c) != 1 || c[0].ID != "g" {
		t.Fatalf("during the outage dispatch offers %+v, want the gateway it knew", c)
	}
	if gws := s.Gateways(); len(gws) != 1 {
		t.Fatalf("during the outage /v1/gateways lists %d gateways", len(gws))
	}
	// Not forever: after MaxStaleView the view is dropped.
	testutil.Eventually(t, 10*time.Second, "the stale view ends", func() bool { return len(s.Gateways()) == 0 })
	if c := s.Choose("r"); len(c) != 0 {
		t.Fatalf("after MaxStaleView dispatch offers %+v", c)
	}
	if s.StaleView() {
		t.Fatal("still reporting a stale view after MaxStaleView")
	}
}

// TestOutageIsNotTheGatewaysSilence: when dispatch's own NATS answers again
// after a short outage, the beats the gateways sent meanwhile are lost and
// their next ones are up to an interval away. Until each gateway has beaten
// again the outage does not count as its silence (dispatch once answered
// "no gateway is available" to a healthy fleet here, in the fault test);
// a gateway that stays silent is dropped one stale window after the outage,
// and then the clock is the real one again.
func TestOutageIsNotTheGatewaysSilence(t *testing.T) {
	c := newClock()
	s := newTestServer(t, Config{StaleAfter: 3 * time.Second, MaxStaleView: 15 * time.Second}, c, 0)
	sorted := func() []string { got := ids(s.Choose("r")); slices.Sort(got); return got }
	s.Observe(active("gw-a", 1, 100))
	s.Observe(active("gw-b", 1, 100))
	s.feed(true)
	c.Add(time.Second)
	s.feed(false) // dispatch's node hangs: beats stop arriving
	c.Add(4 * time.Second)
	if got := sorted(); !slices.Equal(got, []string{"gw-a", "gw-b"}) {
		t.Fatalf("during the outage dispatch offers %v", got)
	}
	s.feed(true) // back after 5 s: no beat since the one 5 s ago
	if got := sorted(); !slices.Equal(got, []string{"gw-a", "gw-b"}) {
		t.Fatalf("as the outage ends dispatch offers %v, want both gateways (their beats were lost with its connection)", got)
	}
	c.Add(500 * time.Millisecond)
	s.Observe(active("gw-a", 2, 100)) // gw-a beats again; gw-b stays silent
	c.Add(500 * time.Millisecond)
	s.feed(true)
	if got := sorted(); !slices.Equal(got, []string{"gw-a", "gw-b"}) {
		t.Fatalf("1 s after the outage dispatch offers %v, want both", got)
	}
	c.Add(2 * time.Second) // one stale window after the outage
	if got := sorted(); !slices.Equal(got, []string{"gw-a"}) {
		t.Fatalf("a stale window after the outage dispatch offers %v, want only the gateway that beat again", got)
	}
	s.feed(true) // nothing owed any more: the real clock again
	if s.excused.Load() != 0 {
		t.Fatal("the outage is still excused after every gateway beat again or went silent")
	}
	if got := sorted(); !slices.Equal(got, []string{"gw-a"}) {
		t.Fatalf("after the excuse ends dispatch offers %v", got)
	}

	// An outage longer than MaxStaleView is the fleet's: nothing excused.
	s.feed(false)
	c.Add(16 * time.Second)
	s.feed(true)
	if s.excused.Load() != 0 || len(s.Choose("r")) != 0 {
		t.Fatalf("after a 16 s outage: excused %v, offers %v", time.Duration(s.excused.Load()), ids(s.Choose("r")))
	}
}

// benchServer returns a server and the beats of n gateways each listing 16
// rooms, and a function that observes them all (not yet called).
func benchServer(b *testing.B, n int) (*Server, []bus.Beat, func()) {
	s, err := New(Config{NC: &nats.Conn{}})
	if err != nil {
		b.Fatal(err)
	}
	beats := make([]bus.Beat, n)
	for i := range beats {
		beats[i] = active(fmt.Sprintf("gw-%03d", i), 1000+i*50, 19000)
		beats[i].RoomConns = map[string]int{}
		for r := range 16 {
			beats[i].RoomConns[fmt.Sprintf("room-%d-%d", i, r)] = 1000 - r*50
		}
	}
	return s, beats, func() {
		for _, bt := range beats {
			s.Observe(bt)
		}
	}
}

// BenchmarkServeDispatch is the whole answer path of GET /v1/dispatch:
// query parsing, Choose, the door's count and the JSON answer.
func BenchmarkServeDispatch(b *testing.B) {
	for _, n := range []int{16, 256} {
		b.Run(fmt.Sprintf("gateways=%d/parallel", n), func(b *testing.B) {
			s, _, beat := benchServer(b, n)
			beat()
			h := s.Handler()
			var done atomic.Int64
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				req := httptest.NewRequest("GET", "/v1/dispatch?room=room-7-3", nil)
				for pb.Next() {
					w := httptest.NewRecorder()
					h.ServeHTTP(w, req)
					if w.Code != 200 {
						b.Errorf("answer %d %s", w.Code, w.Body)
						return
					}
					if done.Add(1)%10000 == 0 {
						beat()
					}
				}
			})
		})
	}
}

// BenchmarkObserve is the cost of one beat: what dispatch does per gateway
// per second.
func BenchmarkObserve(b *testing.B) {
	for _, n := range []int{16, 256} {
		b.Run(fmt.Sprintf("gateways=%d", n), func(b *testing.B) {
			s, beats, _ := benchServer(b, n)
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				s.Observe(beats[i%n])
			}
		})
	}
}
