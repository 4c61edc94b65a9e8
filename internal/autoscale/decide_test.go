package autoscale

import (
	"fmt"
	"math"
	"strconv"
	"testing"
	"time"

	"github.com/liveroom/liveroom/internal/bus"
)

var t0 = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)

// policy3000 is the policy of the ramp test: 3,000 connections per gateway
// at 70 %: 2,100 planned per gateway.
func policy3000() Policy {
	return Policy{Min: 1, Max: 4, Capacity: Capacity{Conns: 3000, Target: 0.7}}.WithDefaults()
}

func gw(id string, conns int, beatAgo time.Duration) GatewayLoad {
	return GatewayLoad{ID: id, State: bus.StateActive, Conns: conns, Load: float64(conns) / 3000,
		Started: t0.Add(-time.Hour), LastBeat: t0.Add(-beatAgo), Interval: time.Second}
}

func draining(g GatewayLoad) GatewayLoad { g.State = bus.StateDraining; return g }

func members(ids ...string) []Member {
	var out []Member
	for _, id := range ids {
		out = append(out, Member{ID: id, Since: t0.Add(-time.Hour)})
	}
	return out
}

// settled is a State whose history is older than the stabilisation window
// with every desired count at most d.
func settled(p Policy, d int) State {
	var st State
	st.Since = t0.Add(-time.Hour)
	for i := 60; i > 0; i-- {
		st.Desired = append(st.Desired, Sample{t0.Add(-time.Duration(i) * 5 * time.Second), float64(d)})
	}
	return st
}

