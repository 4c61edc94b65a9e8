// Package autoscale turns the gateways' load beats into a gateway count and
// acts on it.
//
// A Scaler subscribes to the beats (bus.BeatSubject) and to what dispatch
// counts at the door (bus.DoorSubject), and once a second calls Decide, a
// pure function of the beats, the door's join rate, the announced
// audiences, the actuator's members, the measured ready time of a new
// gateway, the capacity model and its own short memory (see Decide for the
// rules). It
// then acts through an Actuator: Process (local child processes of this
// binary), Kubernetes (the scale subresource of a Deployment) or DryRun.
// Scale-out is immediate. Scale-in is one gateway at a time: the Scaler
// asks the gateway to drain over its control subject, waits until it stops
// beating, and only then has the actuator remove it. Every decision that
// acts, and every change of reason, is logged with its inputs, kept for
// GET /v1/autoscale/decisions and counted in liveroom_autoscale_*.
package autoscale

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/liveroom/liveroom/internal/announce"
	"github.com/liveroom/liveroom/internal/bus"
	"github.com/liveroom/liveroom/internal/fleet"
)

// forgetAfter is how long a silent gateway is remembered: long enough to
// count it as silent in the decisions and metrics (Policy.LostGrace), short
// enough that a fleet with churn does not grow the map for ever.
const forgetAfter = 2 * time.Minute

// Config configures a Scaler. Zero values take the documented defaults.
type Config struct {
	// NC carries the beats and the drain commands. Required.
	NC *nats.Conn
	// Actuator starts and removes gateways. Required.
	Actuator Actuator
	// Policy is the scaling policy (bounds, capacity, time constants).
	Policy Policy
	// Interval is the time between two decisions. Default 1s.
	Interval time.Duration
	// Warmup is the wait before the first decision, so that every beating
	// gateway has been heard (a gateway not heard yet would be started
	// again). Default 3s, three beat intervals; negative means none.
	Warmup time.Duration
	// DrainTimeout bounds the wait for a drained gateway to stop beating;
	// after it the actuator removes the gateway anyway. Default 5m.
	DrainTimeout time.Duration
	// History is how many decisions GET /v1/autoscale/decisions keeps.
	// Default 200.
	History int
	// Logger; default slog.Default().
	Logger *slog.Logger
	// Announcements, when set, returns the announced audiences not yet
	// expired at now (announce.Store.List).
	Announcements func(now time.Time) []announce.Announcement
}

// Scaler is the autoscaler. Start it once, Close it once; its methods are
// safe for concurrent use.
type Scaler struct {
	cfg   Config
	log   *slog.Logger
	fleet *fleet.View // the gateways' beats
	door  Door
	ready readyClock // owned by the loop goroutine, under mu
	dry   bool
	met   *scalerMetrics

	doorSub *nats.Subscription
	cancel  context.CancelFunc
	wg      sync.WaitGroup

	mu        sync.Mutex
	state     State // owned by the loop goroutine; under mu for tests
	latest    Decision
	history   []Decision // oldest first
	lastLog   Decision
	removing  string
	closeOnce sync.Once
}

