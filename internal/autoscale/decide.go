package autoscale

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/liveroom/liveroom/internal/announce"
	"github.com/liveroom/liveroom/internal/bus"
	"github.com/liveroom/liveroom/internal/fleet"
)

// Policy is the scaling policy: bounds, the capacity model and the time
// constants of Decide. Zero values take the documented defaults.
type Policy struct {
	// Min and Max bound the gateway count. Defaults 1 and 10.
	Min, Max int
	// Capacity is one gateway's capacity and the target utilisation.
	Capacity Capacity
	// ReadyTime is how long a new gateway needs to start and be offered by
	// dispatch, until the Scaler has measured it (Inputs.ReadyTime): the
	// look-ahead adds the joins expected over this time and one decision
	// interval. Default 10s.
	ReadyTime time.Duration
	// Spare is how many gateways of capacity are kept beyond the need (and
	// beyond Min), so that a step of Spare gateways' worth of viewers is
	// taken at once, before any new gateway could be ready. Dispatch
	// spreads viewers, so the spare shows as headroom on every gateway
	// rather than as one empty gateway; the fleet's size is the same.
	// Default 0 (the commands' flags default to 1).
	Spare int
	// AnnounceLead is the margin before an announced audience's start at
	// which its capacity is asked for, on top of twice the ready time and
	// one decision interval. Default 10s.
	AnnounceLead time.Duration
	// Stabilization is how long the desired count must have stayed below
	// the current count before one gateway is taken away. Default 5m.
	Stabilization time.Duration
	// JoinWindow is how far back the join rate looks: the rise of the
	// connection count over it is one measure of the join rate. Default 1m.
	JoinWindow time.Duration
	// JoinSpan is the latest span whose rise is the other measure, quick to
	// see a storm start; the join rate is the larger. Default 10s.
	JoinSpan time.Duration
	// StartTimeout is how long a gateway the actuator started counts as
	// capacity while it has not beaten yet. Default max(60s, 3 × ReadyTime).
	StartTimeout time.Duration
	// LostGrace is how long the load of a gateway that stopped beating is
	// still counted as demand (its viewers are reconnecting to the others);
	// it never counts as capacity. Default 10s.
	LostGrace time.Duration
}

// WithDefaults returns p with every zero field set to its default.
func (p Policy) WithDefaults() Policy {
	if p.Min <= 0 {
		p.Min = 1
	}
	if p.Max <= 0 {
		p.Max = max(p.Min, 10)
	}
	p.Capacity = p.Capacity.WithDefaults()
	setDur(&p.ReadyTime, 10*time.Second)
	setDur(&p.AnnounceLead, 10*time.Second)
	p.Spare = max(0, p.Spare)
	setDur(&p.Stabilization, 5*time.Minute)
	setDur(&p.JoinWindow, time.Minute)
	setDur(&p.JoinSpan, 10*time.Second)
	setDur(&p.StartTimeout, max(time.Minute, 3*p.ReadyTime))
	setDur(&p.LostGrace, 10*time.Second)
	return p
}

func setDur(d *time.Duration, def time.Duration) {
	if *d <= 0 {
		*d = def
	}
}

// GatewayLoad is the latest beat of one gateway as the autoscaler sees it.
type GatewayLoad struct {
	ID    string
	State string // bus.StateActive or bus.StateDraining
	Conns int
	// CPU in cores, BytesOut and MsgsOut per second, as beaten.
	CPU, BytesOut, MsgsOut float64
	// Load is the gateway's own load score in [0,1].
	Load float64
	// Started is when the gateway process started (from the beat): a new
	// value under the same id is a new process.
	Started time.Time
	// LastBeat is when its latest beat was received; FirstBeat when the
	// first beat of this process (this Started) was.
	LastBeat, FirstBeat time.Time
	// Interval is its beat interval; it is silent after three. Zero: 1s.
	Interval time.Duration
	// Rooms are the viewers of its largest rooms (the beat's room_conns).
	Rooms map[string]int
}

// FromBeat converts a beat received at at.
func FromBeat(b bus.Beat, at time.Time) GatewayLoad {
	return GatewayLoad{
		ID: b.ID, State: b.State, Conns: b.Conns, CPU: b.CPU, BytesOut: b.BytesOut, MsgsOut: b.MsgsOut,
		Load: b.Load, Started: time.UnixMilli(b.Started), LastBeat: at, FirstBeat: at,
		Interval: time.Duration(b.IntervalMS) * time.Millisecond, Rooms: b.RoomConns,
	}
}

