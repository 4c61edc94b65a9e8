// Package dispatch tells each new client which gateways to connect to.
//
// Dispatch keeps the latest load beat of every gateway (bus.Beat, NATS
// subject lr.gw.beat, read and expired by a fleet.View, which also serves
// GET /v1/gateways) in memory and answers GET /v1/dispatch?room=R with a
// few gateways to try, best first, and the reconnect policy clients must
// follow. It keeps nothing else that outlives a beat interval: a restarted
// replica knows everything again after one beat, and replicas fed the same
// beats compute the same weights.
//
// # Algorithm
//
//  1. Eligibility. A gateway is offered only if its last beat arrived less
//     than StaleAfter ago (default three of its own beat intervals,
//     interval_ms, taking 1 s when the beat carries none: 3 s), its state is
//     active (never draining), and the load it reported is below LoadCeiling.
//
//  2. Effective load. Between two beats a gateway's reported load lags behind
//     by the clients dispatch sent it since. Each replica therefore counts,
//     per gateway, the answers it gave with that gateway first since the
//     gateway's last beat ("assigned"). When the next beat arrives, its conns
//     include those clients that have connected by then, but not those still
//     on their way (dispatch answer → WebSocket handshake: milliseconds
//     usually, seconds on a busy machine in a join storm). So the count does
//     not drop to zero: what the beat's rise of conns does not account for
//     is carried into the next interval ("carried"), at most the last two
//     intervals' assignments, so that a client that never came is
//     forgotten after three beats:
//
//     carried   = min(assigned + carried − rise of conns ÷ Replicas, assigned + assigned before), ≥ 0
//     effective = beat load + Replicas × (assigned + carried) / max_conns
//
//     Without the carry, a storm of 133 joins/s onto one gateway on a
//     loaded machine filled it to 100 % behind the 90 % ceiling (liveroom
//     bench flash); with one interval's carry, a step of 120 joins in 1 s
//     with handshakes of up to 1.4 s still took one gateway to 92 %. A
//     gateway with many leaves as well as joins is counted fuller by up to
//     two intervals' joins.
//
//     (capacity.conns when max_conns is 0, 19000 when both are). A gateway
//     whose effective load reached LoadCeiling is not offered until its next
//     beat.
//
//  3. Weight. Each gateway's weight is the square of its headroom below a
//     fill line F:
//
//     F      = min(LoadCeiling, (1 + FillMargin) × highest effective load + 0.0001)
//     weight = (F − effective)²
//
//     When the fleet is busy, F is the ceiling and the weight is the plain
//     headroom², which starves gateways close to the ceiling. When the fleet
//     is lightly loaded, headroom to the ceiling alone cannot tell gateways
//     apart: with max_conns 19000, gateways holding 1,000 and 0 viewers have
//     headroom 0.847 and 0.9, squared 0.72 and 0.81: a third, empty gateway
//     would get 36 % of the joins, and in the scale-out simulation below it
//     ended 53 % under the mean. Measured to the fill line, the empty gateway
//     weighs about (1.1 L)² against (0.1 L)² for the busy ones, 121 to 1, at
//     any scale. Gateways with equal loads weigh the same, so a balanced
//     fleet gets an even random spread.
//
//     Scale-out simulation (two gateways with N viewers each, a third
//     starts, 1.5 N viewers arrive in concurrent bursts of 500 per beat
//     interval): the gateways end about 1 % from their mean for N = 300 and
//     N = 1,000, 3.4 % at worst in 500 runs (the goal is ±15 %).
//
//  4. Draw. The candidates are drawn by weighted random, without
//     replacement, up to Candidates. Random, so that thousands of requests
//     between two beats do not all go to the same gateway; and each answer
//     raises its first gateway's effective load at once, so the weights of
//     the very next request already reflect it. New gateways, having the most
//     headroom, fill first, and stop being favoured once they caught up.
//
//  5. Room affinity. A small room should reach few gateways. If the room
//     asked for is listed in a candidate's room_conns with fewer than
//     AffinityMaxViewers viewers there (counting those this replica sent
//     since the beat) and the candidate's effective load is below both
//     AffinityMaxLoad and the mean effective load of the open gateways
//     (affinity yields to balance: while a new gateway fills up, rooms do
//     not return to their old homes), that gateway is listed first, followed by the weighted
//     draw among the others. With several such gateways the one holding the
//     most viewers of the room wins (then the lower load, then the smaller
//     id). Rooms with AffinityMaxViewers or more viewers on a gateway spread
//     like any other request. Beats list only a gateway's 16 largest rooms,
//     so a small room on a gateway with many larger ones gets no affinity.
//
//  6. Answer. {"gateways":[{"id","url","load"}…],"reconnect":{"base_ms",
//     "max_ms","jitter"}}, where load is the effective load when the answer
//     was made. When gateways beat but none has headroom (all at the
//     ceiling, or draining), the fleet is full and growing: the answer is
//     200 {"gateways":[],"retry_after_ms":N,…}, "wait and ask again", with
//     N drawn uniformly in [(1 − WaitJitter) × WaitRetry, WaitRetry] so that
//     the clients told to wait together do not come back together. Only
//     when no gateway beats at all is it 503 unavailable with
//     retry_after_ms 1000: that is a fault, not a crowd.
//
//  7. The door. Every answered request is counted, by who asked: a new
//     viewer (no since=, no attempt=), a client asking again after a wait
//     or a failure (attempt ≥ 1), or a viewer that already follows the room
//     and moves between gateways (since=: after a drain or a lost gateway,
//     already counted in the demand of the gateway it left); and by what it
//     got: gateways, a wait, a refusal. The counts go out on
//     bus.DoorSubject every DoorInterval while clients ask
//     (bus.DoorReport): the autoscaler's join rate at the door, which sees
//     a storm in its first second and counts the joins no gateway could
//     take yet, where the gateways' beats see only those admitted, a beat
//     later.
//
// # Parameters
//
//	Config field        default   meaning
//	StaleAfter          3 beats   silence after which a gateway is never offered
//	LoadCeiling         0.9       load at or above which a gateway is never offered
//	Candidates          3         gateways per answer
//	FillMargin          0.1       how far above the busiest gateway the fill line sits
//	                              while the fleet is below the ceiling; smaller is
//	                              sharper (new gateways favoured more)
//	AffinityMaxViewers  500       a room with fewer viewers on a gateway sticks to it;
//	                              negative turns affinity off
//	AffinityMaxLoad     0.6       ... only while that gateway's effective load is below this
//	Replicas            1         dispatch processes sharing the traffic; each assumes
//	                              the others send as many clients as itself
//	Reconnect           500 ms, 15 s, 0.5   backoff base, max and jitter sent to clients
//	WaitRetry           1 s       retry_after_ms of a "wait" answer, before jitter
//	WaitJitter          0.5       share of WaitRetry taken off at random
//	DoorInterval        250 ms    how often the door's counts are published
//
// # Consistency
//
// Eligibility and weights are a function of the beats, the configuration and
// the replica's own assignments since each gateway's last three beats (the
// carry), and nothing else: once a gateway's beat shows every client sent to
// it, every replica computes the same weights for that gateway (Weights
// shows them). Replicas do not see each other's assignments
// between beats; with several replicas each one alone would fill a new
// gateway up to its neighbours, so Replicas scales the local count to stand
// for everyone's. Four replicas left at Replicas 1 put the new gateway of
// the N = 300 simulation 25 % above the mean; told Replicas 4, about 1 %.
package dispatch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/liveroom/liveroom/internal/bus"
	"github.com/liveroom/liveroom/internal/fleet"
	"github.com/liveroom/liveroom/internal/protocol"
)