// New validates cfg and fills its defaults.
func New(cfg Config) (*Scaler, error) {
	if cfg.NC == nil {
		return nil, errors.New("cannot create autoscaler: a NATS connection is required")
	}
	if cfg.Actuator == nil {
		return nil, errors.New("cannot create autoscaler: an actuator is required")
	}
	cfg.Policy = cfg.Policy.WithDefaults()
	if err := cfg.Policy.Capacity.Validate(); err != nil {
		return nil, fmt.Errorf("cannot create autoscaler: %w", err)
	}
	if cfg.Policy.Max < cfg.Policy.Min {
		return nil, fmt.Errorf("cannot create autoscaler: max %d is below min %d", cfg.Policy.Max, cfg.Policy.Min)
	}
	setDur(&cfg.Interval, time.Second)
	if cfg.Warmup == 0 {
		cfg.Warmup = 3 * time.Second
	}
	setDur(&cfg.DrainTimeout, 5*time.Minute)
	if cfg.History <= 0 {
		cfg.History = 200
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	_, dry := cfg.Actuator.(*DryRun)
	s := &Scaler{cfg: cfg, log: cfg.Logger.With("component", "autoscale"), dry: dry}
	var err error
	// The same checks as dispatch (fleet.View refuses beats of the wrong
	// shape): a forged beat must not steer the fleet's size either.
	if s.fleet, err = fleet.New(fleet.Config{NC: cfg.NC, ForgetAfter: forgetAfter, Logger: s.log}); err != nil {
		return nil, fmt.Errorf("cannot create autoscaler: %w", err)
	}
	s.met = newScalerMetrics(s)
	return s, nil
}

// Policy returns the policy in force, defaults filled in.
func (s *Scaler) Policy() Policy { return s.cfg.Policy }

// Start subscribes to the beats and starts deciding every Interval, the
// first time after Warmup, so that the fleet's beats have arrived.
func (s *Scaler) Start(ctx context.Context) error {
	if err := s.fleet.Start(ctx); err != nil {
		return err
	}
	var err error
	s.doorSub, err = s.cfg.NC.Subscribe(bus.DoorSubject, func(m *nats.Msg) {
		var r bus.DoorReport
		if json.Unmarshal(m.Data, &r) == nil {
			s.door.Observe(r, time.Now())
		}
	})
	if err != nil {
		_ = s.fleet.Close()
		return fmt.Errorf("cannot subscribe to door reports: %w", err)
	}
	s.mu.Lock()
	s.ready.from = time.Now()
	s.mu.Unlock()
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.cancel = cancel
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.loop(runCtx)
	}()
	p := s.cfg.Policy
	s.log.Info("autoscaler started", "min", p.Min, "max", p.Max, "spare", p.Spare, "conns", p.Capacity.Conns, "cpu", p.Capacity.CPU,
		"bytes_out", p.Capacity.BytesOut, "msgs_out", p.Capacity.MsgsOut, "target", p.Capacity.Target,
		"ready_time", p.ReadyTime, "stabilization", p.Stabilization, "actuator", fmt.Sprintf("%T", s.cfg.Actuator))
	return nil
}

// Close stops deciding and waits for the loop, the beat reader and any
// scale-in under way (which is abandoned: a gateway already told to drain
// goes on draining). Idempotent.
func (s *Scaler) Close() error {
	var err error
	s.closeOnce.Do(func() {
		if s.cancel != nil {
			s.cancel()
		}
		s.wg.Wait()
		err = s.fleet.Close()
		if s.doorSub != nil {
			_ = s.doorSub.Unsubscribe()
		}
	})
	return err
}

func (s *Scaler) loop(ctx context.Context) {
	if s.cfg.Warmup > 0 {
		t := time.NewTimer(s.cfg.Warmup)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		s.Tick(ctx, time.Now())
	}
	tk := time.NewTicker(s.cfg.Interval)
	defer tk.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tk.C:
		}
		s.Tick(ctx, time.Now())
	}
}

// Tick makes one decision at now and acts on it. The loop calls it every
// Interval; tests may call it directly instead of Start's loop.
func (s *Scaler) Tick(ctx context.Context, now time.Time) Decision {
	actx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	members, err := s.cfg.Actuator.Members(actx)
	if err != nil {
		// Without the members, gateways being started are unknown: deciding
		// now could start them twice.
		s.met.actuatorErrors.WithLabelValues("members").Inc()
		s.log.Warn("autoscale: cannot list the actuator's gateways; no decision this time", "err", err)
		return Decision{}
	}
	var anns []announce.Announcement
	if s.cfg.Announcements != nil {
		anns = s.cfg.Announcements(now)
	}
	s.mu.Lock()
	s.ready.observe(members, s.fleet, s.cfg.Policy.StartTimeout)
	in := Inputs{
		Policy:        s.cfg.Policy,
		Gateways:      loads(s.fleet.All(now)),
		Members:       members,
		AllManaged:    s.dry,
		Removing:      s.removing,
		ReadyTime:     s.ready.estimate(),
		Tick:          s.cfg.Interval,
		Door:          s.door.Figures(now),
		Announcements: anns,
	}
	d := Decide(s.state, in, now)
	s.state = d.Next
	s.latest = d
	if d.Action == ActionScaleIn && !s.dry {
		s.removing = d.Remove
	}
	s.mu.Unlock()
	s.met.decisions.WithLabelValues(string(d.Action), d.Reason).Inc()
	s.record(d)

	switch d.Action {
	case ActionScaleOut:
		if err := s.cfg.Actuator.Add(actx, d.Add); err != nil {
			s.met.actuatorErrors.WithLabelValues("add").Inc()
			s.log.Error("autoscale: cannot start gateways", "n", d.Add, "err", err)
		}
	case ActionScaleIn:
		if s.dry {
			_ = s.cfg.Actuator.Remove(actx, d.Remove)
			break
		}
		var started time.Time
		for _, g := range in.Gateways {
			if g.ID == d.Remove {
				started = g.Started
			}
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.scaleIn(ctx, d.Remove, started)
		}()
	}
	return d
}

