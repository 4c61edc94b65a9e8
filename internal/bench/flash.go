package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/liveroom/liveroom/client"
	"github.com/liveroom/liveroom/internal/auth"
	"github.com/liveroom/liveroom/internal/bus"
	"github.com/liveroom/liveroom/internal/protocol"
)

// FlashPoint is one second of a flash crowd, as the bench saw it.
type FlashPoint struct {
	// T is seconds since the ramp began (negative while an announced show
	// is awaited).
	T float64 `json:"t"`
	// Joins is viewers welcomed in this second, Welcomed in total.
	Joins    int64 `json:"joins"`
	Welcomed int64 `json:"welcomed"`
	// Waits is dispatch's wait answers in this second, Waited the viewers
	// told to wait so far; Refused the joins that gave up so far.
	Waits   int64 `json:"waits"`
	Waited  int64 `json:"waited"`
	Refused int64 `json:"refused"`
	// Gateways is the active gateways beating, Conns their connections,
	// Fullest the highest share of its capacity any of them held.
	Gateways int     `json:"gateways"`
	Conns    int     `json:"conns"`
	Fullest  float64 `json:"fullest"`
}

// FlashReport is what `liveroom bench flash` measured.
type FlashReport struct {
	Scenario Scenario `json:"scenario"`
	// Policy is the autoscaler's, when the server serves its decisions.
	Policy *flashPolicy `json:"policy,omitempty"`
	// Announced is the id of the announcement made AnnounceAhead before
	// the ramp; ReadyAtStart the active gateways when the show began.
	Announced     string       `json:"announced,omitempty"`
	AnnounceAhead Duration     `json:"announce_ahead,omitempty"`
	ReadyAtStart  int          `json:"gateways_at_start,omitempty"`
	Timeline      []FlashPoint `json:"timeline"`
	// Joined, Waited (viewers told to wait at least once), Waits (wait
	// answers) and Refused (gave up after 30 s or failed) sum up the joins;
	// Connect is the time from a viewer's first request to dispatch to its
	// welcome.
	Joined  int     `json:"joined"`
	Waited  int64   `json:"waited"`
	Waits   int64   `json:"waits"`
	Refused int     `json:"refused"`
	Connect Summary `json:"connect"`
	// PeakGateways is the most active gateways at once; Need is
	// ceil(viewers ÷ (capacity × target)) from the policy; Fullest the
	// highest share of its capacity any gateway held.
	PeakGateways int     `json:"peak_gateways"`
	Need         int     `json:"need,omitempty"`
	Fullest      float64 `json:"fullest"`
	// Window is the gift window after the crowd arrived (gifts lost and
	// doubled), when the scenario sends.
	Window *WindowFigures `json:"window,omitempty"`
}

// flashPolicy is the part of GET /v1/autoscale/decisions the report uses.
type flashPolicy struct {
	Min      int `json:"min"`
	Max      int `json:"max"`
	Spare    int `json:"spare"`
	Capacity struct {
		Conns  int     `json:"conns"`
		Target float64 `json:"target"`
	} `json:"capacity"`
	MeasuredReadyTime float64 `json:"measured_ready_time_s"`
}

type flashFlags struct {
	ahead, hold time.Duration
}