// ReconnectPolicy is the backoff clients must follow between attempts:
// delay = min(MaxMS, BaseMS × 2^attempt) × (1 − Jitter·rand), rand in [0,1),
// so that clients dropped together spread out and never wait above MaxMS.
type ReconnectPolicy struct {
	BaseMS int64   `json:"base_ms"`
	MaxMS  int64   `json:"max_ms"`
	Jitter float64 `json:"jitter"`
}

// Candidate is one gateway offered to a client. Load is the gateway's
// effective load when the answer was made: its beat's load plus the clients
// this dispatch process sent it since.
type Candidate struct {
	ID   string  `json:"id"`
	URL  string  `json:"url"`
	Load float64 `json:"load"`
}

// Answer is the body of GET /v1/dispatch. Gateways is empty only in a
// "wait" answer, which sets RetryAfterMS.
type Answer struct {
	Gateways []Candidate `json:"gateways"`
	// RetryAfterMS, in a wait answer, is how long to wait before asking
	// again (jitter already applied).
	RetryAfterMS int64           `json:"retry_after_ms,omitempty"`
	Reconnect    ReconnectPolicy `json:"reconnect"`
}

// Defaults of Config; the package documentation explains each.
const (
	DefaultLoadCeiling        = 0.9
	DefaultCandidates         = 3
	DefaultFillMargin         = 0.1
	DefaultAffinityMaxViewers = 500
	DefaultAffinityMaxLoad    = 0.6
	// DefaultBeatInterval is assumed for a beat without interval_ms.
	DefaultBeatInterval = fleet.DefaultInterval
	// fallbackMaxConns converts assignments to load for a beat that carries
	// no capacity; it is the gateway's default --max-conns.
	fallbackMaxConns = 19000
	// minFillMargin keeps the fill line above zero when every gateway is
	// empty, so they all weigh the same.
	minFillMargin = 0.0001
	// DefaultWaitRetry and DefaultWaitJitter shape a wait answer's
	// retry_after_ms: uniform in [500 ms, 1 s].
	DefaultWaitRetry = time.Second
	// DefaultMaxStaleView bounds the answers from the last good view while
	// dispatch's NATS is in trouble (Config.MaxStaleView).
	DefaultMaxStaleView = 15 * time.Second
	DefaultWaitJitter   = 0.5
	// DefaultDoorInterval is how often the door's counts are published:
	// four times a second, so that the autoscaler, deciding once a second,
	// sees the first second of a storm.
	DefaultDoorInterval = 250 * time.Millisecond
	// maxAttempt bounds the attempt= parameter.
	maxAttempt = 1_000_000
)

