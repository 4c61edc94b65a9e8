package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/liveroom/liveroom/internal/bus"
	"github.com/liveroom/liveroom/internal/fleet"
)

// beatLog collects the gateways' own load beats: CPU (cores over the beat
// interval, from getrusage), RSS, frames, messages and bytes written per
// second. They come from NATS (lr.gw.beat, read by a fleet.View) when the
// bench has the NATS URL, or from polling dispatch's GET /v1/gateways,
// which serves dispatch's fleet view. Unlike the fleet view, which keeps
// each gateway's latest beat, the log keeps every beat in TS order: the
// report sums windows of them and looks back in time (latest at a ts).
type beatLog struct {
	only []string
	mu   sync.Mutex
	by   map[string][]bus.Beat // by gateway id, in TS order
	stop func()                // ends the subscription or the polling
}

func (l *beatLog) add(b bus.Beat) {
	if len(l.only) > 0 && !slices.Contains(l.only, b.ID) {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	bs := l.by[b.ID]
	if n := len(bs); n > 0 && bs[n-1].TS >= b.TS {
		return
	}
	l.by[b.ID] = append(bs, b)
}

// startBeats follows the beats until ctx ends or close is called.
func startBeats(ctx context.Context, s *Scenario) (*beatLog, error) {
	l := &beatLog{only: s.Gateways, by: map[string][]bus.Beat{}, stop: func() {}}
	if s.NATSURL != "" {
		opts := []nats.Option{nats.Name("liveroom-bench")}
		if s.NATSKeyFile != "" {
			keys, err := bus.LoadKeys(s.NATSKeyFile)
			if err != nil {
				return nil, err
			}
			c, err := keys.Credential(bus.RoleMonitor, "")
			if err != nil {
				return nil, err
			}
			opts = append(opts, c.Option())
		}
		nc, err := nats.Connect(s.NATSURL, opts...)
		if err != nil {
			return nil, fmt.Errorf("cannot connect to NATS for beats: %w", err)
		}
		// Refused beats are left out silently, as they always were: the
		// bench reports figures, dispatch warns of forged beats.
		v, err := fleet.New(fleet.Config{NC: nc, Logger: slog.New(slog.DiscardHandler),
			OnBeat: func(g fleet.Gateway, _ []fleet.Gateway) { l.add(g.Beat) }})
		if err == nil {
			err = v.Start(ctx)
		}
		if err != nil {
			nc.Close()
			return nil, err
		}
		// The connection closes when ctx ends, which ends the view's reader.
		stopAfter := context.AfterFunc(ctx, nc.Close)
		l.stop = func() { stopAfter(); _ = v.Close(); nc.Close() }
		return l, nil
	}
	if s.DispatchURL == "" {
		return l, nil
	}
	ctx, cancel := context.WithCancel(ctx)
	hc := &http.Client{Timeout: 2 * time.Second}
	// GET /v1/gateways is an operator view: admin tokens only (a dev-mode
	// server also answers local callers without one).
	tok, _ := adminToken(ctx, s)
	poll := func() {
		req, err := operatorRequest(ctx, s, tok, "/v1/gateways")
		if err != nil {
			return
		}
		resp, err := hc.Do(req)
		if err != nil {
			return
		}
		defer resp.Body.Close()
		var body struct {
			Gateways []bus.Beat `json:"gateways"`
		}
		if resp.StatusCode == 200 && json.NewDecoder(io.LimitReader(resp.Body, 8<<20)).Decode(&body) == nil {
			for _, b := range body.Gateways {
				l.add(b)
			}
		}
	}
	poll()
	var polling sync.WaitGroup
	l.stop = func() {
		cancel()
		polling.Wait()
		hc.CloseIdleConnections()
	}
	polling.Go(func() {
		// Beats come every second; polling at 4 Hz misses none.
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				poll()
			}
		}
	})
	return l, nil
}

// close stops following the beats and waits until nothing more is added.
func (l *beatLog) close() { l.stop() }

// latest returns, per gateway, the last beat sent at or before ts (Unix ms).
func (l *beatLog) latest(ts int64) map[string]bus.Beat {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string]bus.Beat{}
	for id, bs := range l.by {
		for i := len(bs) - 1; i >= 0; i-- {
			if bs[i].TS <= ts {
				out[id] = bs[i]
				break
			}
		}
	}
	return out
}

