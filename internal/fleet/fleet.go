// Package fleet keeps what the gateways' load beats say about the fleet.
//
// Every gateway publishes a bus.Beat on bus.BeatSubject(id) each beat
// interval. A View subscribes to them all (bus.BeatWildcard), refuses the
// beats that do not have the documented shape (bus.DecodeBeat), keeps the
// latest beat of every gateway with the local time it arrived, tells fresh
// gateways from silent ones by one rule (Gateway.Fresh: silent for
// StaleBeats of its own intervals is gone), forgets those silent for long,
// and hands out snapshots sorted by id. Dispatch, the autoscaler and the
// load generator read the fleet through it; the admin statistics read
// dispatch's snapshot of it.
package fleet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"golang.org/x/time/rate"

	"github.com/liveroom/liveroom/internal/bus"
)

const (
	// DefaultInterval is assumed for a beat without interval_ms.
	DefaultInterval = time.Second
	// StaleBeats is how many beat intervals of silence make a gateway gone:
	// dispatch stops offering it, the autoscaler counts it as silent.
	StaleBeats = 3
	// DefaultForgetBeats: a gateway silent this many stale windows (30 s at
	// the default interval) is forgotten, unless Config.ForgetAfter says
	// otherwise. Gateway ids are per process, so a fleet that restarts
	// leaves ids behind.
	DefaultForgetBeats = 10
)

// StaleAfter is the silence after which a gateway beating every interval
// is gone: StaleBeats × interval, DefaultInterval when interval is not
// positive.
func StaleAfter(interval time.Duration) time.Duration {
	if interval <= 0 {
		interval = DefaultInterval
	}
	return StaleBeats * interval
}

// Gateway is a gateway's latest beat and when it arrived. A value: the View
// hands out copies.
type Gateway struct {
	Beat bus.Beat
	// At is the local time the beat arrived: immune to clock skew between
	// hosts, unlike Beat.TS.
	At time.Time
	// First is when the first beat of this gateway process (this
	// Beat.Started) arrived.
	First time.Time
	// Stale is the silence after At after which the gateway is gone
	// (Config.StaleAfter, or StaleAfter of the beat's interval).
	Stale time.Duration
}

// Fresh reports whether g's latest beat is recent enough at now for g to
// count as alive. A pointer receiver although Gateway is a value: inlined
// into dispatch's answer path, a value receiver copied the whole beat per
// gateway per answer.
func (g *Gateway) Fresh(now time.Time) bool { return now.Sub(g.At) < g.Stale }

// Config configures a View. Zero values take the defaults given.
type Config struct {
	// NC carries the beats. Required by Start; a View fed only through
	// Observe needs none.
	NC *nats.Conn
	// Hosts, when not empty, lists the hosts a gateway URL may name (see
	// bus.BeatPolicy); beats naming another host are refused.
	Hosts []string
	// StaleAfter, when set, overrides the silence after which a gateway is
	// gone. Default: StaleAfter of the interval each gateway's beats carry.
	StaleAfter time.Duration
	// ForgetAfter is how long a silent gateway is remembered (listed by All,
	// found by Get). Default: DefaultForgetBeats × its Stale.
	ForgetAfter time.Duration
	// OnBeat, when set, is called for every beat the View takes, after it
	// took it and forgot the gateways silent too long (forgotten). Calls
	// come one at a time, in the order the View took the beats, with the
	// View's lock held: OnBeat must not call the View, and whatever lock it
	// takes comes after the View's.
	OnBeat func(g Gateway, forgotten []Gateway)
	// Now is the clock of the beats that arrive on NC. Default time.Now.
	Now func() time.Time
	// Logger warns of refused beats (a few a second at most). Default
	// slog.Default().
	Logger *slog.Logger
}