// Config configures dispatch. Zero values mean the defaults given.
type Config struct {
	// NC receives beats. Required.
	NC *nats.Conn
	// Logger; default slog.Default().
	Logger *slog.Logger
	// StaleAfter, when set, overrides the silence after which a gateway is
	// never offered. Default: 3 × the beat interval each gateway reports
	// (3 × 1 s when it reports none).
	StaleAfter time.Duration
	// LoadCeiling is the load (0,1] at or above which a gateway is never
	// offered. Default 0.9.
	LoadCeiling float64
	// Candidates is how many gateways an answer lists at most. Default 3.
	Candidates int
	// FillMargin places the fill line headroom is measured to at
	// (1+FillMargin) × the highest effective load, capped at LoadCeiling.
	// Smaller favours emptier gateways more sharply. Default 0.1.
	FillMargin float64
	// AffinityMaxViewers: a room with fewer viewers than this on a gateway
	// is sent there first. Default 500; negative disables affinity.
	AffinityMaxViewers int
	// AffinityMaxLoad: affinity applies only below this effective load.
	// Default 0.6.
	AffinityMaxLoad float64
	// Replicas is the number of dispatch processes sharing the traffic.
	// Each counts its own assignments between beats Replicas times. Default 1.
	Replicas int
	// Reconnect is the policy sent to clients. Default 500ms base, 15s max,
	// jitter 0.5.
	Reconnect ReconnectPolicy
	// WaitRetry is the retry_after_ms of a wait answer (every gateway full)
	// before jitter. Default 1s: well below any gateway's ready time, so
	// that a waiting client is in within a second of new capacity.
	WaitRetry time.Duration
	// WaitJitter in [0,1] is the share of WaitRetry taken off at random.
	// Default 0.5; negative means none.
	WaitJitter float64
	// DoorInterval is how often the door's counts are published on
	// bus.DoorSubject (only while clients ask). Default 250ms.
	DoorInterval time.Duration
	// ID names this replica in its door reports. Default "dispatch-" and
	// random hex digits.
	ID string
	// MaxStaleView bounds how long dispatch keeps answering from its last
	// good view of the fleet while its own NATS connection is in trouble
	// (its node hangs or fails over): beats stop arriving because of
	// dispatch, not because the gateways died, so the gateways that were
	// fresh when the trouble began stay offered, for at most this long.
	// When the connection answers again within it, the outage still does
	// not count as the gateways' silence until each has beaten again (the
	// beats they sent meanwhile were lost with dispatch's connection).
	// Default 15s; negative: no stale view (a gateway is dropped 3 beats
	// after its last beat whatever the cause).
	MaxStaleView time.Duration
	// GatewayHosts, when not empty, lists the hosts a gateway's URL may name
	// ("gw1.example.com" or "*.example.com"); beats with another host are
	// refused (see bus.DecodeBeat, which also checks every beat's shape).
	GatewayHosts []string
}