func TestDecideTable(t *testing.T) {
	p := policy3000()
	cpuPolicy := p
	cpuPolicy.Capacity = Capacity{Conns: 3000, CPU: 2, Target: 0.7}
	cases := []struct {
		name   string
		st     State
		in     Inputs
		action Action
		reason string
		cur    int
		want   int
		add    int
		remove string
		check  func(t *testing.T, d Decision)
	}{
		{
			name:   "empty fleet starts the minimum",
			in:     Inputs{Policy: p},
			action: ActionScaleOut, reason: ReasonMin, cur: 0, want: 1, add: 1,
		},
		{
			name: "steady load holds",
			in: Inputs{Policy: p, Gateways: []GatewayLoad{gw("a", 1500, 0), gw("b", 1500, 0)},
				Members: members("a", "b")},
			action: ActionNone, reason: ReasonSteady, cur: 2, want: 2,
		},
		{
			name:   "demand above capacity × target scales out by the difference at once",
			in:     Inputs{Policy: p, Gateways: []GatewayLoad{gw("a", 2900, 0), gw("b", 2900, 0)}, Members: members("a", "b")},
			action: ActionScaleOut, reason: DimConns, cur: 2, want: 3, add: 1,
		},
		{
			name: "exactly at target needs no more",
			in:   Inputs{Policy: p, Gateways: []GatewayLoad{gw("a", 2100, 0), gw("b", 2100, 0)}, Members: members("a", "b")},
			// 4,200 = 2 × 2,100: two gateways, not three.
			action: ActionNone, reason: ReasonSteady, cur: 2, want: 2,
		},
		{
			name: "the busiest dimension wins: cpu",
			in: Inputs{Policy: cpuPolicy, Gateways: []GatewayLoad{
				{ID: "a", State: bus.StateActive, Conns: 500, CPU: 1.9, LastBeat: t0},
				{ID: "b", State: bus.StateActive, Conns: 500, CPU: 1.9, LastBeat: t0},
			}, Members: members("a", "b")},
			// 3.8 cores ÷ (2 × 0.7) = 2.7 → 3
			action: ActionScaleOut, reason: DimCPU, cur: 2, want: 3, add: 1,
			check: func(t *testing.T, d Decision) {
				if d.Figures.Need[DimCPU] != 3 || d.Figures.Need[DimConns] != 1 {
					t.Errorf("needs %v, want cpu 3, conns 1", d.Figures.Need)
				}
			},
		},
		{
			name:   "max caps the count",
			in:     Inputs{Policy: p, Gateways: []GatewayLoad{gw("a", 3000, 0), gw("b", 3000, 0), gw("c", 3000, 0), gw("d", 3000, 0)}, Members: members("a", "b", "c", "d")},
			action: ActionNone, reason: ReasonAtMax, cur: 4, want: 4,
		},
		{
			name: "a gateway started and not beating yet is capacity",
			in: Inputs{Policy: p, Gateways: []GatewayLoad{gw("a", 3000, 0)},
				Members: append(members("a"), Member{ID: "b", Since: t0.Add(-5 * time.Second)})},
			action: ActionNone, reason: ReasonSteady, cur: 2, want: 2,
			check: func(t *testing.T, d Decision) {
				if d.Figures.Starting != 1 {
					t.Errorf("starting %d, want 1", d.Figures.Starting)
				}
			},
		},
		{
			name: "a gateway that never beat stops counting after the start timeout",
			in: Inputs{Policy: p, Gateways: []GatewayLoad{gw("a", 3000, 0)},
				Members: append(members("a"), Member{ID: "b", Since: t0.Add(-2 * time.Minute)})},
			action: ActionScaleOut, reason: DimConns, cur: 1, want: 2, add: 1,
		},
		{
			name: "a gateway that stops beating is not capacity, its viewers still are demand",
			in: Inputs{Policy: p, Gateways: []GatewayLoad{gw("a", 1800, 0), gw("b", 1800, 0), gw("c", 1800, 4*time.Second)},
				Members: members("a", "b", "c")},
			action: ActionScaleOut, reason: DimConns, cur: 2, want: 3, add: 1,
			check: func(t *testing.T, d Decision) {
				if d.Figures.Silent != 1 || d.Figures.Active != 2 || d.Figures.Demand.Conns != 5400 {
					t.Errorf("figures %+v, want 1 silent, 2 active, 5400 conns", d.Figures)
				}
			},
		},
		{
			name: "a gateway silent longer than the grace is forgotten as demand",
			in: Inputs{Policy: p, Gateways: []GatewayLoad{gw("a", 1800, 0), gw("b", 1800, 0), gw("c", 1800, 30*time.Second)},
				Members: members("a", "b")},
			action: ActionNone, reason: ReasonSteady, cur: 2, want: 2,
		},
		{
			name: "a draining gateway is demand, not capacity",
			in: Inputs{Policy: p, Gateways: []GatewayLoad{gw("a", 1800, 0), gw("b", 1800, 0), draining(gw("c", 1800, 0))},
				Members: members("a", "b", "c")},
			action: ActionScaleOut, reason: DimConns, cur: 2, want: 3, add: 1,
		},
		{
			name: "no scale-in before the stabilisation window has passed",
			st:   State{Since: t0.Add(-time.Minute)},
			in: Inputs{Policy: p, Gateways: []GatewayLoad{gw("a", 100, 0), gw("b", 100, 0), gw("c", 100, 0)},
				Members: members("a", "b", "c")},
			action: ActionNone, reason: ReasonStabilizing, cur: 3, want: 1,
		},
		{
			name: "no scale-in while a higher count was desired within the window",
			st: func() State {
				st := settled(p, 1)
				st.Desired[len(st.Desired)-3].V = 3
				return st
			}(),
			in: Inputs{Policy: p, Gateways: []GatewayLoad{gw("a", 100, 0), gw("b", 100, 0), gw("c", 100, 0)},
				Members: members("a", "b", "c")},
			action: ActionNone, reason: ReasonStabilizing, cur: 3, want: 1,
		},
		{
			name: "after the window: one gateway, the least loaded",
			st:   settled(p, 1),
			in: Inputs{Policy: p, Gateways: []GatewayLoad{gw("a", 300, 0), gw("b", 120, 0), gw("c", 200, 0)},
				Members: members("a", "b", "c")},
			action: ActionScaleIn, reason: ReasonStabilized, cur: 3, want: 1, remove: "b",
		},
		{
			name: "one at a time: wait while a scale-in is under way",
			st:   settled(p, 1),
			in: Inputs{Policy: p, Gateways: []GatewayLoad{gw("a", 300, 0), gw("c", 200, 0), draining(gw("b", 20, 0))},
				Members: members("a", "b", "c"), Removing: "b"},
			action: ActionNone, reason: ReasonScaleInUnderWay, cur: 2, want: 1,
		},
		{
			name: "no scale-in while gateways are starting",
			st:   settled(p, 1),
			in: Inputs{Policy: p, Gateways: []GatewayLoad{gw("a", 300, 0), gw("c", 200, 0)},
				Members: append(members("a", "c"), Member{Since: t0.Add(-time.Second)})},
			action: ActionNone, reason: ReasonStarting, cur: 3, want: 1,
		},
		{
			name: "only gateways the actuator runs are taken away",
			st:   settled(p, 1),
			in: Inputs{Policy: p, Gateways: []GatewayLoad{gw("mine", 300, 0), gw("theirs", 0, 0)},
				Members: members("mine")},
			action: ActionScaleIn, reason: ReasonStabilized, cur: 2, want: 1, remove: "mine",
		},
		{
			name: "no candidate: nothing the actuator runs",
			st:   settled(p, 1),
			in:   Inputs{Policy: p, Gateways: []GatewayLoad{gw("x", 300, 0), gw("y", 0, 0)}},
			// With no members, the empty fleet of the actuator cannot shrink.
			action: ActionNone, reason: ReasonNoCandidate, cur: 2, want: 1,
		},
		{
			name: "dry-run: every beating gateway is a candidate",
			st:   settled(p, 1),
			in:   Inputs{Policy: p, Gateways: []GatewayLoad{gw("x", 300, 0), gw("y", 10, 0)}, AllManaged: true},
			// Dry-run members are empty; their count must not cap scale-out
			// or block scale-in.
			action: ActionScaleIn, reason: ReasonStabilized, cur: 2, want: 1, remove: "y",
		},
		{
			name: "above max: scale in without waiting for the window",
			st:   State{Since: t0.Add(-time.Second)},
			in: Inputs{Policy: p, Gateways: []GatewayLoad{gw("a", 3000, 0), gw("b", 3000, 0), gw("c", 3000, 0), gw("d", 3000, 0), gw("e", 2000, 0)},
				Members: members("a", "b", "c", "d", "e")},
			action: ActionScaleIn, reason: ReasonAboveMax, cur: 5, want: 4, remove: "e",
		},
		{
			name: "never more members than max, even when some do not beat",
			in: Inputs{Policy: p, Gateways: []GatewayLoad{gw("a", 3000, 0), gw("b", 3000, 0)},
				Members: append(members("a", "b"), Member{ID: "frozen1", Since: t0.Add(-time.Hour)}, Member{ID: "frozen2", Since: t0.Add(-time.Hour)})},
			action: ActionNone, reason: ReasonAtMax, cur: 2, want: 3,
		},
		{
			name: "scale-out limited to the room left below max",
			in: Inputs{Policy: p, Gateways: []GatewayLoad{gw("a", 3000, 0), gw("b", 3000, 0), gw("c", 3000, 0)},
				Members: append(members("a", "b", "c"), Member{ID: "frozen", Since: t0.Add(-time.Hour)})},
			action: ActionNone, reason: ReasonAtMax, cur: 3, want: 4,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := fmt.Sprint(tc.st)
			d := Decide(tc.st, tc.in, t0)
			if d.Action != tc.action || d.Reason != tc.reason || d.Current != tc.cur || d.Desired != tc.want || d.Add != tc.add || d.Remove != tc.remove {
				t.Errorf("got %s/%s current %d desired %d add %d remove %q; want %s/%s current %d desired %d add %d remove %q\nfigures %+v",
					d.Action, d.Reason, d.Current, d.Desired, d.Add, d.Remove, tc.action, tc.reason, tc.cur, tc.want, tc.add, tc.remove, d.Figures)
			}
			if after := fmt.Sprint(tc.st); after != before {
				t.Errorf("Decide modified the state it was given")
			}
			if tc.check != nil {
				tc.check(t, d)
			}
		})
	}
}

