package autoscale

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/liveroom/liveroom/internal/announce"
	"github.com/liveroom/liveroom/internal/bus"
	"github.com/liveroom/liveroom/internal/fleet"
	"github.com/liveroom/liveroom/internal/testutil"
)

func door(id string, joins, moves, retries int) bus.DoorReport {
	return bus.DoorReport{ID: id, TS: t0.UnixMilli(), IntervalMS: 250, Joins: joins, Admitted: joins, Moves: moves, Retries: retries}
}

// TestDoorRate: the door sees a storm within its first second, counts no
// viewer moving between gateways nor any client asking again, sums the
// replicas, and lets the rate fall soon after the storm.
func TestDoorRate(t *testing.T) {
	var d Door
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	// Quiet: moves (a drain) and retries only.
	for i := range 20 {
		d.Observe(door("d1", 0, 50, 20), at(float64(i)*0.25))
	}
	if f := d.Figures(at(5)); f.Rate != 0 {
		t.Fatalf("moves and retries read as %v joins/s", f.Rate)
	}
	// A storm of 120 joins/s starts at 10 s, split over two replicas that
	// report every 250 ms.
	for i := range 4 {
		s := 10 + 0.25*float64(i+1)
		d.Observe(door("d1", 20, 0, 0), at(s))
		d.Observe(door("d2", 10, 0, 0), at(s))
	}
	if f := d.Figures(at(11)); f.Rate < 100 {
		t.Fatalf("one second into a 120/s storm the door reads %.1f/s", f.Rate)
	}
	// The beats see none of it yet: their rate needs a rise over 2 s after
	// a 3 s rolling minimum.
	if r := joinRate([]Sample{{at(9), 0}, {at(10), 0}, {at(11), 120}}, 10*time.Second); r != 0 {
		t.Fatalf("beats read %v/s one second in; the door is the only early signal", r)
	}
	// The storm goes on for 4 s more, then stops.
	for i := range 16 {
		s := 11 + 0.25*float64(i+1)
		d.Observe(door("d1", 30, 0, 0), at(s))
	}
	if f := d.Figures(at(15)); math.Abs(f.Rate-120) > 1 {
		t.Fatalf("during the storm %.1f/s, want 120", f.Rate)
	}
	if f := d.Figures(at(16)); f.Rate > 100 {
		t.Fatalf("one second after the storm %.1f/s: the last 5 s average, at most 96", f.Rate)
	}
	if f := d.Figures(at(21)); f.Rate != 0 {
		t.Fatalf("six seconds after the storm %.1f/s, want 0", f.Rate)
	}
	// Reports that do not have the documented shape are dropped.
	d.Observe(bus.DoorReport{ID: "d1", TS: 1, IntervalMS: 250, Joins: 5, Admitted: 1}, at(30))
	d.Observe(bus.DoorReport{ID: "bad id", TS: 1, IntervalMS: 250, Joins: 5, Admitted: 5}, at(30))
	d.Observe(bus.DoorReport{ID: "d1", TS: 1, IntervalMS: 250, Joins: -5, Admitted: -5}, at(30))
	if f := d.Figures(at(30.5)); f.Rate != 0 {
		t.Fatalf("malformed reports counted: %.1f/s", f.Rate)
	}
}

// flashPolicy is the outside ramp's: 400 connections per gateway at 70 %
// (280 planned), one spare.
func flashPolicy() Policy {
	return Policy{Min: 1, Max: 12, Spare: 1, Capacity: Capacity{Conns: 400, Target: 0.7}}.WithDefaults()
}

// flashSim is sim with dispatch's door: the joins of each second are
// reported as the door's rate, and the measured ready time is passed in.
type flashSim struct {
	*sim
	prev int
}

func (f *flashSim) step(total int) Decision {
	f.t.Helper()
	rate := float64(max(0, total-f.prev))
	f.prev = total
	return f.stepWith(total, Inputs{ReadyTime: f.readyAfter, Door: DoorFigures{Rate: rate}})
}