// record logs d when it acts or when its reason changed, and keeps it for
// the decisions endpoint. A decision that repeats the last one logged (as
// dry-run's do, tick after tick) is logged again only after a minute.
func (s *Scaler) record(d Decision) {
	s.mu.Lock()
	last := s.lastLog
	same := d.Action == last.Action && d.Reason == last.Reason && d.Current == last.Current &&
		d.Desired == last.Desired && d.Remove == last.Remove
	if same && (d.Action == ActionNone || d.At.Sub(last.At) < time.Minute) {
		s.mu.Unlock()
		return
	}
	s.lastLog = d
	s.history = append(s.history, d)
	if len(s.history) > s.cfg.History {
		s.history = append(s.history[:0], s.history[len(s.history)-s.cfg.History:]...)
	}
	s.mu.Unlock()
	f := d.Figures
	attrs := []any{
		"action", d.Action, "reason", d.Reason, "current", d.Current, "desired", d.Desired,
		"active", f.Active, "draining", f.Draining, "starting", f.Starting, "silent", f.Silent,
		"conns", int(f.Demand.Conns), "cpu", round2(f.Demand.CPU), "bytes_out", int64(f.Demand.BytesOut), "msgs_out", int64(f.Demand.MsgsOut),
		"join_rate", round2(f.JoinRate), "door_rate", round2(f.DoorRate), "beat_rate", round2(f.BeatRate), "waits", round2(f.Waits),
		"ready_time", round2(f.ReadyTime), "horizon", round2(f.Horizon), "lookahead", int(f.Lookahead), "announced", int(f.Announced),
		"need_conns", f.Need[DimConns], "need_cpu", f.Need[DimCPU], "need_bytes_out", f.Need[DimBytesOut], "need_msgs_out", f.Need[DimMsgsOut],
		"raw", f.Raw, "spare", f.Spare, "stable", f.Stable,
	}
	if d.Add > 0 {
		attrs = append(attrs, "add", d.Add)
	}
	if d.Remove != "" {
		attrs = append(attrs, "remove", d.Remove)
	}
	if len(f.Announcements) > 0 {
		attrs = append(attrs, "announcements", strings.Join(f.Announcements, "; "))
	}
	attrs = append(attrs, "why", d.Why)
	s.log.Info("autoscale decision", attrs...)
}

func round2(v float64) float64 { return float64(int64(v*100+0.5)) / 100 }

// scaleIn drains gateway id (whose beats carried started), waits until it
// stops beating, then has the actuator remove it.
func (s *Scaler) scaleIn(ctx context.Context, id string, started time.Time) {
	defer func() {
		s.mu.Lock()
		s.removing = ""
		s.mu.Unlock()
	}()
	t0 := time.Now()
	log := s.log.With("gateway", id)
	if err := s.drain(ctx, id); err != nil {
		if g, ok := s.fleet.Get(id); ok && g.Fresh(time.Now()) && g.Beat.State != bus.StateDraining {
			s.met.actuatorErrors.WithLabelValues("drain").Inc()
			log.Error("autoscale: scale-in abandoned: the gateway did not accept the drain", "err", err)
			return
		}
	}
	log.Info("autoscale: draining gateway before removing it")
	// gone: not beating any more, or beating from a new process (a
	// container restarted in the same pod after its drain).
	gone := func() bool {
		g, ok := s.fleet.Get(id)
		return !ok || !g.Fresh(time.Now()) || (!started.IsZero() && !time.UnixMilli(g.Beat.Started).Equal(started))
	}
	tk := time.NewTicker(250 * time.Millisecond)
	defer tk.Stop()
	for !gone() {
		if time.Since(t0) > s.cfg.DrainTimeout {
			log.Warn("autoscale: drained gateway still beats after the drain timeout; removing it anyway", "timeout", s.cfg.DrainTimeout)
			break
		}
		select {
		case <-ctx.Done():
			return
		case <-tk.C:
		}
	}
	drained := time.Since(t0)
	if err := s.cfg.Actuator.Remove(ctx, id); err != nil {
		s.met.actuatorErrors.WithLabelValues("remove").Inc()
		log.Error("autoscale: cannot remove drained gateway", "err", err)
		return
	}
	s.met.removed.Inc()
	log.Info("autoscale: gateway drained and removed", "drained_in", drained.Round(time.Millisecond), "took", time.Since(t0).Round(time.Millisecond))
}