// sim drives Decide tick by tick against a simulated fleet: a scale-out
// starts gateways that beat readyAfter later; dispatch spreads the total
// connections evenly over active gateways; a scale-in drains the chosen
// gateway (its viewers move at once) and removes it drainTicks later.
type sim struct {
	t          *testing.T
	p          Policy
	now        time.Time
	st         State
	readyAfter time.Duration
	drainTicks int
	gws        []*simGW
	n          int
	removing   string
	removeAt   time.Time
	log        []Decision
}

type simGW struct {
	id      string
	since   time.Time
	ready   time.Time
	state   string
	conns   int
	silent  bool // stopped beating (and frozen: still a member)
	lastBet time.Time
}

func newSim(t *testing.T, p Policy, gateways int) *sim {
	s := &sim{t: t, p: p.WithDefaults(), now: t0, readyAfter: 2 * time.Second, drainTicks: 5}
	for range gateways {
		s.start(t0.Add(-time.Hour))
	}
	return s
}

func (s *sim) start(at time.Time) *simGW {
	s.n++
	g := &simGW{id: "g" + strconv.Itoa(s.n), since: at, ready: at.Add(s.readyAfter), state: bus.StateActive}
	s.gws = append(s.gws, g)
	return g
}

// step advances one second with total viewers on the fleet.
func (s *sim) step(total int) Decision {
	s.t.Helper()
	return s.stepWith(total, Inputs{})
}