// TestDecisionSizes: a ramp from 0 to 3× one gateway's capacity in 10 s is
// seen at the door from its first second and met with no gateway above the
// dispatch ceiling, and the fleet at the peak is at most one gateway above
// ceil(peak ÷ (capacity × target)) plus the spare; each scale-out says why.
func TestDecisionSizes(t *testing.T) {
	for _, ready := range []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second} {
		t.Run(ready.String(), func(t *testing.T) {
			p := flashPolicy()
			f := &flashSim{sim: newSim(t, p, 1)}
			f.readyAfter = ready
			for range 10 {
				f.step(0)
			}
			if n := f.active(); n != 2 {
				t.Fatalf("idle fleet %d, want min 1 + spare 1", n)
			}
			peak, fleet := 1200, 0
			for i := 1; i <= 10; i++ {
				d := f.step(120 * i)
				if i == 1 && (d.Action != ActionScaleOut || d.Figures.DoorRate != 120) {
					t.Errorf("first second of the ramp: %s/%s door %.0f/s, want a scale-out on the door's 120/s", d.Action, d.Reason, d.Figures.DoorRate)
				}
				for _, g := range f.gws {
					if float64(g.conns) > 0.9*400 {
						t.Errorf("second %d: gateway %s holds %d, above the 90 %% ceiling, with %d active", i, g.id, g.conns, f.active())
					}
				}
				if d.Action == ActionScaleOut && !strings.Contains(d.Why, "add ") {
					t.Errorf("scale-out without a why: %q", d.Why)
				}
			}
			for range 20 {
				f.step(peak)
				fleet = max(fleet, len(f.gws))
			}
			need := int(math.Ceil(float64(peak) / (400 * 0.7)))
			if fleet > need+1+p.Spare {
				t.Errorf("fleet %d at the peak, want at most %d (need %d + 1 + spare %d)", fleet, need+1+p.Spare, need, p.Spare)
			}
			if n := f.active(); n < need+p.Spare {
				t.Errorf("%d active after the ramp, want at least need %d + spare %d", n, need, p.Spare)
			}
			for _, d := range f.log {
				if d.Action == ActionScaleOut {
					t.Logf("%s +%d: %s", d.Reason, d.Add, d.Why)
				}
			}
		})
	}
}

func TestSpare(t *testing.T) {
	p := flashPolicy()
	d := Decide(State{}, Inputs{Policy: p}, t0)
	if d.Desired != 2 || d.Action != ActionScaleOut || d.Reason != ReasonMin || d.Add != 2 || !strings.Contains(d.Why, "min 1; + 1 spare = 2") {
		t.Errorf("empty fleet: %s/%s desired %d add %d why %q, want min 1 and the spare", d.Action, d.Reason, d.Desired, d.Add, d.Why)
	}
	d = Decide(State{}, Inputs{Policy: p, Gateways: []GatewayLoad{gw("a", 0, 0)}, Members: members("a")}, t0)
	if d.Desired != 2 || d.Action != ActionScaleOut || d.Reason != ReasonSpare || d.Add != 1 || !strings.Contains(d.Why, "+ 1 spare = 2") {
		t.Errorf("idle with one: %s/%s desired %d add %d why %q, want the spare added", d.Action, d.Reason, d.Desired, d.Add, d.Why)
	}
	d = Decide(State{}, Inputs{Policy: p, Gateways: []GatewayLoad{gw("a", 10, 0), gw("b", 0, 0)}, Members: members("a", "b")}, t0)
	if d.Desired != 2 || d.Action != ActionNone {
		t.Errorf("first viewers on two: %s desired %d, want to hold 2", d.Action, d.Desired)
	}
	// 600 viewers need 3 at 280; the spare makes 4.
	d = Decide(State{}, Inputs{Policy: p, Gateways: []GatewayLoad{gw("a", 300, 0), gw("b", 300, 0)}, Members: members("a", "b")}, t0)
	if d.Desired != 4 || d.Reason != DimConns || d.Add != 2 {
		t.Errorf("600 viewers: %s desired %d add %d, want conns, 4, 2", d.Reason, d.Desired, d.Add)
	}
	// Max still bounds it.
	p.Max = 3
	if d = Decide(State{}, Inputs{Policy: p, Gateways: []GatewayLoad{gw("a", 300, 0), gw("b", 300, 0)}, Members: members("a", "b")}, t0); d.Desired != 3 {
		t.Errorf("max 3: desired %d", d.Desired)
	}
}