// drain asks gateway id to drain over its control subject, three tries.
func (s *Scaler) drain(ctx context.Context, id string) error {
	var err error
	for try := 0; try < 3; try++ {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err = bus.SendControl(rctx, s.cfg.NC, id, bus.CmdDrain)
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	return fmt.Errorf("cannot drain gateway %s: %w", id, err)
}

// Latest returns the latest decision (zero before the first).
func (s *Scaler) Latest() Decision {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.latest
}

// Decisions returns the recent decisions that acted or changed reason,
// newest first.
func (s *Scaler) Decisions() []Decision {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Decision, 0, len(s.history))
	for i := len(s.history) - 1; i >= 0; i-- {
		out = append(out, s.history[i])
	}
	return out
}

// DecisionsPath is where Handler is served.
const DecisionsPath = "/v1/autoscale/decisions"

// DecisionsAnswer is the body of GET /v1/autoscale/decisions.
type DecisionsAnswer struct {
	Policy PolicyView `json:"policy"`
	// Latest is the latest decision, whatever it did.
	Latest *Decision `json:"latest,omitempty"`
	// Decisions are the recent decisions that acted or changed reason,
	// newest first.
	Decisions []Decision `json:"decisions"`
}

// PolicyView is the policy as served, durations in seconds.
type PolicyView struct {
	Min      int      `json:"min"`
	Max      int      `json:"max"`
	Spare    int      `json:"spare"`
	Capacity Capacity `json:"capacity"`
	// ReadyTime is the configured ready time, used until one is measured;
	// MeasuredReadyTime the measured one (0 before the first start).
	ReadyTime         float64 `json:"ready_time_s"`
	MeasuredReadyTime float64 `json:"measured_ready_time_s"`
	Stabilization     float64 `json:"stabilization_s"`
	JoinWindow        float64 `json:"join_window_s"`
	AnnounceLead      float64 `json:"announce_lead_s"`
	Actuator          string  `json:"actuator"`
}

// ReadyTime returns the measured time a new gateway took to be ready (the
// longest of the last three), 0 before the first.
func (s *Scaler) ReadyTime() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ready.estimate()
}

// Handler serves GET /v1/autoscale/decisions (DecisionsAnswer as JSON).
func (s *Scaler) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := s.cfg.Policy
		a := DecisionsAnswer{
			Policy: PolicyView{Min: p.Min, Max: p.Max, Spare: p.Spare, Capacity: p.Capacity, ReadyTime: p.ReadyTime.Seconds(),
				MeasuredReadyTime: s.ReadyTime().Seconds(), Stabilization: p.Stabilization.Seconds(), JoinWindow: p.JoinWindow.Seconds(),
				AnnounceLead: p.AnnounceLead.Seconds(), Actuator: actuatorName(s.cfg.Actuator)},
			Decisions: s.Decisions(),
		}
		if l := s.Latest(); !l.At.IsZero() {
			a.Latest = &l
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_ = json.NewEncoder(w).Encode(a)
	})
}

func actuatorName(a Actuator) string {
	switch a.(type) {
	case *DryRun:
		return "dry-run"
	case *Process:
		return "process"
	case *Kubernetes:
		return "kubernetes"
	}
	return fmt.Sprintf("%T", a)
}