// stepWith is step with the measured ready time and the door's figures of
// extra.
func (s *sim) stepWith(total int, extra Inputs) Decision {
	s.t.Helper()
	s.now = s.now.Add(time.Second)
	if s.removing != "" && !s.now.Before(s.removeAt) {
		for i, g := range s.gws {
			if g.id == s.removing {
				s.gws = append(s.gws[:i], s.gws[i+1:]...)
				break
			}
		}
		s.removing = ""
	}
	var active []*simGW
	for _, g := range s.gws {
		g.conns = 0
		if !g.silent && g.state == bus.StateActive && !s.now.Before(g.ready) {
			active = append(active, g)
		}
	}
	for i, g := range active {
		g.conns = total / len(active)
		if i < total%len(active) {
			g.conns++
		}
	}
	in := Inputs{Policy: s.p, Removing: s.removing, ReadyTime: extra.ReadyTime, Door: extra.Door}
	for _, g := range s.gws {
		in.Members = append(in.Members, Member{ID: g.id, Since: g.since})
		if !g.silent && !s.now.Before(g.ready) {
			g.lastBet = s.now
		}
		if !g.lastBet.IsZero() {
			in.Gateways = append(in.Gateways, GatewayLoad{ID: g.id, State: g.state, Conns: g.conns,
				Load: float64(g.conns) / float64(s.p.Capacity.Conns), LastBeat: g.lastBet, Interval: time.Second})
		}
	}
	d := Decide(s.st, in, s.now)
	s.st = d.Next
	switch d.Action {
	case ActionScaleOut:
		for range d.Add {
			s.start(s.now)
		}
	case ActionScaleIn:
		for _, g := range s.gws {
			if g.id == d.Remove {
				g.state = bus.StateDraining
			}
		}
		s.removing, s.removeAt = d.Remove, s.now.Add(time.Duration(s.drainTicks)*time.Second)
	}
	s.log = append(s.log, d)
	return d
}

func (s *sim) active() int {
	n := 0
	for _, g := range s.gws {
		if !g.silent && g.state == bus.StateActive && !s.now.Before(g.ready) {
			n++
		}
	}
	return n
}

func (s *sim) count(a Action) int {
	n := 0
	for _, d := range s.log {
		if d.Action == a {
			n++
		}
	}
	return n
}