// Fresh reports whether the gateway beat within three intervals of now:
// fleet.Gateway.Fresh, the rule dispatch uses to stop offering a gateway.
func (g GatewayLoad) Fresh(now time.Time) bool {
	return now.Sub(g.LastBeat) < fleet.StaleAfter(g.Interval)
}

// loads converts the fleet view's gateways.
func loads(gs []fleet.Gateway) []GatewayLoad {
	out := make([]GatewayLoad, len(gs))
	for i, g := range gs {
		out[i] = FromBeat(g.Beat, g.At)
		out[i].FirstBeat = g.First
	}
	return out
}

// Member is one gateway an actuator runs or is starting.
type Member struct {
	// ID is the gateway id it beats with; empty while not known (a pod the
	// ReplicaSet has not created yet).
	ID string `json:"id"`
	// Since is when it was started or asked for.
	Since time.Time `json:"since"`
}

// Inputs is everything Decide looks at besides its own State.
type Inputs struct {
	Policy Policy
	// Gateways holds the latest beat of every gateway heard from recently,
	// silent ones included.
	Gateways []GatewayLoad
	// Members are the gateways the actuator runs. A member that does not
	// beat counts as capacity for Policy.StartTimeout after its Since.
	Members []Member
	// AllManaged makes every beating gateway a candidate for scale-in (the
	// dry-run actuator); otherwise only Members are.
	AllManaged bool
	// Removing is the id of the gateway a scale-in is draining or removing;
	// empty when none is under way. Scale-in waits for it.
	Removing string
	// ReadyTime is the measured time from asking for a gateway to its
	// first beat; zero: not measured yet, Policy.ReadyTime holds.
	ReadyTime time.Duration
	// Tick is the time between two decisions (a scale-out decided now can
	// only be topped up a tick later). Zero: 1s.
	Tick time.Duration
	// Door is what dispatch saw at the door (Door.Figures): new viewers
	// per second, admitted or not.
	Door DoorFigures
	// Announcements are the announced audiences not yet expired.
	Announcements []announce.Announcement
}

// State is what Decide remembers between two calls; the zero value is a
// fresh start. Decide never modifies the State it is given: it returns the
// next one in Decision.Next.
type State struct {
	// Since is when the first decision was made.
	Since time.Time
	// Samples are the fleet's connection totals over the join window.
	Samples []Sample
	// Desired are the desired counts over the stabilisation window.
	Desired []Sample
}

// Sample is one value at one time.
type Sample struct {
	At time.Time
	V  float64
}

// Action is what a Decision asks for.
type Action string

// Actions.
const (
	ActionNone     Action = "none"
	ActionScaleOut Action = "scale_out"
	ActionScaleIn  Action = "scale_in"
)

// Reasons of a decision besides the dimensions (DimConns…). They are label
// values of liveroom_autoscale_decisions_total, a bounded set.
const (
	// ReasonLookahead: the scale-out is due to the join rate alone.
	ReasonLookahead = "lookahead"
	// ReasonAnnounced: the scale-out is due to an announced audience.
	ReasonAnnounced = "announced"
	// ReasonSpare: the scale-out keeps the spare capacity (Policy.Spare).
	ReasonSpare = "spare"
	// ReasonMin: fewer gateways than Policy.Min.
	ReasonMin = "min"
	// ReasonAboveMax: more gateways than Policy.Max (scale-in without
	// waiting for the window).
	ReasonAboveMax = "above_max"
	// ReasonStabilized: the desired count stayed below the current one for
	// the whole stabilisation window.
	ReasonStabilized = "stabilized"
	// ReasonSteady: desired equals current.
	ReasonSteady = "steady"
	// ReasonAtMax: the demand needs more gateways than Policy.Max, or the
	// actuator already runs Max (some of them not beating).
	ReasonAtMax = "at_max"
	// ReasonStabilizing: desired is below current, not for long enough.
	ReasonStabilizing = "stabilizing"
	// ReasonScaleInUnderWay: desired is below current, and a gateway is
	// still being drained or removed.
	ReasonScaleInUnderWay = "scale_in_under_way"
	// ReasonStarting: desired is below current while gateways are starting.
	ReasonStarting = "starting"
	// ReasonNoCandidate: desired is below current but no gateway the
	// actuator runs may be taken away.
	ReasonNoCandidate = "no_candidate"
)

