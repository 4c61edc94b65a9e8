package uplink

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/liveroom/liveroom/internal/bus"
	"github.com/liveroom/liveroom/internal/metrics"
	"github.com/liveroom/liveroom/internal/moderation"
	"github.com/liveroom/liveroom/internal/protocol"
)

// Fleet-wide limits (docs/OPERATIONS.md, "Limits across uplinks").
//
// Token buckets (danmaku per user and per room, gifts and likes per user)
// are split into shares, with no NATS traffic per send: every uplink reports,
// every FleetInterval on bus.UsageSubject, that it is alive and the demand of
// its hot keys (keys it refused, and keys it keeps using after that). Every
// uplink reads every report and computes the same shares:
//
//   - a key nobody reports gets 1/N of the rate and burst on each of the N
//     live uplinks (a sprayer gets N × 1/N);
//   - a key somebody reports is split in proportion to the reported demand,
//     among the uplinks that report it; the others get 0 and refuse it until
//     their own report (of the refusal) gives them a part. A user on one
//     uplink so gets the whole rate there one interval after being refused.
//
// The shares of a key always sum to 1 when the uplinks have read the same
// reports. Slow mode has a burst of one comment, which no share can split:
// each (room, user) pair is owned by one live uplink (rendezvous hashing),
// and an uplink that does not own a pair asks its owner with one NATS
// request, only when its own memory of the pair does not already refuse.

// Limit classes, in bus.UsageReport order.
const (
	classUser = iota
	classRoom
	classGift
	classLike
	numClasses
)

var classNames = [numClasses]string{bus.UsageUser, bus.UsageRoom, bus.UsageGift, bus.UsageLike}

const (
	// DefaultFleetInterval is how often an uplink reports its usage.
	DefaultFleetInterval = 250 * time.Millisecond
	// keyHold is how long a key stays hot after it was last used: the
	// share it earned stays reported through a pause (a user reading
	// the room between comments keeps the whole rate on their uplink).
	keyHold = 10 * time.Second
	// peerLost is how many of its intervals a silent uplink still counts.
	peerLost = 3
	// slowClaimTimeout bounds the wait for a slow-mode owner; past it the
	// uplink decides alone (the pair may then speak once early).
	slowClaimTimeout = 250 * time.Millisecond
)

// fleet is an uplink's view of the other uplinks. view is read on every
// send (one atomic load); everything else belongs to the run loop.
type fleet struct {
	id       string
	run      string // this process's run id (bus.UsageReport.Run)
	interval time.Duration
	hold     time.Duration
	// period numbers the report intervals; demand is counted per period.
	period atomic.Uint64
	view   atomic.Pointer[fleetView]

	reportsSent, reportsDropped atomic.Uint64
	claims, claimFallbacks      atomic.Uint64

	peers map[string]peerState // run loop only; self included
	gen   uint64               // run loop only
}

type peerState struct {
	seen     time.Time
	interval time.Duration
	hot      [numClasses]map[string]float64
}

// fleetView is an immutable snapshot of the fleet: the live uplinks and this
// uplink's share of every key some uplink reports.
type fleetView struct {
	gen    uint64
	n      int      // live uplinks, self included
	ids    []string // sorted, self included
	shares [numClasses]map[string]float64
}

// aloneView is the view of an uplink with fleet-wide limits off.
var aloneView = &fleetView{n: 1}

func newFleet(id string, interval time.Duration) *fleet {
	f := &fleet{id: id, run: nuid.Next(), interval: interval, hold: max(keyHold, 4*interval), peers: map[string]peerState{}}
	f.gen = 1
	f.view.Store(&fleetView{gen: f.gen, n: 1, ids: []string{id}})
	return f
}

// current returns the view sends are admitted with; a nil fleet is alone.
func (f *fleet) current() *fleetView {
	if f == nil {
		return aloneView
	}
	return f.view.Load()
}

// share is this uplink's part of key's rate and burst in class; cold is
// true when that is the equal share of a key no live uplink reports.
func (v *fleetView) share(class int, key string) (share float64, cold bool) {
	if v.n <= 1 {
		return 1, false
	}
	if s, ok := v.shares[class][key]; ok {
		return s, false
	}
	return 1 / float64(v.n), true
}