// RunFlash is `liveroom bench flash`: a crowd of --viewers joins through
// dispatch over --ramp (0: all at once) while gifts flow, optionally after
// announcing it --announce-ahead before; it prints the timeline second by
// second (joins, waits, gateways, fullest gateway) and what the joins
// cost: waits, refusals, time from first try to welcome, the fleet at the
// peak against the need, then checks the gifts of a --duration window.
func RunFlash(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var ff flashFlags
	s, err := parseScenario(args, stderr, func(fs *flag.FlagSet) {
		fs.DurationVar(&ff.ahead, "announce-ahead", 0, "announce the crowd (the hot room expects --viewers) this long before the ramp; 0: no announcement")
		fs.DurationVar(&ff.hold, "hold", 10*time.Second, "keep watching the fleet this long after the last viewer got in")
	}, flashUsage)
	if err != nil {
		return err
	}
	if s.Viewers < 1 {
		return fmt.Errorf("flash: --viewers must be at least 1")
	}
	if err := s.Validate(); err != nil {
		return err
	}
	// Every viewer dials (and waits, when dispatch asks it to) in its own
	// worker, so that the arrivals keep their pace whatever the waits and
	// the handshakes: with fewer workers than viewers in flight, a slow
	// second is followed by a burst of the joins it held back, which the
	// door reads as a steeper storm than the one asked for.
	s.ConnectConcurrency = max(s.ConnectConcurrency, min(4096, (s.Viewers+s.Procs-1)/max(1, s.Procs)))
	r, err := startRun(ctx, &s, Env{Progress: stderr, Stderr: stderr})
	defer r.close()
	if err != nil {
		return err
	}
	if s.sends() {
		if r.snd, err = newSenders(ctx, r.s, r.s.RoomIDs()); err != nil {
			return err
		}
	}
	rep := &FlashReport{Scenario: s, Policy: readPolicy(ctx, &s)}
	base := r.baseline(ctx)
	start := time.Now()
	if ff.ahead > 0 {
		start = start.Add(ff.ahead)
		id, err := announceCrowd(ctx, &s, start)
		if err != nil {
			return err
		}
		rep.Announced, rep.AnnounceAhead = id, Duration(ff.ahead)
		fmt.Fprintf(stderr, "announced %s: %d viewers in %s at %s\n", id, s.Viewers, s.HotRoom(), start.Format(time.TimeOnly))
	}
	tl := r.startTimeline(start)
	if ff.ahead > 0 {
		select {
		case <-ctx.Done():
			tl.stop()
			return ctx.Err()
		case <-time.After(time.Until(start)):
		}
		rep.ReadyAtStart = tl.sample(time.Now()).Gateways
	}
	var sending sync.WaitGroup
	if r.snd != nil {
		sending.Go(func() { r.snd.run(ctx, time.Duration(s.Ramp)+ff.hold) })
	}
	conn, err := r.connect(ctx, s.Viewers, float64(s.Viewers)/time.Duration(s.Ramp).Seconds())
	if err != nil {
		tl.stop()
		return err
	}
	select {
	case <-ctx.Done():
	case <-time.After(ff.hold):
	}
	sending.Wait()
	rep.Timeline = tl.stop()
	rep.Joined, rep.Refused = conn.Welcomed, conn.Failed
	for _, p := range rep.Timeline {
		rep.PeakGateways = max(rep.PeakGateways, p.Gateways)
		rep.Fullest = max(rep.Fullest, p.Fullest)
		rep.Waited, rep.Waits = p.Waited, rep.Waits+p.Waits
	}
	if p := rep.Policy; p != nil && p.Capacity.Conns > 0 && p.Capacity.Target > 0 {
		rep.Need = int(math.Ceil(float64(s.Viewers)/(float64(p.Capacity.Conns)*p.Capacity.Target) - 1e-9))
	}
	if s.sends() {
		if rep.Window, err = r.window(ctx, time.Duration(s.Duration), base, conn.doneAt); err != nil {
			return err
		}
		rep.Connect = rep.Window.ConnectLat
	} else {
		total := &AgentReport{}
		for _, a := range r.agents {
			ar, err := a.Report(ctx)
			if err != nil {
				return err
			}
			total.merge(ar)
		}
		rep.Connect = total.Connect.Summary()
	}
	if s.JSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	return rep.writeTable(stdout)
}

// timeline samples the agents' progress and the beats once a second.
type timeline struct {
	r     *run
	start time.Time
	mu    sync.Mutex
	pts   []FlashPoint
	prev  Progress
	done  chan struct{}
	wg    sync.WaitGroup
}