func TestDecideScenarios(t *testing.T) {
	p := policy3000()
	t.Run("steady load: no action for ten minutes", func(t *testing.T) {
		s := newSim(t, p, 2)
		for range 600 {
			s.step(3500)
		}
		if n := s.count(ActionScaleOut) + s.count(ActionScaleIn); n != 0 {
			t.Fatalf("%d actions under steady load, want 0", n)
		}
	})

	t.Run("ramp 0 to 9000 in 30 s: three gateways ready before any holds 3000", func(t *testing.T) {
		s := newSim(t, p, 1)
		for range 70 {
			s.step(0)
		}
		reached3 := -1
		for i := 1; i <= 30; i++ {
			total := 300 * i
			s.step(total)
			if s.active() >= 3 && reached3 < 0 {
				reached3 = total
			}
			for _, g := range s.gws {
				if g.conns > 3000 {
					t.Fatalf("second %d: gateway %s holds %d > 3000 with %d active", i, g.id, g.conns, s.active())
				}
			}
		}
		for range 30 {
			s.step(9000)
		}
		if s.active() != 4 {
			t.Errorf("fleet %d at 9,000 viewers, want max 4", s.active())
		}
		if reached3 < 0 || reached3 > 6000 {
			t.Errorf("three gateways ready at %d viewers, want ≤ 6000", reached3)
		}
		if n := s.count(ActionScaleIn); n != 0 {
			t.Errorf("%d scale-ins during the ramp", n)
		}
	})

	t.Run("look-ahead: the join rate times the ready time is added", func(t *testing.T) {
		s := newSim(t, p, 4)
		var d Decision
		for i := range 20 {
			d = s.step(100 * i)
		}
		// Over the 10 s ready time and the 1 s decision interval.
		if math.Abs(d.Figures.JoinRate-100) > 0.01 || math.Abs(d.Figures.Lookahead-1100) > 0.1 {
			t.Fatalf("join rate %.2f lookahead %.1f, want 100/s and 1100", d.Figures.JoinRate, d.Figures.Lookahead)
		}
		// 1,900 viewers need one gateway; with 1,100 more coming, two.
		if d.Figures.Need[DimConns] != 2 {
			t.Errorf("need %d, want 2", d.Figures.Need[DimConns])
		}
		// A look-ahead alone triggers a scale-out, with that reason.
		s2 := newSim(t, p, 1)
		for range 70 {
			s2.step(0)
		}
		var first Decision
		for i := 1; i <= 20 && first.Action != ActionScaleOut; i++ {
			first = s2.step(150 * i)
		}
		if first.Action != ActionScaleOut || first.Reason != ReasonLookahead || first.Figures.Demand.Conns > 2100 {
			t.Errorf("first scale-out %s/%s at %v viewers, want lookahead below 2,100", first.Action, first.Reason, first.Figures.Demand.Conns)
		}
	})

	t.Run("spike: 1000 to 8000 in one beat scales out to max at once", func(t *testing.T) {
		s := newSim(t, p, 1)
		for range 30 {
			s.step(1000)
		}
		d := s.step(8000)
		if d.Action != ActionScaleOut || d.Add != 3 || d.Desired != 4 {
			t.Fatalf("spike: %s add %d desired %d, want scale_out add 3 desired 4", d.Action, d.Add, d.Desired)
		}
		s.step(8000)
		if d := s.step(8000); d.Action != ActionNone {
			t.Errorf("after the spike, while gateways start: %s/%s, want none", d.Action, d.Reason)
		}
	})

	t.Run("flapping load: scale-out on the first rise only, no scale-in, for ten minutes", func(t *testing.T) {
		s := newSim(t, p, 1)
		for i := range 600 {
			total := 1000
			if (i/20)%2 == 1 {
				total = 5000
			}
			s.step(total)
		}
		// Scale-outs only on the first rise (the demand at once, the
		// look-ahead when the smoothed join rate sees it), then nothing.
		for _, d := range s.log {
			if d.Action == ActionScaleIn || (d.Action == ActionScaleOut && d.At.Sub(t0) > 40*time.Second) {
				t.Fatalf("flapping load: %s/%s at %v", d.Action, d.Reason, d.At.Sub(t0))
			}
		}
		if s.count(ActionScaleOut) == 0 {
			t.Fatal("flapping load: no scale-out")
		}
		// The first rise of 4,000 within a second looks like the start of a
		// storm: the look-ahead takes the fleet to max, once.
		high := s.active()
		if high < 3 {
			t.Fatalf("fleet of %d for 5,000 viewers", high)
		}
		// Then the load stays low: one at a time, each only after fewer
		// gateways were enough for the whole window, down to 1.
		var ins []Decision
		for range 900 {
			if d := s.step(1000); d.Action == ActionScaleIn {
				ins = append(ins, d)
			}
		}
		if len(ins) != high-1 || s.active() != 1 {
			t.Fatalf("after the load fell: %d scale-ins, %d active; want %d and 1", len(ins), s.active(), high-1)
		}
		for i, in := range ins {
			for _, d := range s.log {
				if d.At.After(in.At.Add(-p.Stabilization)) && d.At.Before(in.At) && d.Desired >= in.Current {
					t.Errorf("scale-in at %v from %d although %d was desired at %v", in.At.Sub(t0), in.Current, d.Desired, d.At.Sub(t0))
					break
				}
			}
			if i > 0 && in.At.Sub(ins[i-1].At) < time.Duration(s.drainTicks)*time.Second {
				t.Errorf("scale-in %d came %v after the one before, before that one was removed", i, in.At.Sub(ins[i-1].At))
			}
		}
	})

	t.Run("a gateway that stops beating is replaced", func(t *testing.T) {
		s := newSim(t, p, 3)
		for range 10 {
			s.step(5400)
		}
		s.gws[1].silent = true
		var out Decision
		for range 5 {
			if d := s.step(5400); d.Action == ActionScaleOut {
				out = d
			}
		}
		if out.Add != 1 || out.Figures.Silent != 1 {
			t.Fatalf("after a gateway went silent: %+v, want one scale-out with one silent", out)
		}
		for range 20 {
			s.step(5400)
		}
		if s.active() != 3 {
			t.Errorf("active %d, want 3", s.active())
		}
	})

	t.Run("min and max hold whatever the load", func(t *testing.T) {
		q := p
		q.Min, q.Max = 2, 3
		s := newSim(t, q, 0)
		for range 5 {
			s.step(0)
		}
		if s.active() != 2 {
			t.Errorf("no load: %d active, want min 2", s.active())
		}
		for range 20 {
			s.step(50000)
		}
		if s.active() != 3 {
			t.Errorf("huge load: %d active, want max 3", s.active())
		}
		for range 700 {
			s.step(0)
		}
		if s.active() != 2 {
			t.Errorf("load gone: %d active, want min 2", s.active())
		}
	})
}