// owner returns the live uplink that owns (room, user) for slow mode:
// the highest FNV-1a hash of id|room|user, so that every uplink picks the
// same one and a change of the fleet moves only the pairs of the uplink
// that came or went.
func (v *fleetView) owner(room protocol.Room, user protocol.User) string {
	best, bestH := "", uint64(0)
	for _, id := range v.ids {
		h := fnv1a(fnv1a(fnv1a(fnvOffset, id), "|"+string(room)), "|"+string(user))
		if best == "" || h > bestH {
			best, bestH = id, h
		}
	}
	return best
}

const fnvOffset, fnvPrime = 14695981039346656037, 1099511628211

// fnv1a continues a 64-bit FNV-1a hash (hash/fnv's, without its allocation)
// over s: the same on every uplink, unlike maphash.
func fnv1a(h uint64, s string) uint64 {
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= fnvPrime
	}
	return h
}

// sets returns the server's limiter sets in class order.
func (s *Server) sets() [numClasses]*limiterSet {
	return [numClasses]*limiterSet{s.users, s.rooms, s.giftUsers, s.likeUsers}
}

// runFleet subscribes to the usage reports and to this uplink's slow-mode
// claims and runs the report loop for as long as Run runs; the returned
// func stops it and waits. With fleet-wide limits off it does nothing.
func (s *Server) runFleet(ctx context.Context) func() {
	f := s.fleet
	if f == nil {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	reports := make(chan bus.UsageReport, 256)
	usage, err := s.cfg.NC.Subscribe(bus.UsageSubject, func(m *nats.Msg) {
		u, err := bus.DecodeUsage(m.Data)
		if err != nil {
			f.reportsDropped.Add(1)
			s.log.Debug("usage report dropped", "err", err)
			return
		}
		if u.ID == f.id {
			if u.Run != f.run {
				// Both would ignore each other's reports and each
				// hold a share meant for one: say so loudly.
				f.reportsDropped.Add(1)
				s.log.Error("another uplink uses this uplink's id; give each uplink its own --uplink-id", "id", f.id)
			}
			return
		}
		select {
		case reports <- u:
		default:
			f.reportsDropped.Add(1)
		}
	})
	if err != nil {
		s.log.Error("cannot subscribe to usage reports; limits hold per uplink", "err", err)
	}
	claims, err := s.cfg.NC.Subscribe(bus.SlowClaimSubject(f.id), s.serveSlowClaim)
	if err != nil {
		s.log.Error("cannot subscribe to slow-mode claims", "err", err)
	}
	var wg sync.WaitGroup
	wg.Go(func() { s.fleetLoop(ctx, reports) })
	return func() {
		cancel()
		wg.Wait()
		for _, sub := range []*nats.Subscription{usage, claims} {
			if sub != nil {
				_ = sub.Unsubscribe()
			}
		}
	}
}

func (s *Server) fleetLoop(ctx context.Context, reports <-chan bus.UsageReport) {
	f := s.fleet
	tick := time.NewTicker(f.interval)
	defer tick.Stop()
	// A report takes effect within an eighth of an interval: the shares
	// of two uplinks disagree at most that long, and a burst of reports
	// from a large fleet costs at most eight rebuilds per interval.
	rebuild := time.NewTicker(max(f.interval/8, time.Millisecond))
	defer rebuild.Stop()
	dirty := false
	s.publishUsage(time.Now())
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			s.publishUsage(now)
			f.rebuild(now)
			dirty = false
		case u := <-reports:
			p := peerState{seen: time.Now(), interval: time.Duration(u.IntervalMS) * time.Millisecond}
			for c, name := range classNames {
				p.hot[c] = u.Hot[name]
			}
			_, known := f.peers[u.ID]
			f.peers[u.ID] = p
			if !known {
				// A new uplink changes every cold share: apply it now,
				// and report at once, so that the newcomer, which counts
				// itself alone until it hears the others, learns of
				// this uplink in milliseconds rather than an interval.
				now := time.Now()
				f.rebuild(now)
				s.publishUsage(now)
				dirty = false
				continue
			}
			dirty = true
		case now := <-rebuild.C:
			if dirty {
				f.rebuild(now)
				dirty = false
			}
		}
	}
}