// Server answers dispatch requests. Safe for concurrent use.
type Server struct {
	cfg Config
	log *slog.Logger

	// view receives the beats, keeps them and forgets the gateways silent
	// too long; it feeds every beat to apply, which keeps order and rooms,
	// the derived view Choose reads. Lock order: view's lock, then mu.
	view *fleet.View

	// mu guards order and rooms. Choose only reads them (RLock); the
	// per-gateway assignment counters are atomics so that concurrent
	// Chooses do not serialise.
	mu    sync.RWMutex
	order []*gateway // by id: iteration order is part of the weights' determinism
	// rooms indexes the gateways' room_conns by room, so that an answer
	// looks its room up once rather than in every gateway's list (at 256
	// gateways the per-gateway scan was 80 % of Choose).
	rooms map[protocol.Room][]*roomCount

	// answered, waited and refused count dispatch answers with
	// candidates, telling to wait (every gateway full) and without any
	// gateway at all, for metrics; requests counts them by kind.
	answered, waited, refused atomic.Int64
	requests                  [3]atomic.Int64 // by requestKind
	// door counts the requests of the current door interval.
	door doorCounts
	// feedOK is the last time dispatch's NATS connection answered a ping
	// (Unix nanos); feedDown is set while it does not. While down, beats are
	// aged as of feedOK (viewNow).
	feedOK   atomic.Int64
	feedDown atomic.Bool
	// excused is the length of the last outage (nanoseconds) while beats
	// from before its end are still owed (viewNow ages beats by the clock
	// minus it), 0 otherwise; back is when that outage ended (Unix nanos).
	excused, back atomic.Int64

	cancel  context.CancelFunc
	wg      sync.WaitGroup
	nowFn   func() time.Time
	randFn  func() float64 // uniform in [0,1); safe for concurrent use
	scratch sync.Pool      // *[]ranked
}

// gateway is what dispatch knows of one gateway: its last beat (with its
// arrival and staleness, from the fleet view) and what this process did
// since. Replaced, never modified, when a beat arrives, which resets the
// counters.
type gateway struct {
	fleet.Gateway
	load     float64 // beat load, sanitised to [0,1]
	perConn  float64 // load of one connection: 1/max_conns
	eligible bool    // active and below the ceiling by its beat
	assigned atomic.Int64
	// carried is the clients assigned before this beat that its conns do
	// not show yet (on their way); prevAssigned the assignments of the
	// interval before this beat. Both fixed when the beat is observed.
	carried, prevAssigned int64
	rooms                 []roomCount // the beat's room_conns
}

// roomCount is one room of a gateway's room_conns: n viewers by the beat,
// assigned more by this process since.
type roomCount struct {
	g        *gateway
	room     protocol.Room
	n        int
	assigned atomic.Int64
}