func TestHorizonUsesTheMeasuredReadyTime(t *testing.T) {
	p := flashPolicy()
	in := Inputs{Policy: p, Gateways: []GatewayLoad{gw("a", 100, 0)}, Members: members("a"), Door: DoorFigures{Rate: 100}}
	if d := Decide(State{}, in, t0); d.Figures.Horizon != 11 || d.Figures.Lookahead != 1100 {
		t.Errorf("not measured: horizon %v lookahead %v, want 10 s + 1 s and 1100", d.Figures.Horizon, d.Figures.Lookahead)
	}
	in.ReadyTime, in.Tick = 1500*time.Millisecond, 500*time.Millisecond
	d := Decide(State{}, in, t0)
	if d.Figures.Horizon != 2 || d.Figures.Lookahead != 200 || d.Figures.ReadyTime != 1.5 {
		t.Errorf("measured 1.5 s, ticking every 0.5 s: horizon %v lookahead %v", d.Figures.Horizon, d.Figures.Lookahead)
	}
	// 100 + 200 = 300 needs 2 at 280, + 1 spare.
	if d.Desired != 3 || d.Reason != ReasonLookahead || !strings.Contains(d.Why, "look-ahead 200") {
		t.Errorf("desired %d reason %s why %q", d.Desired, d.Reason, d.Why)
	}
}

func TestAnnouncements(t *testing.T) {
	p := flashPolicy()
	show := announce.Announcement{ID: "an-show", Room: "star", Viewers: 2000, At: t0.Add(time.Minute), Until: t0.Add(time.Hour)}
	// fleet is n gateways beating at now with conns each, all in the
	// show's room.
	fleet := func(now time.Time, n, conns int) Inputs {
		in := Inputs{Policy: p, ReadyTime: time.Second, Announcements: []announce.Announcement{show}}
		for i := range n {
			id := string(rune('a' + i))
			g := gw(id, conns, 0)
			g.LastBeat, g.Rooms = now, map[string]int{"star": conns}
			in.Gateways = append(in.Gateways, g)
			in.Members = append(in.Members, Member{ID: id, Since: t0.Add(-time.Hour)})
		}
		return in
	}
	// Lead: 2 × 1 s ready + 1 s interval + 10 s = 13 s before the show.
	at := t0.Add(time.Minute - 14*time.Second)
	if d := Decide(State{}, fleet(at, 2, 0), at); d.Action != ActionNone || d.Figures.Announced != 0 {
		t.Errorf("14 s before: %s, announced %v; want nothing yet", d.Action, d.Figures.Announced)
	}
	at = t0.Add(time.Minute - 12*time.Second)
	d := Decide(State{}, fleet(at, 2, 0), at)
	// 2,000 ÷ 280 = 8, + 1 spare.
	if d.Action != ActionScaleOut || d.Reason != ReasonAnnounced || d.Desired != 9 || d.Add != 7 || d.Figures.Announced != 2000 ||
		!strings.Contains(d.Why, "an-show") || len(d.Figures.Announcements) != 1 {
		t.Errorf("12 s before: %s/%s desired %d add %d announced %v why %q", d.Action, d.Reason, d.Desired, d.Add, d.Figures.Announced, d.Why)
	}
	// Scale-in holds while the announcement is in force, even after the
	// stabilisation window.
	at = t0.Add(30 * time.Minute)
	if d := Decide(settled(p, 1), fleet(at, 9, 0), at); d.Action != ActionNone || d.Desired != 9 {
		t.Errorf("during the show with nobody there yet: %s desired %d, want hold 9", d.Action, d.Desired)
	}
	// The audience arrived: the announcement adds nothing beyond them.
	if d := Decide(State{}, fleet(at, 9, 250), at); d.Figures.Announced != 0 || d.Desired != 10 {
		t.Errorf("audience of 2,250 there: announced %v desired %d, want 0 and 9 + 1", d.Figures.Announced, d.Desired)
	}
	// Half of it: the other half is still expected.
	if d := Decide(State{}, fleet(at, 9, 111), at); d.Figures.Announced != 1001 || d.Desired != 9 {
		t.Errorf("999 there: announced %v desired %d, want 1,001 and 9", d.Figures.Announced, d.Desired)
	}
	// Expired: back to the demand.
	at = t0.Add(time.Hour)
	if d := Decide(settled(p, 1), fleet(at, 9, 0), at); d.Figures.Announced != 0 || d.Action != ActionScaleIn {
		t.Errorf("after it expired: %s announced %v, want a scale-in", d.Action, d.Figures.Announced)
	}
	// An announcement below the look-ahead adds nothing more.
	at = t0.Add(time.Minute - 12*time.Second)
	in := fleet(at, 2, 0)
	in.Door = DoorFigures{Rate: 2000}
	if d := Decide(State{}, in, at); d.Figures.Lookahead != 4000 || d.Reason != ReasonLookahead || d.Desired != 12 {
		t.Errorf("storm bigger than the show: lookahead %v reason %s desired %d", d.Figures.Lookahead, d.Reason, d.Desired)
	}
}