// publishUsage closes the current report period: it collects the hot keys
// of every set, records them as this uplink's own report and publishes it.
// An uplink that believes it is alone reports no keys (nobody needs them).
func (s *Server) publishUsage(now time.Time) {
	f := s.fleet
	p := f.period.Load()
	alone := f.current().n <= 1
	u := bus.UsageReport{ID: f.id, Run: f.run, TS: now.UnixMilli(), IntervalMS: f.interval.Milliseconds()}
	self := peerState{seen: now, interval: f.interval}
	for c, set := range s.sets() {
		hot := set.hotKeys(now, p, bus.MaxUsageKeys)
		if alone || len(hot) == 0 {
			continue
		}
		self.hot[c] = hot
		if u.Hot == nil {
			u.Hot = map[string]map[string]float64{}
		}
		u.Hot[classNames[c]] = hot
	}
	f.period.Add(1)
	f.peers[f.id] = self
	b, err := json.Marshal(u)
	if err != nil {
		s.log.Error("cannot encode usage report", "err", err)
		return
	}
	if err := s.cfg.NC.Publish(bus.UsageSubject, b); err != nil {
		s.log.Warn("cannot publish usage report", "err", err)
		return
	}
	f.reportsSent.Add(1)
}

// rebuild forgets silent uplinks and computes a new view from the latest
// report of every live uplink, its own included.
func (f *fleet) rebuild(now time.Time) {
	ids := make([]string, 0, len(f.peers)+1)
	for id, p := range f.peers {
		if id != f.id && now.Sub(p.seen) > peerLost*max(p.interval, f.interval) {
			delete(f.peers, id)
			continue
		}
		ids = append(ids, id)
	}
	if _, ok := f.peers[f.id]; !ok {
		ids = append(ids, f.id)
	}
	sort.Strings(ids)
	f.gen++
	v := &fleetView{gen: f.gen, n: len(ids), ids: ids}
	if v.n > 1 {
		mine := f.peers[f.id]
		for c := range numClasses {
			type total struct {
				sum float64
				n   int
			}
			totals := map[string]total{}
			for _, p := range f.peers {
				for k, d := range p.hot[c] {
					t := totals[k]
					t.sum += d
					t.n++
					totals[k] = t
				}
			}
			shares := make(map[string]float64, len(totals))
			for k, t := range totals {
				d, reported := mine.hot[c][k]
				switch {
				case !reported:
					shares[k] = 0
				case t.sum > 0:
					shares[k] = d / t.sum
				default:
					shares[k] = 1 / float64(t.n)
				}
			}
			v.shares[c] = shares
		}
	}
	f.view.Store(v)
}

// slowClaim asks a slow-mode owner to admit a comment of user in room.
type slowClaim struct {
	Room       string `json:"room"`
	User       string `json:"user"`
	IntervalMS int64  `json:"interval_ms"`
}

// slowAnswer is the owner's answer: 0 admitted (and recorded), else how
// long the user must still wait; Error when the claim was malformed.
type slowAnswer struct {
	WaitMS int64  `json:"wait_ms"`
	Error  string `json:"error,omitempty"`
}

// admitSlow applies slow mode to a danmaku of user in room: 0 to admit, or
// the wait. Alone, or for the pairs this uplink owns, it decides from its own
// memory; otherwise it refuses from memory when it can and asks the owner
// when it cannot. An owner that does not answer in slowClaimTimeout is
// skipped: the uplink decides alone, as a single uplink would.
func (s *Server) admitSlow(room protocol.Room, user protocol.User, now time.Time, interval time.Duration) time.Duration {
	f := s.fleet
	v := f.current()
	if v.n <= 1 {
		return s.slow.admit(room, user, now, interval)
	}
	owner := v.owner(room, user)
	if owner == f.id {
		return s.slow.admit(room, user, now, interval)
	}
	if w := s.slow.wait(room, user, now, interval); w > 0 {
		return w
	}
	f.claims.Add(1)
	w, err := s.claimSlow(owner, slowClaim{Room: string(room), User: string(user), IntervalMS: interval.Milliseconds()})
	if err != nil {
		f.claimFallbacks.Add(1)
		s.log.Debug("slow-mode owner did not answer; deciding alone", "owner", owner, "err", err)
		return s.slow.admit(room, user, now, interval)
	}
	// Remember the owner's answer, so that the next tries are refused
	// here without asking: the user last spoke now, or interval-w ago.
	s.slow.set(room, user, now.Add(min(w-interval, 0)))
	return w
}

