// Package bench is liveroom's load generator (`liveroom bench`): viewers
// that join through dispatch and read every frame, senders that post
// through the uplink, the gateways' own CPU and memory from their beats, and
// a bare TCP write floor to compare the gateway's cost per frame with.
//
// Viewers live in child processes (`liveroom bench --child`, each at most
// MaxPerChild connections) that the parent drives over JSON lines; their
// histograms (HDR, merged without loss) and exactly-once gift accounting
// are merged by the parent into one Report.
package bench

import (
	"context"
	"fmt"
	"io"
	"math"
	"sort"
	"sync"
	"time"
)

// Env is where a run writes and what it runs children with.
type Env struct {
	// Progress gets one line per second while the run goes on (stderr).
	Progress io.Writer
	// Stderr gets the children's own error output.
	Stderr io.Writer
}

// run is one bench execution: its agents, beats and senders.
type run struct {
	s      *Scenario
	env    Env
	agents []agent
	plan   [][]RoomPlan
	beats  *beatLog
	snd    *senders

	progMu   sync.Mutex
	progStop chan struct{}
	progDone chan struct{}
	phase    string
}

// Run executes the scenario and returns its report. The context bounds the
// whole run; every child and connection is gone when Run returns.
func Run(ctx context.Context, s Scenario, env Env) (*Report, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	if env.Progress == nil {
		env.Progress = io.Discard
	}
	if env.Stderr == nil {
		env.Stderr = io.Discard
	}
	r := &run{s: &s, env: env}
	if err := r.startAgents(ctx); err != nil {
		return nil, err
	}
	defer r.close()
	rep := &Report{Scenario: s, Started: time.Now().UTC()}
	if s.Floor {
		r.startProgress()
		r.setPhase("floor")
		f, err := runFloor(ctx, s.Exe, r.agents, r.plan, FloorSpec{Conns: s.Viewers, FPS: s.FloorFPS, Size: s.FloorSize, Duration: s.Duration, Warmup: Duration(time.Second)}, env.Stderr)
		r.stopProgress()
		if err != nil {
			return nil, err
		}
		rep.Floor = f
		rep.finish()
		return rep, nil
	}
	var err error
	if r.beats, err = startBeats(ctx, r.s); err != nil {
		return nil, err
	}
	if s.sends() {
		if r.snd, err = newSenders(ctx, r.s, r.s.RoomIDs()); err != nil {
			return nil, err
		}
	}
	r.startProgress()
	base := r.baseline(ctx)
	r.setPhase("connect")
	conn, err := r.connect(ctx, r.s.Viewers, float64(r.s.Viewers)/time.Duration(r.s.Ramp).Seconds())
	if err != nil {
		return nil, err
	}
	if r.beats != nil && conn.Welcomed > 0 {
		// The gateways' own CPU per join: what a join storm costs them,
		// apart from the bench's side of it on the same cores.
		r.beats.waitAfter(ctx, conn.doneAt.UnixMilli(), 3*time.Second)
		conn.GatewayCPUSeconds = r.beats.cpuAround(conn.startAt.UnixMilli(), conn.doneAt.UnixMilli())
		conn.GatewayCPUPerJoinUS = conn.GatewayCPUSeconds * 1e6 / float64(conn.Welcomed)
	}
	rep.Connect = conn
	w, err := r.window(ctx, time.Duration(s.Duration), base, conn.doneAt)
	if err != nil {
		return nil, err
	}
	rep.Window = w
	if s.FloorCompare && w.Gateway != nil && w.Gateway.FramesPerSec > 0 && w.Gateway.Conns > 0 {
		r.setPhase("floor")
		for _, a := range r.agents {
			_ = a.Drop(ctx)
		}
		fps := w.Gateway.FramesPerSec / float64(w.Gateway.Conns)
		size := int(math.Round(w.Gateway.FrameBytes))
		f, err := runFloor(ctx, s.Exe, r.agents, r.plan, FloorSpec{Conns: w.Gateway.Conns, FPS: fps, Size: max(size, 2), Duration: s.Duration, Warmup: Duration(time.Second)}, env.Stderr)
		if err != nil {
			return nil, fmt.Errorf("floor: %w", err)
		}
		rep.Floor = f
	}
	rep.finish()
	return rep, nil
}

// startRun starts the agents of s and follows the beats: the start of
// capacity's and flash's runs. Close the run when done, also on error.
func startRun(ctx context.Context, s *Scenario, env Env) (*run, error) {
	r := &run{s: s, env: env}
	if err := r.startAgents(ctx); err != nil {
		return r, err
	}
	var err error
	r.beats, err = startBeats(ctx, r.s)
	return r, err
}