// waitAfter waits (up to timeout) until every known gateway has a beat sent
// after ts, and returns the first such beat of each.
func (l *beatLog) waitAfter(ctx context.Context, ts int64, timeout time.Duration) map[string]bus.Beat {
	deadline := time.Now().Add(timeout)
	for {
		l.mu.Lock()
		out := map[string]bus.Beat{}
		all := true
		for id, bs := range l.by {
			i := sort.Search(len(bs), func(i int) bool { return bs[i].TS > ts })
			if i < len(bs) {
				out[id] = bs[i]
			} else if len(bs) > 0 && time.Since(time.UnixMilli(bs[len(bs)-1].TS)) < 5*time.Second {
				all = false // alive, its next beat is coming
			}
		}
		l.mu.Unlock()
		if all || time.Now().After(deadline) || ctx.Err() != nil {
			return out
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// beatInterval is b's interval in ms, 1 s for a beat that does not say.
func beatInterval(b bus.Beat) int64 {
	if b.IntervalMS <= 0 {
		return 1000
	}
	return b.IntervalMS
}

// GatewayFigures are one gateway's own figures over a window, from its
// beats, with RSS per connection against the baseline before the viewers
// connected.
type GatewayFigures struct {
	ID           string  `json:"id"`
	Beats        int     `json:"beats"`
	Seconds      float64 `json:"seconds"`
	Conns        int     `json:"conns"`
	CPUSeconds   float64 `json:"cpu_seconds"`
	Cores        float64 `json:"cores"`
	FramesPerSec float64 `json:"frames_out_per_s"`
	MsgsPerSec   float64 `json:"msgs_out_per_s"`
	BytesPerSec  float64 `json:"bytes_out_per_s"`
	// CPUPerFrameUS is gateway CPU-µs per written frame; CPUPerMMsgs is
	// gateway CPU-seconds per million delivered messages.
	CPUPerFrameUS float64 `json:"cpu_us_per_frame"`
	CPUPerMMsgs   float64 `json:"cpu_s_per_million_msgs"`
	FrameBytes    float64 `json:"bytes_per_frame"`
	// DroppedPerSec is live messages per second not delivered: sampled to
	// the viewer budget, or dropped at a full connection queue.
	DroppedPerSec float64 `json:"dropped_per_s"`

	RSSBase      int64   `json:"rss_base"`
	ConnsBase    int     `json:"conns_base"`
	RSSConnected int64   `json:"rss_connected"`
	ConnsIdle    int     `json:"conns_connected"`
	RSSPerConn   float64 `json:"rss_per_conn"` // bytes
}

// window sums the beats whose interval lies inside [from, to] (Unix ms).
func (l *beatLog) window(from, to int64) map[string]*GatewayFigures {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string]*GatewayFigures{}
	for id, bs := range l.by {
		g := &GatewayFigures{ID: id}
		var frames, msgs, bytes, dropped float64
		for _, b := range bs {
			iv := float64(beatInterval(b))
			if float64(b.TS)-iv < float64(from)-100 || b.TS > to+100 {
				continue
			}
			dt := iv / 1000
			g.Beats++
			g.Seconds += dt
			g.CPUSeconds += b.CPU * dt
			frames += b.FramesOut * dt
			msgs += b.MsgsOut * dt
			bytes += b.BytesOut * dt
			dropped += b.Dropped * dt
			g.Conns = max(g.Conns, b.Conns)
		}
		if g.Beats == 0 {
			continue
		}
		g.Cores = g.CPUSeconds / g.Seconds
		g.FramesPerSec, g.MsgsPerSec, g.BytesPerSec = frames/g.Seconds, msgs/g.Seconds, bytes/g.Seconds
		g.DroppedPerSec = dropped / g.Seconds
		if frames > 0 {
			g.CPUPerFrameUS = g.CPUSeconds * 1e6 / frames
			g.FrameBytes = bytes / frames
		}
		if msgs > 0 {
			g.CPUPerMMsgs = g.CPUSeconds * 1e6 / msgs
		}
		out[id] = g
	}
	return out
}

// totalFigures adds the gateways up (RSS per connection over all of them).
func totalFigures(gs []*GatewayFigures) *GatewayFigures {
	if len(gs) == 0 {
		return nil
	}
	t := &GatewayFigures{ID: "all"}
	var frames, msgs, bytes float64
	for _, g := range gs {
		t.Beats += g.Beats
		t.Seconds = max(t.Seconds, g.Seconds)
		t.Conns += g.Conns
		t.CPUSeconds += g.CPUSeconds
		t.Cores += g.Cores
		frames += g.FramesPerSec * g.Seconds
		msgs += g.MsgsPerSec * g.Seconds
		bytes += g.BytesPerSec * g.Seconds
		t.FramesPerSec += g.FramesPerSec
		t.MsgsPerSec += g.MsgsPerSec
		t.BytesPerSec += g.BytesPerSec
		t.DroppedPerSec += g.DroppedPerSec
		t.RSSBase += g.RSSBase
		t.ConnsBase += g.ConnsBase
		t.RSSConnected += g.RSSConnected
		t.ConnsIdle += g.ConnsIdle
	}
	if frames > 0 {
		t.CPUPerFrameUS = t.CPUSeconds * 1e6 / frames
		t.FrameBytes = bytes / frames
	}
	if msgs > 0 {
		t.CPUPerMMsgs = t.CPUSeconds * 1e6 / msgs
	}
	if d := t.ConnsIdle - t.ConnsBase; d > 0 {
		t.RSSPerConn = float64(t.RSSConnected-t.RSSBase) / float64(d)
	}
	return t
}

// cpuAround sums the gateways' CPU-seconds over every beat interval that
// overlaps [from, to] (Unix ms): a little idle time at the edges is counted
// rather than any of the phase lost.
func (l *beatLog) cpuAround(from, to int64) float64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	var cpu float64
	for _, bs := range l.by {
		for _, b := range bs {
			iv := beatInterval(b)
			if b.TS > from && b.TS-iv < to {
				cpu += b.CPU * float64(iv) / 1000
			}
		}
	}
	return cpu
}