// New validates cfg and fills its defaults.
func New(cfg Config) (*Server, error) {
	if cfg.NC == nil {
		return nil, errors.New("cannot create dispatch: a NATS connection is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.StaleAfter < 0 {
		return nil, fmt.Errorf("cannot create dispatch: stale-after %v is negative", cfg.StaleAfter)
	}
	if cfg.LoadCeiling == 0 {
		cfg.LoadCeiling = DefaultLoadCeiling
	}
	if !(cfg.LoadCeiling > 0 && cfg.LoadCeiling <= 1) {
		return nil, fmt.Errorf("cannot create dispatch: load ceiling %v is not in (0,1]", cfg.LoadCeiling)
	}
	if cfg.Candidates <= 0 {
		cfg.Candidates = DefaultCandidates
	}
	if cfg.FillMargin == 0 {
		cfg.FillMargin = DefaultFillMargin
	}
	if !(cfg.FillMargin > 0) || math.IsInf(cfg.FillMargin, 0) {
		return nil, fmt.Errorf("cannot create dispatch: fill margin %v is not positive", cfg.FillMargin)
	}
	if cfg.AffinityMaxViewers == 0 {
		cfg.AffinityMaxViewers = DefaultAffinityMaxViewers
	}
	if cfg.AffinityMaxLoad == 0 {
		cfg.AffinityMaxLoad = DefaultAffinityMaxLoad
	}
	if !(cfg.AffinityMaxLoad > 0 && cfg.AffinityMaxLoad <= 1) {
		return nil, fmt.Errorf("cannot create dispatch: affinity max load %v is not in (0,1]", cfg.AffinityMaxLoad)
	}
	if cfg.Replicas <= 0 {
		cfg.Replicas = 1
	}
	if cfg.Reconnect.BaseMS <= 0 {
		cfg.Reconnect = ReconnectPolicy{BaseMS: 500, MaxMS: 15000, Jitter: 0.5}
	}
	if cfg.WaitRetry < 0 || cfg.DoorInterval < 0 {
		return nil, fmt.Errorf("cannot create dispatch: wait retry %v and door interval %v must not be negative", cfg.WaitRetry, cfg.DoorInterval)
	}
	if cfg.WaitRetry == 0 {
		cfg.WaitRetry = DefaultWaitRetry
	}
	if cfg.MaxStaleView == 0 {
		cfg.MaxStaleView = DefaultMaxStaleView
	}
	switch {
	case cfg.WaitJitter == 0:
		cfg.WaitJitter = DefaultWaitJitter
	case cfg.WaitJitter < 0:
		cfg.WaitJitter = 0
	case !(cfg.WaitJitter <= 1):
		return nil, fmt.Errorf("cannot create dispatch: wait jitter %v is not in [0,1]", cfg.WaitJitter)
	}
	if cfg.DoorInterval == 0 {
		cfg.DoorInterval = DefaultDoorInterval
	}
	if cfg.ID == "" {
		cfg.ID = fmt.Sprintf("dispatch-%08x", rand.Uint32())
	}
	if !protocol.ValidID(cfg.ID) {
		return nil, fmt.Errorf("cannot create dispatch: id %q is not 1-64 characters of A-Z a-z 0-9 _ -", cfg.ID)
	}
	s := &Server{
		cfg:    cfg,
		log:    cfg.Logger.With("role", "dispatch"),
		rooms:  map[protocol.Room][]*roomCount{},
		nowFn:  time.Now,
		randFn: rand.Float64,
	}
	var err error
	s.view, err = fleet.New(fleet.Config{
		NC: cfg.NC, Hosts: cfg.GatewayHosts, StaleAfter: cfg.StaleAfter, Logger: s.log, OnBeat: s.apply,
		// Through s.nowFn, which tests replace after New.
		Now: func() time.Time { return s.nowFn() },
	})
	if err != nil {
		return nil, fmt.Errorf("cannot create dispatch: %w", err)
	}
	return s, nil
}

// Start subscribes to beats and starts publishing the door's counts and
// watching dispatch's own NATS connection.
func (s *Server) Start(ctx context.Context) error {
	if err := s.view.Start(ctx); err != nil {
		return err
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.cancel = cancel
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.publishDoor(runCtx)
	}()
	s.feedOK.Store(s.nowFn().UnixNano())
	if s.cfg.MaxStaleView > 0 {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.watchFeed(runCtx)
		}()
	}
	return nil
}

// feedCheck is how often dispatch pings its NATS connection, and how long
// a ping may take before the connection counts as in trouble.
const feedCheck = 500 * time.Millisecond

// watchFeed pings the NATS connection every feedCheck and keeps feedOK and
// feedDown current.
func (s *Server) watchFeed(ctx context.Context) {
	t := time.NewTicker(feedCheck)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.feed(s.cfg.NC.IsConnected() && s.cfg.NC.FlushTimeout(feedCheck) == nil)
	}
}

// feed records whether dispatch's NATS connection answered a ping just now.
func (s *Server) feed(ok bool) {
	now := s.nowFn()
	switch {
	case ok:
		lastOK := time.Unix(0, s.feedOK.Swap(now.UnixNano()))
		if s.feedDown.Swap(false) {
			// The gateways' beats of the outage went nowhere and their
			// next ones are up to an interval away: age beats as if the
			// outage had not happened until each gateway has beaten again
			// (else every gateway looks silent at once, and dispatch
			// answers "no gateway" to a healthy fleet). An outage longer
			// than MaxStaleView is the fleet's.
			out := now.Sub(lastOK)
			if out <= s.cfg.MaxStaleView {
				s.back.Store(now.UnixNano())
				s.excused.Store(int64(out))
			}
			s.log.Info("nats answers again: the fleet view is live again", "outage", out.Round(time.Millisecond))
		} else if s.excused.Load() > 0 && !s.owed(now) {
			s.excused.Store(0)
		}
	case !s.feedDown.Swap(true):
		s.log.Warn("nats does not answer: answering from the last good view of the fleet",
			"as_of", time.Unix(0, s.feedOK.Load()).Format(time.RFC3339Nano), "for_at_most", s.cfg.MaxStaleView)
	}
}