// Figures are the inputs of a decision, as logged and exported.
type Figures struct {
	// Active, Draining and Silent count beating active, beating draining
	// and recently silent gateways; Starting counts members not beating yet.
	Active   int `json:"active"`
	Draining int `json:"draining"`
	Starting int `json:"starting"`
	Silent   int `json:"silent"`
	// Demand is the fleet's load: active, draining and recently silent
	// gateways.
	Demand Load `json:"demand"`
	// JoinRate is new viewers per second: the larger of DoorRate and
	// BeatRate.
	JoinRate float64 `json:"join_rate"`
	// DoorRate is the new viewers per second dispatch counted at the door
	// (admitted, told to wait or refused; not the viewers moving between
	// gateways), the steeper of the last 1 s and 5 s.
	DoorRate float64 `json:"door_rate"`
	// BeatRate is connections per second (net of leaves) from the beats:
	// the larger of the rise of the beating fleet's connection count over
	// the whole Policy.JoinWindow and over the latest Policy.JoinSpan, on
	// the count smoothed by a 3 s rolling minimum (so that viewers moving
	// between gateways do not count); never negative.
	BeatRate float64 `json:"beat_rate"`
	// Waits is the wait answers dispatch gave per second (every gateway
	// full), over the last 5 s.
	Waits float64 `json:"waits"`
	// ReadyTime is the time a new gateway needs to be offered, in
	// seconds: measured, or Policy.ReadyTime until it is.
	ReadyTime float64 `json:"ready_time_s"`
	// Horizon is how far ahead the look-ahead plans, in seconds: the ready
	// time plus one decision interval.
	Horizon float64 `json:"horizon_s"`
	// Lookahead is the connections expected within Horizon: JoinRate ×
	// Horizon.
	Lookahead float64 `json:"lookahead"`
	// Announced is the connections still expected by the announcements
	// in force: for each, its viewers minus those already in its room.
	// The demand grows by the larger of Lookahead and Announced.
	Announced float64 `json:"announced"`
	// Announcements describe the announcements in force, for the log.
	Announcements []string `json:"announcements,omitempty"`
	// Need is the gateways each dimension needs, look-ahead included.
	Need map[string]int `json:"need"`
	// Raw is the largest need, before the spare, Min and Max.
	Raw int `json:"raw"`
	// Spare is Policy.Spare, added to Raw.
	Spare int `json:"spare"`
	// Stable is the highest desired count over the stabilisation window.
	Stable int `json:"stable"`
}

// Decision is the result of Decide.
type Decision struct {
	At     time.Time `json:"at"`
	Action Action    `json:"action"`
	// Reason is a dimension or one of the Reason constants.
	Reason string `json:"reason"`
	// Current counts the gateways that are capacity: active and starting.
	Current int `json:"current"`
	// Desired is what the demand asks for, within Min and Max.
	Desired int `json:"desired"`
	// Add is how many gateways a scale-out starts.
	Add int `json:"add,omitempty"`
	// Remove is the gateway a scale-in drains and removes: the least loaded
	// active one the actuator runs.
	Remove string `json:"remove,omitempty"`
	// Why says in words how Desired was reached and what the action does
	// about it: the demand, the look-ahead, the announcements, the spare.
	Why     string  `json:"why"`
	Figures Figures `json:"inputs"`
	// Next is the State to pass to the next call.
	Next State `json:"-"`
}