func (r *run) startAgents(ctx context.Context) error {
	s := r.s
	spec := AgentSpec{
		DispatchURL: s.DispatchURL, Secret: s.Secret, Gateways: s.Gateways,
		ConnectConcurrency: s.ConnectConcurrency, DispatchBatch: s.DispatchBatch, NoCompress: s.NoCompress,
	}
	if s.Procs == 0 {
		spec.UserPrefix = "bv" + randHex(3) + "-"
		a, err := NewAgent(spec)
		if err != nil {
			return err
		}
		r.agents = []agent{localAgent{a}}
	} else {
		if s.Exe == "" {
			exe, err := selfExe()
			if err != nil {
				return err
			}
			s.Exe = exe
		}
		type started struct {
			i   int
			a   agent
			err error
		}
		ch := make(chan started, s.Procs)
		for i := range s.Procs {
			sp := spec
			sp.UserPrefix = fmt.Sprintf("bv%s-%d-", randHex(3), i)
			go func() {
				a, err := startChild(ctx, s.Exe, sp, r.env.Stderr)
				ch <- started{i, a, err}
			}()
		}
		r.agents = make([]agent, s.Procs)
		var errs []error
		for range s.Procs {
			st := <-ch
			if st.err != nil {
				errs = append(errs, st.err)
				continue
			}
			r.agents[st.i] = st.a
		}
		if len(errs) > 0 {
			r.closeAgents()
			return fmt.Errorf("cannot start children: %w", errs[0])
		}
	}
	r.plan = splitPlan(s.Plan(s.Viewers), len(r.agents))
	return nil
}

// close releases what the run holds: the progress line, the senders, the
// beats and the agents.
func (r *run) close() {
	r.stopProgress()
	if r.snd != nil {
		r.snd.close()
	}
	if r.beats != nil {
		r.beats.close()
	}
	r.closeAgents()
}

func (r *run) closeAgents() {
	var wg sync.WaitGroup
	for _, a := range r.agents {
		if a == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = a.Close()
		}()
	}
	wg.Wait()
	r.agents = nil
}

// baseline waits for a beat of every gateway (at most 3 s) and returns the
// latest ones: the RSS and connections before the bench connects.
func (r *run) baseline(ctx context.Context) map[string]GatewayFigures {
	out := map[string]GatewayFigures{}
	if r.beats == nil {
		return out
	}
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if len(r.beats.latest(time.Now().UnixMilli())) > 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	for id, b := range r.beats.latest(time.Now().UnixMilli()) {
		out[id] = GatewayFigures{ID: id, RSSBase: b.RSS, ConnsBase: b.Conns}
	}
	return out
}

// ConnectFigures are the connection phase's results.
type ConnectFigures struct {
	ConnectResult
	PerSec  float64        `json:"per_s"`
	Latency Summary        `json:"latency"`
	Errors  map[string]int `json:"errors,omitempty"`
	// GatewayCPUSeconds is the gateways' CPU over the connect phase (from
	// their beats), GatewayCPUPerJoinUS that per welcomed viewer.
	GatewayCPUSeconds   float64 `json:"gateway_cpu_seconds"`
	GatewayCPUPerJoinUS float64 `json:"gateway_cpu_us_per_join"`
	startAt, doneAt     time.Time
}

// connect opens n more viewers over the agents at rate per second in total
// (0 or Inf: as fast as possible).
func (r *run) connect(ctx context.Context, n int, rate float64) (ConnectFigures, error) {
	if math.IsInf(rate, 0) || math.IsNaN(rate) {
		rate = 0
	}
	plan := splitPlan(r.s.Plan(n), len(r.agents))
	f := ConnectFigures{startAt: time.Now()}
	var mu sync.Mutex
	err := eachAgent(r.agents, func(i int, a agent) error {
		res, err := a.Connect(ctx, ConnectCmd{Rooms: plan[i], Rate: rate / float64(len(r.agents))})
		mu.Lock()
		f.add(res)
		mu.Unlock()
		return err
	})
	f.doneAt = time.Now()
	if err != nil {
		return f, err
	}
	if f.Seconds > 0 {
		f.PerSec = float64(f.Welcomed) / f.Seconds
	}
	return f, nil
}