// viewNow is the time beats are aged against: now, or, while dispatch's own
// NATS connection is in trouble, the last time it answered, for at most
// MaxStaleView (then now again: an outage that long is the fleet's). After
// such an outage, until every gateway has beaten again, now less the
// outage.
func (s *Server) viewNow() time.Time {
	now := s.nowFn()
	if !s.feedDown.Load() {
		return now.Add(-time.Duration(s.excused.Load()))
	}
	ok := time.Unix(0, s.feedOK.Load())
	if now.Sub(ok) > s.cfg.MaxStaleView {
		return now
	}
	return ok
}

// owed reports whether some gateway whose latest beat came before the last
// outage ended is still fresh by the excused clock: its next beat is
// still owed.
func (s *Server) owed(now time.Time) bool {
	back := time.Unix(0, s.back.Load())
	at := now.Add(-time.Duration(s.excused.Load()))
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, g := range s.order {
		if g.At.Before(back) && g.Fresh(at) {
			return true
		}
	}
	return false
}

// StaleView reports whether dispatch answers from its last good view of
// the fleet (its NATS connection is in trouble).
func (s *Server) StaleView() bool {
	return s.feedDown.Load() && s.nowFn().Sub(time.Unix(0, s.feedOK.Load())) <= s.cfg.MaxStaleView
}

// Close unsubscribes and stops publishing the door's counts. Idempotent.
func (s *Server) Close() error {
	if s.cancel != nil {
		s.cancel()
	}
	s.wg.Wait()
	return s.view.Close()
}

// Observe records a beat, replacing the gateway's previous one and resetting
// what this process counted as sent to it since (the new beat's conns
// include those clients). Start feeds it from NATS; a process that runs a
// gateway itself, and tests, may call it.
func (s *Server) Observe(b bus.Beat) { s.view.Observe(b, s.nowFn()) }

// apply brings the dispatch view up to date with a beat the fleet view
// took, and drops the gateways it forgot. The fleet view calls it under its
// own lock, one beat at a time, so that s.order lists exactly the gateways
// the fleet view keeps, in the same order.
func (s *Server) apply(fg fleet.Gateway, forgotten []fleet.Gateway) {
	b := fg.Beat
	g := &gateway{Gateway: fg}
	g.load = b.Load
	if math.IsNaN(g.load) || g.load > 1 {
		g.load = 1
	}
	g.load = max(0, g.load)
	capConns := b.MaxConns
	if capConns <= 0 {
		capConns = b.Capacity.Conns
	}
	if capConns <= 0 {
		capConns = fallbackMaxConns
	}
	g.perConn = float64(s.cfg.Replicas) / float64(capConns)
	g.eligible = b.State == bus.StateActive && g.load < s.cfg.LoadCeiling
	if len(b.RoomConns) > 0 {
		g.rooms = make([]roomCount, 0, len(b.RoomConns))
		for r, n := range b.RoomConns {
			g.rooms = append(g.rooms, roomCount{g: g, room: protocol.Room(r), n: n})
		}
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if i, ok := s.find(b.ID); ok {
		old := s.order[i]
		if old.Beat.Started == b.Started {
			assigned := old.assigned.Load()
			seen := int64(max(0, b.Conns-old.Beat.Conns) / s.cfg.Replicas)
			g.carried = min(max(0, assigned+old.carried-seen), assigned+old.prevAssigned)
			g.prevAssigned = assigned
		}
		s.unindex(old)
		s.order[i] = g
	} else {
		s.order = slices.Insert(s.order, i, g)
	}
	for i := range g.rooms {
		s.rooms[g.rooms[i].room] = append(s.rooms[g.rooms[i].room], &g.rooms[i])
	}
	for _, f := range forgotten {
		if i, ok := s.find(f.Beat.ID); ok {
			s.unindex(s.order[i])
			s.order = slices.Delete(s.order, i, i+1)
		}
	}
}

// find returns the index of gateway id in s.order, or where it would go.
// The caller holds s.mu.
func (s *Server) find(id string) (int, bool) {
	return sort.Find(len(s.order), func(i int) int { return strings.Compare(id, s.order[i].Beat.ID) })
}

// unindex removes g's rooms from s.rooms. The caller holds s.mu.
func (s *Server) unindex(g *gateway) {
	for i := range g.rooms {
		rc := &g.rooms[i]
		list := s.rooms[rc.room]
		for j, x := range list {
			if x == rc {
				// Order does not matter: rank breaks ties by id.
				last := len(list) - 1
				list[j], list[last] = list[last], nil
				list = list[:last]
				break
			}
		}
		if len(list) == 0 {
			delete(s.rooms, rc.room)
		} else {
			s.rooms[rc.room] = list
		}
	}
}

// Gateways returns the gateways with a fresh beat, in any state, by id.
func (s *Server) Gateways() []bus.Beat {
	gws := s.view.Fresh(s.viewNow())
	out := make([]bus.Beat, len(gws))
	for i, g := range gws {
		out[i] = g.Beat
	}
	return out
}

// Handler serves GET /v1/dispatch and GET /v1/gateways.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/dispatch", s.serveDispatch)
	mux.HandleFunc("GET /v1/gateways", func(w http.ResponseWriter, r *http.Request) {
		protocol.WriteJSON(w, http.StatusOK, struct {
			Gateways []bus.Beat `json:"gateways"`
		}{s.Gateways()})
	})
	return mux
}