func (r *run) startTimeline(start time.Time) *timeline {
	tl := &timeline{r: r, start: start, done: make(chan struct{})}
	tl.wg.Go(func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-tl.done:
				return
			case now := <-t.C:
				p := tl.sample(now)
				fmt.Fprintf(r.env.Progress, "[%5.1fs] joins/s %5d  waits/s %5d  welcomed %6d  refused %4d  gateways %3d  fullest %3.0f %%\n",
					p.T, p.Joins, p.Waits, p.Welcomed, p.Refused, p.Gateways, p.Fullest*100)
			}
		}
	})
	return tl
}

// sample records one point at now and returns it.
func (tl *timeline) sample(now time.Time) FlashPoint {
	var p Progress
	for _, a := range tl.r.agents {
		p.add(a.Progress())
	}
	tl.mu.Lock()
	defer tl.mu.Unlock()
	pt := FlashPoint{
		T: now.Sub(tl.start).Seconds(), Joins: p.Welcomed - tl.prev.Welcomed, Welcomed: p.Welcomed,
		Waits: p.Waits - tl.prev.Waits, Waited: p.Waited, Refused: p.Errors,
	}
	tl.prev = p
	ms := now.UnixMilli()
	for _, b := range tl.r.beats.latest(ms) {
		if b.State != bus.StateActive || ms-b.TS > 3*max(b.IntervalMS, 1000) {
			continue
		}
		pt.Gateways++
		pt.Conns += b.Conns
		if c := b.MaxConns; c > 0 {
			pt.Fullest = max(pt.Fullest, float64(b.Conns)/float64(c))
		}
	}
	tl.pts = append(tl.pts, pt)
	return pt
}

// stop ends the sampling with a last point taken now, so the timeline
// always ends with the fleet as the run left it, whatever the ticker's
// phase.
func (tl *timeline) stop() []FlashPoint {
	close(tl.done)
	tl.wg.Wait()
	tl.sample(time.Now())
	tl.mu.Lock()
	defer tl.mu.Unlock()
	return tl.pts
}

// adminToken is the scenario's admin token: AdminToken, or one minted with
// Secret, or a dev token from a dev-mode server.
func adminToken(ctx context.Context, s *Scenario) (string, error) {
	switch {
	case s.AdminToken != "":
		return s.AdminToken, nil
	case s.Secret != "":
		sg, err := auth.NewSigner([]byte(s.Secret))
		if err != nil {
			return "", err
		}
		return sg.Mint("bench-admin", "bench", protocol.RoleAdmin, time.Hour)
	}
	return client.DevToken(ctx, s.DispatchURL, "bench-admin", "bench", protocol.RoleAdmin)
}

// operatorRequest is a GET of an operator view on the server, with the
// scenario's admin token when one can be had (a dev-mode server also
// answers local callers without one).
func operatorRequest(ctx context.Context, s *Scenario, tok, path string) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(s.DispatchURL, "/")+path, nil)
	if err == nil && tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	return req, err
}