func TestReadyClock(t *testing.T) {
	f := newView(t)
	r := readyClock{from: t0}
	beat := func(id string, at time.Time) {
		f.Observe(bus.Beat{ID: id, State: bus.StateActive, Started: at.UnixMilli(), IntervalMS: 1000}, at)
	}
	ms := []Member{{ID: "old", Since: t0.Add(-time.Hour)}, {ID: "a", Since: t0.Add(time.Second)}, {ID: "b", Since: t0.Add(2 * time.Second)}, {Since: t0}}
	beat("old", t0.Add(3*time.Second))
	beat("a", t0.Add(1500*time.Millisecond))
	r.observe(ms, f, time.Minute)
	if got := r.estimate(); got != 500*time.Millisecond {
		t.Fatalf("estimate %v, want a's 500ms (old was running before the scaler, b has not beaten)", got)
	}
	beat("a", t0.Add(9*time.Second)) // later beats do not move a's first
	beat("b", t0.Add(12*time.Second))
	r.observe(ms, f, time.Minute)
	if got := r.estimate(); got != 10*time.Second {
		t.Fatalf("estimate %v, want the longest, b's 10s", got)
	}
	for i, d := range []time.Duration{time.Second, 2 * time.Second, 3 * time.Second} {
		id := string(rune('c' + i))
		ms = append(ms, Member{ID: id, Since: t0.Add(time.Minute)})
		beat(id, t0.Add(time.Minute+d))
		r.observe(ms, f, time.Minute)
	}
	if got := r.estimate(); got != 3*time.Second {
		t.Fatalf("estimate %v, want 3s: b's 10s is older than the last three", got)
	}
	// A member that beats only after the start timeout is no measure.
	ms = append(ms, Member{ID: "slow", Since: t0.Add(2 * time.Minute)})
	beat("slow", t0.Add(10*time.Minute))
	r.observe(ms, f, time.Minute)
	if got := r.estimate(); got != 3*time.Second {
		t.Fatalf("estimate %v after a frozen start", got)
	}
	if len(r.done) != len(ms)-1 {
		t.Errorf("done %v", r.done)
	}
}

// newView returns a fleet view fed by the test, as the Scaler keeps it.
func newView(t *testing.T) *fleet.View {
	t.Helper()
	v, err := fleet.New(fleet.Config{ForgetAfter: forgetAfter, Logger: testutil.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestFreshIsTheFleetRule: the autoscaler counts a gateway as silent at the
// very moment dispatch stops offering it (the fleet view's rule), whatever
// its beat interval.
func TestFreshIsTheFleetRule(t *testing.T) {
	for _, iv := range []int64{0, 100, 1000} {
		f := newView(t)
		g, _ := f.Observe(bus.Beat{ID: "g", State: bus.StateActive, IntervalMS: iv}, t0)
		for _, silence := range []time.Duration{0, g.Stale - time.Nanosecond, g.Stale, g.Stale + time.Millisecond} {
			now := t0.Add(silence)
			l := loads(f.All(now))
			if len(l) != 1 || l[0].Fresh(now) != g.Fresh(now) || g.Fresh(now) != (silence < g.Stale) {
				t.Errorf("interval %d ms, silent %v: autoscale fresh %v, fleet fresh %v", iv, silence, l[0].Fresh(now), g.Fresh(now))
			}
		}
	}
}