// View keeps the latest beat of every gateway. Its methods are safe for
// concurrent use. Start it at most once and Close it once it is started.
type View struct {
	cfg Config
	log *slog.Logger

	// refused counts beats refused for their shape; refusedLog keeps their
	// warnings to a few a second.
	refused    atomic.Int64
	refusedLog *rate.Limiter

	mu    sync.RWMutex
	order []Gateway // by Beat.ID

	sub       *nats.Subscription
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// New validates cfg and fills its defaults.
func New(cfg Config) (*View, error) {
	if cfg.StaleAfter < 0 || cfg.ForgetAfter < 0 {
		return nil, fmt.Errorf("cannot create the fleet view: stale-after %v and forget-after %v must not be negative", cfg.StaleAfter, cfg.ForgetAfter)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &View{cfg: cfg, log: cfg.Logger, refusedLog: rate.NewLimiter(1, 5)}, nil
}

// Start subscribes to the beats and returns once the server has the
// subscription, so that no beat published after Start returns is missed.
// ctx bounds the start only; the View reads beats until Close.
func (v *View) Start(ctx context.Context) error {
	if v.cfg.NC == nil {
		return errors.New("cannot subscribe to beats: no NATS connection")
	}
	// A synchronous subscription read by a goroutine of our own, rather
	// than a callback on the client's: Close waits for that goroutine, so
	// no beat is taken (and no OnBeat called) after Close returns.
	sub, err := v.cfg.NC.SubscribeSync(bus.BeatWildcard)
	if err != nil {
		return fmt.Errorf("cannot subscribe to beats: %w", err)
	}
	fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := v.cfg.NC.FlushWithContext(fctx); err != nil {
		_ = sub.Unsubscribe()
		return fmt.Errorf("cannot subscribe to beats: %w", err)
	}
	// A credential that may not read beats gets its refusal before the
	// flush's answer: say so now rather than see an empty fleet for ever.
	if err := v.cfg.NC.LastError(); errors.Is(err, nats.ErrPermissionViolation) && strings.Contains(err.Error(), `"`+bus.BeatWildcard+`"`) {
		_ = sub.Unsubscribe()
		return fmt.Errorf("cannot subscribe to beats: %w", err)
	}
	v.sub = sub
	runCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	v.cancel = stop
	v.wg.Add(1)
	go func() {
		defer v.wg.Done()
		v.read(runCtx, sub)
	}()
	return nil
}

// read takes the beats of sub until ctx ends or sub does (its connection
// closed).
func (v *View) read(ctx context.Context, sub *nats.Subscription) {
	for {
		m, err := sub.NextMsgWithContext(ctx)
		switch {
		case err == nil:
			v.take(m)
		case ctx.Err() != nil || !sub.IsValid() || errors.Is(err, nats.ErrConnectionClosed):
			return
		case errors.Is(err, nats.ErrPermissionViolation):
			v.log.Error("cannot read beats", "err", err)
			return
		default:
			// ErrSlowConsumer: beats were dropped while we were behind;
			// the next ones bring every gateway up to date.
		}
	}
}

func (v *View) take(m *nats.Msg) {
	b, err := bus.DecodeBeat(m.Subject, m.Data, bus.BeatPolicy{Hosts: v.cfg.Hosts})
	if err != nil {
		v.refused.Add(1)
		if v.refusedLog.Allow() {
			v.log.Warn("beat refused", "err", err)
		}
		return
	}
	v.Observe(b, v.cfg.Now())
}

// Close stops reading beats, waits for the reader and unsubscribes.
// Idempotent; the View's snapshot stays readable.
func (v *View) Close() error {
	var err error
	v.closeOnce.Do(func() {
		if v.cancel != nil {
			v.cancel()
		}
		v.wg.Wait()
		if v.sub != nil {
			if uerr := v.sub.Unsubscribe(); uerr != nil && !errors.Is(uerr, nats.ErrConnectionClosed) && !errors.Is(uerr, nats.ErrBadSubscription) {
				err = fmt.Errorf("cannot unsubscribe from beats: %w", uerr)
			}
		}
	})
	return err
}

// Refused returns how many beats arriving on NC were refused for their
// shape.
func (v *View) Refused() int64 { return v.refused.Load() }

// Observe takes b, arrived at at, as its gateway's latest beat, forgets the
// gateways silent too long at at, and returns what it recorded. A beat
// whose id is not a gateway id is ignored (ok false). Start feeds it; a
// process that beats itself, and tests, may call it.
func (v *View) Observe(b bus.Beat, at time.Time) (g Gateway, ok bool) {
	if !bus.ValidGatewayID(b.ID) {
		return Gateway{}, false
	}
	g = Gateway{Beat: b, At: at, First: at, Stale: v.cfg.StaleAfter}
	if g.Stale <= 0 {
		g.Stale = StaleAfter(time.Duration(b.IntervalMS) * time.Millisecond)
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	i, found := v.find(b.ID)
	if found {
		if old := v.order[i]; old.Beat.Started == b.Started {
			g.First = old.First
		}
		v.order[i] = g
	} else {
		v.order = append(v.order, Gateway{})
		copy(v.order[i+1:], v.order[i:])
		v.order[i] = g
	}
	// One pass per beat, under the lock the beat takes anyway; by index,
	// and copying only when a gateway goes: a Gateway is a few hundred
	// bytes, and copying every one per beat tripled the cost of a beat at
	// 256 gateways (BenchmarkObserve in dispatch).
	var forgotten []Gateway
	for i := range v.order {
		if v.forgotten(&v.order[i], at) {
			forgotten = append(forgotten, v.order[i])
		}
	}
	if len(forgotten) > 0 {
		v.order = slices.DeleteFunc(v.order, func(o Gateway) bool { return v.forgotten(&o, at) })
	}
	if v.cfg.OnBeat != nil {
		v.cfg.OnBeat(g, forgotten)
	}
	return g, true
}

// find returns the index of gateway id in v.order, or where it would go.
// The caller holds v.mu.
func (v *View) find(id string) (int, bool) {
	return sort.Find(len(v.order), func(i int) int { return strings.Compare(id, v.order[i].Beat.ID) })
}

// forgotten reports whether g has been silent too long at now.
func (v *View) forgotten(g *Gateway, now time.Time) bool {
	after := v.cfg.ForgetAfter
	if after <= 0 {
		after = DefaultForgetBeats * g.Stale
	}
	return now.Sub(g.At) > after
}

// Get returns the latest beat of gateway id, fresh or not, unless it was
// forgotten.
func (v *View) Get(id string) (Gateway, bool) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	i, ok := v.find(id)
	if !ok {
		return Gateway{}, false
	}
	return v.order[i], true
}

// Fresh returns the gateways whose latest beat is fresh at now, in any
// state, by id.
func (v *View) Fresh(now time.Time) []Gateway {
	return v.list(func(g *Gateway) bool { return g.Fresh(now) })
}

// All returns every gateway not silent too long at now, fresh or not, by id.
func (v *View) All(now time.Time) []Gateway {
	return v.list(func(g *Gateway) bool { return !v.forgotten(g, now) })
}

func (v *View) list(keep func(*Gateway) bool) []Gateway {
	v.mu.RLock()
	defer v.mu.RUnlock()
	out := make([]Gateway, 0, len(v.order))
	for i := range v.order {
		if keep(&v.order[i]) {
			out = append(out, v.order[i])
		}
	}
	return out
}