// Decide computes the gateway count the fleet needs and what to do about it.
// It is a pure function of its arguments.
//
//   - A gateway is capacity while it beats (within three intervals) and is
//     active, or while the actuator started it less than StartTimeout ago
//     and it does not beat yet. Draining and silent gateways are not
//     capacity; the load of active, draining and recently silent (LostGrace)
//     ones is demand, except a silent gateway that was draining (it stops
//     once its viewers have moved).
//   - Look-ahead: the join rate is the larger of the door's (new viewers
//     per second at dispatch, admitted or not, over the last 1 s and 5 s:
//     it sees a storm in its first second) and the beats' (the net rise per
//     second of the beating fleet's connection count, the larger of its rise
//     over the last JoinWindow and over the latest JoinSpan, measured after
//     a 3 s rolling minimum that hides viewers counted twice while they move
//     between gateways). The joins expected over the horizon, the ready
//     time (measured, else Policy.ReadyTime) plus one decision interval,
//     are the look-ahead.
//   - Announcements in force (from twice the ready time, one interval and
//     AnnounceLead before their start, until they expire) expect their
//     viewers minus those already in their room. The connection demand
//     grows by the larger of the look-ahead and the announced viewers (an
//     announced audience arriving is the storm the look-ahead sees), and
//     the other dimensions in proportion (each viewer costs what the
//     current ones cost on average).
//   - desired = min(max(max over dimensions of ceil(demand ÷ (limit ×
//     target)), Min) + Spare, Max).
//   - Scale out at once by desired − current. Scale in only when every
//     desired count of the last Stabilization was below current (or current
//     is above Max), nothing is starting and no other scale-in is under way:
//     one gateway, the least loaded active one (load score, then
//     connections, then id).
func Decide(st State, in Inputs, now time.Time) Decision {
	p := in.Policy.WithDefaults()
	d := Decision{At: now, Action: ActionNone}
	f := &d.Figures

	beating := make(map[string]bool, len(in.Gateways))
	var active []GatewayLoad
	var demand Load
	freshConns := 0.0
	roomViewers := map[string]int{}
	for _, g := range in.Gateways {
		fresh := g.Fresh(now)
		switch {
		case fresh && g.State == bus.StateDraining:
			f.Draining++
		case fresh:
			f.Active++
			active = append(active, g)
		default:
			f.Silent++
			// A draining gateway stops beating once its last viewer has
			// left: they are on the other gateways already.
			if now.Sub(g.LastBeat) > p.LostGrace || g.State == bus.StateDraining {
				continue
			}
		}
		if fresh {
			beating[g.ID] = true
			freshConns += float64(g.Conns)
			for r, n := range g.Rooms {
				roomViewers[r] += n
			}
		}
		demand.Conns += float64(g.Conns)
		demand.CPU += g.CPU
		demand.BytesOut += g.BytesOut
		demand.MsgsOut += g.MsgsOut
	}
	managed := make(map[string]bool, len(in.Members))
	for _, m := range in.Members {
		if m.ID != "" {
			managed[m.ID] = true
			if beating[m.ID] {
				continue
			}
		}
		if now.Sub(m.Since) <= p.StartTimeout {
			f.Starting++
		}
	}
	f.Demand = demand
	d.Current = f.Active + f.Starting

	// Look-ahead.
	since := st.Since
	if since.IsZero() {
		since = now
	}
	ready := in.ReadyTime
	if ready <= 0 {
		ready = p.ReadyTime
	}
	tick := in.Tick
	if tick <= 0 {
		tick = time.Second
	}
	horizon := ready + tick
	f.ReadyTime, f.Horizon = ready.Seconds(), horizon.Seconds()
	samples := window(st.Samples, now.Add(-p.JoinWindow), Sample{now, freshConns})
	f.BeatRate = joinRate(samples, p.JoinSpan)
	f.DoorRate, f.Waits = finite(in.Door.Rate), finite(in.Door.Waits)
	f.JoinRate = max(f.BeatRate, f.DoorRate)
	f.Lookahead = f.JoinRate * horizon.Seconds()
	lead := 2*ready + tick + p.AnnounceLead
	for _, a := range in.Announcements {
		if now.Before(a.At.Add(-lead)) || a.Expired(now) {
			continue
		}
		there := roomViewers[string(a.Room)]
		f.Announced += float64(max(0, a.Viewers-there))
		f.Announcements = append(f.Announcements, fmt.Sprintf("%s: room %s expects %d viewers from %s until %s, %d there",
			a.ID, a.Room, a.Viewers, a.At.UTC().Format(time.TimeOnly), a.Until.UTC().Format(time.TimeOnly), there))
	}
	grow := func(extra float64) Load {
		l := demand
		if extra <= 0 {
			return l
		}
		l.Conns += extra
		if demand.Conns > 0 {
			k := l.Conns / demand.Conns
			l.CPU *= k
			l.BytesOut *= k
			l.MsgsOut *= k
		}
		return l
	}
	need := func(l Load) (n int, dim string) {
		for _, dm := range Dims {
			if k := p.Capacity.Need(dm, l.get(dm)); k > n {
				n, dim = k, dm
			}
		}
		return n, dim
	}
	grown := grow(max(f.Lookahead, f.Announced))
	f.Need = make(map[string]int, len(Dims))
	for _, dm := range Dims {
		f.Need[dm] = p.Capacity.Need(dm, grown.get(dm))
	}
	var dim string
	f.Raw, dim = need(grown)
	f.Spare = p.Spare
	// The spare comes on top of what serves the demand, Min included: an
	// idle fleet of Min 1 and Spare 1 runs two gateways, one of them
	// waiting for a step.
	base := max(f.Raw, p.Min)
	// The reason of a scale-out is the first term that asks for more than
	// there is, adding them in this order: the demand alone, the
	// look-ahead, the announcements, Min, the spare.
	nDemand, demandDim := need(demand)
	nAhead, _ := need(grow(f.Lookahead))
	switch {
	case nDemand > d.Current:
		d.Reason = demandDim
	case nAhead > d.Current:
		d.Reason = ReasonLookahead
	case f.Raw > d.Current:
		d.Reason = ReasonAnnounced
	case base > d.Current:
		d.Reason = ReasonMin
	case base+f.Spare > d.Current:
		d.Reason = ReasonSpare
	default:
		d.Reason = cmp.Or(dim, DimConns)
	}
	d.Desired = min(base+f.Spare, p.Max)

	desired := window(st.Desired, now.Add(-p.Stabilization), Sample{now, float64(d.Desired)})
	for _, s := range desired {
		f.Stable = max(f.Stable, int(s.V))
	}
	d.Next = State{Since: since, Samples: samples, Desired: desired}

	switch {
	case d.Desired > d.Current && !in.AllManaged && len(in.Members) >= p.Max:
		// Members that do not beat are not capacity, but they exist: never
		// run more than Max gateways, whatever state they are in.
		d.Reason = ReasonAtMax
	case d.Desired > d.Current:
		d.Action, d.Add = ActionScaleOut, d.Desired-d.Current
		if !in.AllManaged {
			d.Add = min(d.Add, p.Max-len(in.Members))
		}
	case d.Desired == d.Current:
		d.Reason = ReasonSteady
		if base+f.Spare > p.Max {
			d.Reason = ReasonAtMax
		}
	case in.Removing != "":
		d.Reason = ReasonScaleInUnderWay
	case f.Starting > 0:
		d.Reason = ReasonStarting
	case d.Current > p.Max:
		d.Reason = ReasonAboveMax
		d.scaleIn(active, managed, in.AllManaged)
	case now.Sub(since) < p.Stabilization || f.Stable >= d.Current:
		d.Reason = ReasonStabilizing
	default:
		d.Reason = ReasonStabilized
		d.scaleIn(active, managed, in.AllManaged)
	}
	d.Why = d.explain(p, dim)
	return d
}