func TestJoinRate(t *testing.T) {
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	cases := []struct {
		name    string
		samples []Sample
		want    float64
	}{
		{"none", nil, 0},
		{"too short a span", []Sample{{at(0), 0}, {at(1), 500}}, 0},
		{"linear", []Sample{{at(0), 0}, {at(5), 500}, {at(10), 1000}}, 100},
		{"falling is zero", []Sample{{at(0), 1000}, {at(10), 0}}, 0},
		// The rise over the minute outweighs the latest 10 s.
		{"the minute", []Sample{{at(0), 0}, {at(10), 100}, {at(20), 2100}, {at(30), 2200}}, 2200.0 / 30},
		// A storm that just started outweighs the quiet minute.
		{"the latest span", []Sample{{at(0), 0}, {at(40), 0}, {at(50), 0}, {at(60), 1000}}, 100},
		{"zero once the count falls", []Sample{{at(0), 0}, {at(10), 100}, {at(20), 2100}, {at(30), 0}}, 0},
		// Viewers moving off a drained gateway are counted twice for a
		// beat or two: not joins.
		{"a move is no join", []Sample{{at(0), 1500}, {at(1), 1500}, {at(2), 1700}, {at(3), 1690}, {at(4), 1500}, {at(5), 1500}, {at(6), 1500}}, 0},
		{"a crash is no join", []Sample{{at(0), 9000}, {at(1), 11000}, {at(2), 12000}, {at(3), 12000}, {at(4), 9000}, {at(5), 9000}, {at(9), 9000}}, 0},
		{"a storm is, seen 3 s later", func() []Sample {
			var s []Sample
			for i := range 16 {
				s = append(s, Sample{at(float64(i)), 300 * float64(max(0, i-2))})
			}
			return s
		}(), 300},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := joinRate(tc.samples, 10*time.Second); math.Abs(got-tc.want) > 1e-9 {
				t.Errorf("joinRate = %v, want %v", got, tc.want)
			}
		})
	}
}