// WindowFigures are what was measured while the senders sent.
type WindowFigures struct {
	Seconds    float64            `json:"seconds"`
	Viewers    int64              `json:"viewers"`
	Deliveries map[string]int64   `json:"deliveries"`
	PerSec     map[string]float64 `json:"deliveries_per_s"`
	Delay      map[string]Summary `json:"delay"`
	FramesPerS float64            `json:"frames_per_s"`
	BytesPerS  float64            `json:"bytes_per_s"`
	MsgsPerFrm float64            `json:"msgs_per_frame"`
	// Wire is what the viewers read, Plain what the same frames take
	// uncompressed; Compressed is the share of frames that came compressed.
	Wire       ByteFigures            `json:"wire"`
	Plain      ByteFigures            `json:"plain"`
	Compressed float64                `json:"compressed_frame_share"`
	Dropped    int64                  `json:"conns_lost"`
	Reconnect  int64                  `json:"reconnect_frames"`
	Gifts      GiftCheck              `json:"gifts"`
	Live       LiveCheck              `json:"live_missing"`
	Sends      map[string]SendFigures `json:"sends,omitempty"`
	Gateways   []*GatewayFigures      `json:"gateways,omitempty"`
	Gateway    *GatewayFigures        `json:"gateway_total,omitempty"`
	BenchCPU   float64                `json:"bench_cpu_seconds"`
	Errors     map[string]int         `json:"errors,omitempty"`
	Examples   map[string]string      `json:"error_examples,omitempty"`
	ConnectLat Summary                `json:"connect_latency"`
	Hint429    int64                  `json:"uplink_429"`
	// HintClientGifts counts gifts refused because the server takes gifts
	// only from the platform's backend (403 client_gifts_disabled).
	HintClientGifts int64 `json:"uplink_client_gifts_disabled,omitempty"`
	delayHists      Hists
	agentReport     *AgentReport
}

// window opens a measurement window on every agent, sends for d, waits the
// grace period and collects everything.
func (r *run) window(ctx context.Context, d time.Duration, base map[string]GatewayFigures, connectedAt time.Time) (*WindowFigures, error) {
	var idle map[string]GatewayFigures
	if r.beats != nil && r.s.Viewers > 0 {
		// The first beat sampled Settle after the last connect shows the
		// memory of the idle connections.
		r.setPhase("settle")
		settle := time.Duration(r.s.Settle)
		for id, b := range r.beats.waitAfter(ctx, connectedAt.Add(settle).UnixMilli(), settle+5*time.Second) {
			idle = mapSet(idle, id, GatewayFigures{RSSConnected: b.RSS, ConnsIdle: b.Conns})
		}
	}
	r.setPhase("send")
	if err := eachAgent(r.agents, func(_ int, a agent) error { return a.Mark(ctx) }); err != nil {
		return nil, fmt.Errorf("cannot open the window: %w", err)
	}
	from := time.Now()
	if r.snd != nil {
		r.snd.reset()
		r.snd.run(ctx, d)
	} else {
		select {
		case <-ctx.Done():
		case <-time.After(d):
		}
	}
	sentUntil := time.Now()
	r.setPhase("grace")
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(time.Duration(r.s.Grace)):
	}
	total := &AgentReport{}
	var mu sync.Mutex
	if err := eachAgent(r.agents, func(_ int, a agent) error {
		rep, err := a.Report(ctx)
		if err != nil {
			return err
		}
		mu.Lock()
		total.merge(rep)
		mu.Unlock()
		return nil
	}); err != nil {
		return nil, fmt.Errorf("cannot collect the reports: %w", err)
	}
	secs := sentUntil.Sub(from).Seconds()
	w := &WindowFigures{
		Seconds: secs, Viewers: total.Open, Deliveries: total.Msgs, PerSec: map[string]float64{}, Delay: map[string]Summary{},
		Dropped: total.Dropped, Reconnect: total.Reconn, BenchCPU: total.CPUSeconds, Errors: total.Errors, Examples: total.Examples,
		delayHists: total.Delay, agentReport: total,
	}
	if total.Connect != nil {
		w.ConnectLat = total.Connect.Summary()
	}
	// Rates are over the send window: what arrives in the grace period was
	// sent inside it.
	var msgs int64
	for k, n := range total.Msgs {
		w.PerSec[k] = float64(n) / secs
		msgs += n
	}
	for k, h := range total.Delay {
		w.Delay[k] = h.Summary()
	}
	if secs > 0 {
		w.FramesPerS = float64(total.Frames) / secs
		w.BytesPerS = float64(total.Bytes) / secs
	}
	if total.Frames > 0 {
		w.MsgsPerFrm = float64(msgs) / float64(total.Frames)
		w.Compressed = float64(total.ZFrames) / float64(total.Frames)
	}
	w.Wire = byteFigures(total.Bytes, total.Frames, msgs, secs)
	w.Plain = byteFigures(total.Plain, total.Frames, msgs, secs)
	var acked []AckedGift
	if r.snd != nil {
		w.Sends = r.snd.figures(secs)
		acked = r.snd.ackedGifts()
		w.Hint429 = r.snd.n429.Load()
		w.HintClientGifts = r.snd.nClientGifts.Load()
	}
	w.Gifts = checkGifts(acked, total.Groups)
	w.Live = checkLive(total.Groups)
	if r.beats != nil {
		// Give the beat that covers the end of the window time to arrive.
		r.beats.waitAfter(ctx, sentUntil.UnixMilli(), 3*time.Second)
		figs := r.beats.window(from.UnixMilli(), sentUntil.UnixMilli())
		ids := map[string]bool{}
		for id := range figs {
			ids[id] = true
		}
		for id := range idle {
			ids[id] = true
		}
		for id := range ids {
			g := figs[id]
			if g == nil {
				g = &GatewayFigures{ID: id}
			}
			if b, ok := base[id]; ok {
				g.RSSBase, g.ConnsBase = b.RSSBase, b.ConnsBase
			}
			if b, ok := idle[id]; ok {
				g.RSSConnected, g.ConnsIdle = b.RSSConnected, b.ConnsIdle
				if dc := g.ConnsIdle - g.ConnsBase; dc > 0 && g.RSSBase > 0 {
					g.RSSPerConn = float64(g.RSSConnected-g.RSSBase) / float64(dc)
				}
			}
			w.Gateways = append(w.Gateways, g)
		}
		sort.Slice(w.Gateways, func(i, j int) bool { return w.Gateways[i].ID < w.Gateways[j].ID })
		w.Gateway = totalFigures(w.Gateways)
	}
	return w, nil
}