func (s *Server) serveDispatch(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	room, err := protocol.ParseRoom(q.Get("room"))
	if err != nil {
		protocol.WriteError(w, protocol.Errorf(http.StatusBadRequest, protocol.CodeInvalidRoom, "room", err.Error()))
		return
	}
	kind, perr := requestKindOf(q)
	if perr != nil {
		protocol.WriteError(w, perr)
		return
	}
	s.requests[kind].Add(1)
	c := s.Choose(room)
	switch {
	case len(c) > 0:
		s.answered.Add(1)
		s.door.count(kind, outAdmitted)
		protocol.WriteJSON(w, http.StatusOK, Answer{Gateways: c, Reconnect: s.cfg.Reconnect})
	case s.anyFresh():
		// Gateways beat but none has headroom: the fleet is full, and the
		// autoscaler, which counts this join at the door, is growing it.
		s.waited.Add(1)
		s.door.count(kind, outWaited)
		protocol.WriteJSON(w, http.StatusOK, Answer{Gateways: []Candidate{}, RetryAfterMS: s.waitMS(), Reconnect: s.cfg.Reconnect})
	default:
		s.refused.Add(1)
		s.door.count(kind, outRefused)
		protocol.WriteError(w, protocol.Errorf(http.StatusServiceUnavailable, protocol.CodeUnavailable, "", "no gateway is available; retry shortly").WithRetry(1000))
	}
}

// requestKindOf reads the optional since= and attempt= of a dispatch
// request: since= (a reliable sequence) marks a viewer that already follows
// the room, attempt= (1, 2, …) a client asking again for the same join.
func requestKindOf(q url.Values) (requestKind, *protocol.Error) {
	kind := kindJoin
	if v, ok := q["attempt"]; ok {
		n, err := strconv.Atoi(v[0])
		if err != nil || n < 0 || n > maxAttempt || len(v) > 1 {
			return 0, protocol.Errorf(http.StatusBadRequest, protocol.CodeInvalidField, "attempt", "attempt must be a whole number from 0 to 1000000, given once")
		}
		if n > 0 {
			kind = kindRetry
		}
	}
	if v, ok := q["since"]; ok {
		if _, err := strconv.ParseUint(v[0], 10, 64); err != nil || len(v) > 1 {
			return 0, protocol.Errorf(http.StatusBadRequest, protocol.CodeInvalidField, "since", "since must be a reliable sequence (a whole number ≥ 0), given once")
		}
		kind = kindMove
	}
	return kind, nil
}

// waitMS draws the retry_after_ms of a wait answer.
func (s *Server) waitMS() int64 {
	d := float64(s.cfg.WaitRetry) * (1 - s.cfg.WaitJitter*s.randFn())
	return max(1, time.Duration(d).Milliseconds())
}

// anyFresh reports whether some gateway beats, in any state.
func (s *Server) anyFresh() bool {
	now := s.viewNow()
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, g := range s.order {
		if g.Fresh(now) {
			return true
		}
	}
	return false
}