// readPolicy reads the autoscaler's policy from the server, nil when it
// serves none.
func readPolicy(ctx context.Context, s *Scenario) *flashPolicy {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	tok, _ := adminToken(ctx, s)
	req, err := operatorRequest(ctx, s, tok, "/v1/autoscale/decisions")
	if err != nil {
		return nil
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	var body struct {
		Policy flashPolicy `json:"policy"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&body) != nil {
		return nil
	}
	return &body.Policy
}

// announceCrowd announces the hot room's audience at at, with an admin
// token minted from the scenario's secret (or a dev token).
func announceCrowd(ctx context.Context, s *Scenario, at time.Time) (string, error) {
	tok, err := adminToken(ctx, s)
	if err != nil {
		return "", fmt.Errorf("cannot get an admin token to announce: %w", err)
	}
	body, _ := json.Marshal(map[string]any{"room": s.HotRoom(), "viewers": s.Viewers, "at": at.UTC(),
		"until": at.Add(30 * time.Minute).UTC(), "note": "liveroom bench flash"})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(s.DispatchURL, "/")+"/v1/admin/announcements", bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("cannot announce: %w", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var a struct {
		ID string `json:"id"`
	}
	if resp.StatusCode != http.StatusCreated || json.Unmarshal(b, &a) != nil || a.ID == "" {
		return "", fmt.Errorf("cannot announce: %d %s", resp.StatusCode, bytes.TrimSpace(b))
	}
	return a.ID, nil
}

func (r *FlashReport) writeTable(out io.Writer) error {
	w := tabwriter.NewWriter(out, 2, 4, 2, ' ', tabwriter.AlignRight)
	s := r.Scenario
	fmt.Fprintf(out, "liveroom bench flash: %d viewers in %d rooms (hot share %.2f) over %v, %g gifts/s\n",
		s.Viewers, s.Rooms, s.HotShare, time.Duration(s.Ramp), s.GiftRate)
	if p := r.Policy; p != nil {
		fmt.Fprintf(out, "autoscaler: %d connections per gateway at %.0f %%, min %d, max %d, spare %d, measured ready time %.2f s\n",
			p.Capacity.Conns, p.Capacity.Target*100, p.Min, p.Max, p.Spare, p.MeasuredReadyTime)
	}
	if r.Announced != "" {
		fmt.Fprintf(out, "announced %s %v ahead: %d gateways active when the show began\n", r.Announced, time.Duration(r.AnnounceAhead), r.ReadyAtStart)
	}
	fmt.Fprintln(out)
	fmt.Fprintf(w, "t (s)\tjoins/s\twaits/s\twelcomed\trefused\tgateways\tconns\tfullest\t\n")
	for _, p := range r.Timeline {
		fmt.Fprintf(w, "%.0f\t%d\t%d\t%d\t%d\t%d\t%d\t%.0f %%\t\n", p.T, p.Joins, p.Waits, p.Welcomed, p.Refused, p.Gateways, p.Conns, p.Fullest*100)
	}
	if err := w.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(out, "\njoins: %d welcomed, %d refused for good, %d waited (%d wait answers, %.2f %% of the joins)\n",
		r.Joined, r.Refused, r.Waited, r.Waits, 100*float64(r.Waited)/float64(max(1, s.Viewers)))
	c := r.Connect
	fmt.Fprintf(out, "first try → welcome: p50 %.0f ms, p99 %.0f ms, p99.9 %.0f ms, max %.0f ms\n", c.P50, c.P99, c.P999, c.Max)
	fmt.Fprintf(out, "fleet: at most %d active gateways", r.PeakGateways)
	if r.Need > 0 {
		spare := 0
		if r.Policy != nil {
			spare = r.Policy.Spare
		}
		fmt.Fprintf(out, " for a need of %d (ceil(viewers ÷ (capacity × target))): need + %d, spare %d", r.Need, r.PeakGateways-r.Need, spare)
	}
	fmt.Fprintf(out, "; fullest gateway %.0f %%\n", r.Fullest*100)
	if x := r.Window; x != nil {
		fmt.Fprintf(out, "gifts after the crowd (%.0f s window): %d acked, %d deliveries owed, %d lost, %d doubled\n",
			x.Seconds, x.Gifts.Acked, x.Gifts.Expected, x.Gifts.Lost, x.Gifts.Doubled)
	}
	return nil
}

const flashUsage = `usage: liveroom bench flash --url URL [--nats-url URL] [flags]

A flash crowd: --viewers join through dispatch over --ramp (0: all at once,
a step) into --rooms rooms, each viewer waiting when dispatch asks it to
(every gateway full) and giving up after 30 s. With --announce-ahead the
crowd is announced (POST /v1/admin/announcements, an admin token from
--secret or a dev token) that long before it comes. Gifts flow at
--gift-rate (use --spread for every room) during the ramp and --hold, then
a --duration window checks that each arrived once.

It prints, second by second, the joins, dispatch's wait answers, the active
gateways and the fullest one; then the waits, refusals, the time from a
viewer's first try to its welcome, and the fleet at the peak against
ceil(viewers ÷ (capacity × target)) from the autoscaler's policy. Run it
against serve --autoscale (docs/BENCHMARKS.md has the figures).

flags:`