// finite returns v, or 0 when it is NaN, infinite or negative.
func finite(v float64) float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
		return 0
	}
	return v
}

// explain says in words how d's desired count was reached and what d does:
// "demand 1,120 conns + look-ahead 240 (join rate 120.0/s: door 120.0/s,
// beats 95.3/s; × 2.0 s: ready 1.0 s + 1.0 s) = 1,360 conns needs 5 at 280
// per gateway; + 1 spare = 6; current 4 (4 active, 0 starting) → add 2".
func (d *Decision) explain(p Policy, dim string) string {
	f := &d.Figures
	var b strings.Builder
	per := p.Capacity.limit(DimConns) * p.Capacity.Target
	fmt.Fprintf(&b, "demand %s conns", thousands(f.Demand.Conns))
	extra := max(f.Lookahead, f.Announced)
	if f.Lookahead > 0 && f.Lookahead >= f.Announced {
		fmt.Fprintf(&b, " + look-ahead %s (join rate %.1f/s: door %.1f/s, beats %.1f/s; × %.1f s: ready %.1f s + one interval)",
			thousands(f.Lookahead), f.JoinRate, f.DoorRate, f.BeatRate, f.Horizon, f.ReadyTime)
	}
	if f.Announced > 0 && f.Announced > f.Lookahead {
		fmt.Fprintf(&b, " + announced %s (%s)", thousands(f.Announced), strings.Join(f.Announcements, "; "))
	} else if len(f.Announcements) > 0 {
		fmt.Fprintf(&b, " (announced %s, below the look-ahead: %s)", thousands(f.Announced), strings.Join(f.Announcements, "; "))
	}
	if extra > 0 {
		fmt.Fprintf(&b, " = %s conns", thousands(f.Demand.Conns+extra))
	}
	if per > 0 {
		fmt.Fprintf(&b, " needs %d at %s per gateway (%d × %.0f %%)", f.Need[DimConns], thousands(per), p.Capacity.Conns, p.Capacity.Target*100)
	}
	if dim != "" && dim != DimConns && f.Need[dim] > f.Need[DimConns] {
		fmt.Fprintf(&b, "; %s needs %d", dim, f.Need[dim])
	}
	base := max(f.Raw, p.Min)
	if f.Raw < p.Min {
		fmt.Fprintf(&b, "; min %d", p.Min)
	}
	if f.Spare > 0 {
		fmt.Fprintf(&b, "; + %d spare = %d", f.Spare, base+f.Spare)
	}
	if base+f.Spare > p.Max {
		fmt.Fprintf(&b, "; max %d", p.Max)
	}
	fmt.Fprintf(&b, "; current %d (%d active, %d starting)", d.Current, f.Active, f.Starting)
	switch d.Action {
	case ActionScaleOut:
		fmt.Fprintf(&b, " → add %d", d.Add)
	case ActionScaleIn:
		fmt.Fprintf(&b, " → drain and remove %s", d.Remove)
	default:
		fmt.Fprintf(&b, " → nothing (%s)", d.Reason)
	}
	return b.String()
}