// ByteFigures are bytes read by the viewers: per second, per frame and per
// delivered message.
type ByteFigures struct {
	PerS     float64 `json:"per_s"`
	PerFrame float64 `json:"per_frame"`
	PerMsg   float64 `json:"per_message"`
}

func byteFigures(bytes, frames, msgs int64, secs float64) ByteFigures {
	var f ByteFigures
	if secs > 0 {
		f.PerS = float64(bytes) / secs
	}
	if frames > 0 {
		f.PerFrame = float64(bytes) / float64(frames)
	}
	if msgs > 0 {
		f.PerMsg = float64(bytes) / float64(msgs)
	}
	return f
}

func mapSet(m map[string]GatewayFigures, k string, v GatewayFigures) map[string]GatewayFigures {
	if m == nil {
		m = map[string]GatewayFigures{}
	}
	m[k] = v
	return m
}

// eachAgent runs f on every agent (with its index) concurrently, waits for
// all of them and returns the first error.
func eachAgent(agents []agent, f func(int, agent) error) error {
	errs := make(chan error, len(agents))
	for i, a := range agents {
		go func() { errs <- f(i, a) }()
	}
	var first error
	for range agents {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

func (r *run) setPhase(p string) {
	r.progMu.Lock()
	r.phase = p
	r.progMu.Unlock()
}

// startProgress prints one line a second: phase, connections, deliveries
// and frames per second, p99 delays so far, errors, sends.
func (r *run) startProgress() {
	r.progStop, r.progDone = make(chan struct{}), make(chan struct{})
	start := time.Now()
	go func() {
		defer close(r.progDone)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		var prev Progress
		var prevSent int64
		for {
			select {
			case <-r.progStop:
				return
			case <-t.C:
			}
			var p Progress
			for _, a := range r.agents {
				p.add(a.Progress())
			}
			var msgs, pmsgs int64
			for i := range p.Msgs {
				msgs += p.Msgs[i]
				pmsgs += prev.Msgs[i]
			}
			var sent int64
			if r.snd != nil {
				for c := range r.snd.ok {
					sent += r.snd.ok[c].Load()
				}
			}
			r.progMu.Lock()
			phase := r.phase
			r.progMu.Unlock()
			fmt.Fprintf(r.env.Progress, "[%4.0fs] %-7s conns %d/%d  deliveries/s %s  frames/s %s  p99 danmaku %s gift %s  errors %d  sent/s %d\n",
				time.Since(start).Seconds(), phase, p.Open, r.s.Viewers, human(float64(msgs-pmsgs)), human(float64(p.Frames-prev.Frames)),
				msDur(p.P99[clsDanmaku]), msDur(p.P99[clsGift]), p.Errors, max(sent-prevSent, 0))
			prev, prevSent = p, sent
		}
	}()
}

func (r *run) stopProgress() {
	if r.progStop == nil {
		return
	}
	select {
	case <-r.progStop:
	default:
		close(r.progStop)
	}
	<-r.progDone
}

func msDur(us int64) string {
	if us <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.0fms", float64(us)/1000)
}

func human(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.2fM", v/1e6)
	case v >= 1e4:
		return fmt.Sprintf("%.1fk", v/1e3)
	}
	return fmt.Sprintf("%.0f", v)
}