func (s *Server) claimSlow(owner string, c slowClaim) (time.Duration, error) {
	if !bus.ValidUplinkID(owner) {
		return 0, fmt.Errorf("bad owner id %q", owner)
	}
	b, err := json.Marshal(c)
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), slowClaimTimeout)
	defer cancel()
	m, err := s.cfg.NC.RequestWithContext(ctx, bus.SlowClaimSubject(owner), b)
	if err != nil {
		return 0, fmt.Errorf("cannot claim from %s: %w", owner, err)
	}
	var a slowAnswer
	if err := json.Unmarshal(m.Data, &a); err != nil {
		return 0, fmt.Errorf("answer of %s is not JSON: %w", owner, err)
	}
	if a.Error != "" {
		return 0, errors.New(a.Error)
	}
	if a.WaitMS < 0 || a.WaitMS > c.IntervalMS {
		return 0, fmt.Errorf("answer of %s: wait %d ms out of range", owner, a.WaitMS)
	}
	return time.Duration(a.WaitMS) * time.Millisecond, nil
}

// serveSlowClaim answers another uplink's slow-mode claim for a pair this
// uplink owns. A malformed claim gets an error answer, never a panic.
func (s *Server) serveSlowClaim(m *nats.Msg) {
	var a slowAnswer
	if err := s.answerSlowClaim(m.Data, &a); err != nil {
		a = slowAnswer{Error: err.Error()}
	}
	b, _ := json.Marshal(a)
	if m.Reply != "" {
		_ = m.Respond(b)
	}
}

func (s *Server) answerSlowClaim(data []byte, a *slowAnswer) error {
	var c slowClaim
	if err := json.Unmarshal(data, &c); err != nil {
		return errors.New("claim is not JSON")
	}
	room, err := protocol.ParseRoom(c.Room)
	if err != nil {
		return errors.New("bad room")
	}
	user, err := protocol.ParseUser(c.User)
	if err != nil {
		return errors.New("bad user")
	}
	if c.IntervalMS <= 0 || c.IntervalMS > moderation.MaxSlowModeS*1000 {
		return errors.New("bad interval")
	}
	w := s.slow.admit(room, user, time.Now(), time.Duration(c.IntervalMS)*time.Millisecond)
	a.WaitMS = (w + time.Millisecond - 1).Milliseconds()
	return nil
}

// FleetStats is a snapshot of the fleet-wide limits' counters.
type FleetStats struct {
	// Uplinks is the number of live uplinks this one counts, itself
	// included (1 when alone or with fleet-wide limits off).
	Uplinks int
	// ReportsSent and ReportsDropped count usage reports published, and
	// received but dropped (malformed, or the loop was behind).
	ReportsSent, ReportsDropped uint64
	// SlowClaims counts slow-mode questions to another uplink;
	// SlowClaimFallbacks those that got no answer in time.
	SlowClaims, SlowClaimFallbacks uint64
}

// Fleet returns the fleet-wide limits' counters.
func (s *Server) Fleet() FleetStats {
	f := s.fleet
	if f == nil {
		return FleetStats{Uplinks: 1}
	}
	return FleetStats{
		Uplinks:            f.current().n,
		ReportsSent:        f.reportsSent.Load(),
		ReportsDropped:     f.reportsDropped.Load(),
		SlowClaims:         f.claims.Load(),
		SlowClaimFallbacks: f.claimFallbacks.Load(),
	}
}

// fleetCollector exposes FleetStats under liveroom_uplink_fleet_*.
func (s *Server) fleetCollector() prometheus.Collector {
	uplinks := prometheus.NewDesc("liveroom_uplink_fleet_uplinks", "Live uplinks this uplink shares its limits with, itself included.", nil, nil)
	reports := prometheus.NewDesc("liveroom_uplink_fleet_reports_total", "Usage reports on lr.uplink.usage: sent, or received and dropped (malformed, or the loop was behind).", []string{"result"}, nil)
	claims := prometheus.NewDesc("liveroom_uplink_slow_claims_total", "Slow-mode questions to the owning uplink: asked, and fallback when it did not answer in time.", []string{"result"}, nil)
	return metrics.Func([]*prometheus.Desc{uplinks, reports, claims}, func(ch chan<- prometheus.Metric) {
		f := s.Fleet()
		ch <- prometheus.MustNewConstMetric(uplinks, prometheus.GaugeValue, float64(f.Uplinks))
		ch <- prometheus.MustNewConstMetric(reports, prometheus.CounterValue, float64(f.ReportsSent), "sent")
		ch <- prometheus.MustNewConstMetric(reports, prometheus.CounterValue, float64(f.ReportsDropped), "dropped")
		ch <- prometheus.MustNewConstMetric(claims, prometheus.CounterValue, float64(f.SlowClaims), "asked")
		ch <- prometheus.MustNewConstMetric(claims, prometheus.CounterValue, float64(f.SlowClaimFallbacks), "fallback")
	})
}