// thousands formats v rounded, with commas: 12,345.
func thousands(v float64) string {
	n := int64(math.Round(v))
	s := strconv.FormatInt(max(n, -n), 10)
	var b strings.Builder
	if n < 0 {
		b.WriteByte('-')
	}
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// scaleIn picks the least loaded active gateway the actuator runs.
func (d *Decision) scaleIn(active []GatewayLoad, managed map[string]bool, all bool) {
	var best *GatewayLoad
	for i := range active {
		g := &active[i]
		if !all && !managed[g.ID] {
			continue
		}
		if best == nil || cmp.Or(cmp.Compare(g.Load, best.Load), cmp.Compare(g.Conns, best.Conns), cmp.Compare(g.ID, best.ID)) < 0 {
			best = g
		}
	}
	if best == nil {
		d.Reason = ReasonNoCandidate
		return
	}
	d.Action, d.Remove = ActionScaleIn, best.ID
}

// window returns a new slice with the samples of s at or after from, then
// add.
func window(s []Sample, from time.Time, add Sample) []Sample {
	i := slices.IndexFunc(s, func(x Sample) bool { return !x.At.Before(from) })
	if i < 0 {
		i = len(s)
	}
	out := make([]Sample, 0, len(s)-i+1)
	out = append(out, s[i:]...)
	return append(out, add)
}

// minSpan is the shortest span a join rate is measured over: beats arrive
// once a second, so a shorter one would be mostly beat-phase noise.
const minSpan = 2 * time.Second

// smoothing is the width of the rolling minimum the connection totals go
// through before the join rate is measured. Viewers that move are counted
// twice for a moment: on the gateway they joined, and in the last beat of
// the one they left until its next beat (a drain) or until it is silent for
// three beats (a crash). Such blips last at most three seconds; a real join
// storm lasts longer, and is seen smoothing later.
const smoothing = 3 * time.Second

// joinRate is the rate at which the fleet's connection count grows: the
// larger of its net rise per second over the whole window (the last
// minute: a storm is still expected for a while after it paused) and over
// the latest span (10 s: a storm that just started), both measured after a
// rolling minimum over smoothing and over at least minSpan. Never negative.
func joinRate(raw []Sample, span time.Duration) float64 {
	if len(raw) == 0 {
		return 0
	}
	s := make([]Sample, len(raw))
	for i := range raw {
		s[i] = raw[i]
		for k := i - 1; k >= 0 && raw[i].At.Sub(raw[k].At) <= smoothing; k-- {
			s[i].V = min(s[i].V, raw[k].V)
		}
	}
	rise := func(a, b Sample) float64 {
		dt := b.At.Sub(a.At)
		if dt < minSpan {
			return 0
		}
		return (b.V - a.V) / dt.Seconds()
	}
	last := s[len(s)-1]
	j := len(s) - 1
	for j > 0 && last.At.Sub(s[j-1].At) <= span {
		j--
	}
	rate := max(0, rise(s[0], last), rise(s[j], last))
	if math.IsNaN(rate) || math.IsInf(rate, 0) {
		return 0
	}
	return rate
}
