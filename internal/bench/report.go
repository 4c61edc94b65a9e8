package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is the result of one bench run; its JSON form is the machine
// report (`--json`), WriteTable the human one.
type Report struct {
	Scenario   Scenario       `json:"scenario"`
	Started    time.Time      `json:"started"`
	Connect    ConnectFigures `json:"connect"`
	Window     *WindowFigures `json:"window,omitempty"`
	Floor      *FloorFigures  `json:"floor,omitempty"`
	Objectives []Objective    `json:"objectives,omitempty"`
	Hints      []string       `json:"hints,omitempty"`
}

// Objective is one goal checked against the run.
type Objective struct {
	Name  string  `json:"name"`
	Goal  string  `json:"goal"`
	Value float64 `json:"value"`
	Unit  string  `json:"unit"`
	OK    bool    `json:"ok"`
}

// finish derives the floor ratio, objectives and hints.
func (r *Report) finish() {
	w := r.Window
	if r.Floor != nil && w != nil && w.Gateway != nil && r.Floor.USPerWrite > 0 {
		r.Floor.Ratio = w.Gateway.CPUPerFrameUS / r.Floor.USPerWrite
	}
	r.Objectives = objectives(r)
	if w != nil && w.HintClientGifts > 0 {
		r.Hints = append(r.Hints, fmt.Sprintf("the uplink refused %d gifts sent with users' tokens (403 client_gifts_disabled): give the bench --api-key to send paid gifts through the server API, or run the server with --client-gifts", w.HintClientGifts))
	}
	if w != nil && w.Hint429 > 0 {
		r.Hints = append(r.Hints, fmt.Sprintf("the uplink answered 429 %d times: run the server with --user-rate, --room-rate, --gift-rate and --like-rate raised, or give --senders more users", w.Hint429))
	}
	if w != nil {
		for _, f := range w.Sends {
			if f.Skipped > 0 {
				r.Hints = append(r.Hints, "some sends were skipped because every send worker was busy: raise --send-workers, or the uplink is saturated")
				break
			}
		}
		if g := w.Gateway; g != nil && g.DroppedPerSec >= 1 {
			r.Hints = append(r.Hints, fmt.Sprintf("the gateways did not deliver %.0f messages/s (sampled to their viewer budget, or dropped at full queues): to deliver every message, run them with --viewer-budget 1000000", g.DroppedPerSec))
		}
		if w.Gateway == nil && r.Scenario.Viewers > 0 {
			r.Hints = append(r.Hints, "no gateway beats were seen: give --nats-url or a --url whose dispatch serves GET /v1/gateways, and check --gateway")
		}
		for k := range w.Errors {
			if strings.HasSuffix(k, "_emfile") {
				r.Hints = append(r.Hints, "EMFILE: a process ran out of file descriptors; use more --procs (each child holds at most 18,000)")
				break
			}
		}
	}
	if r.Connect.Failed > 0 {
		r.Hints = append(r.Hints, fmt.Sprintf("%d connections failed; see the errors", r.Connect.Failed))
	}
}

// The objectives' limits, checked by the report and by capacity's ramp.
const (
	giftP99LimitMS   = 200   // gift delay p99, ms
	liveMissingLimit = 0.001 // live messages missing, a ratio
)

// danmakuP99LimitMS is the danmaku delay p99 objective in ms: the gateways'
// merge window + 50 ms.
func danmakuP99LimitMS(mergeWindow Duration) float64 {
	return float64((time.Duration(mergeWindow) + 50*time.Millisecond).Milliseconds())
}

// objectives checks the goals that apply to what the run did.
func objectives(r *Report) []Objective {
	var out []Objective
	w := r.Window
	add := func(name, goal string, v float64, unit string, ok bool) {
		out = append(out, Objective{Name: name, Goal: goal, Value: v, Unit: unit, OK: ok})
	}
	if w != nil {
		if d, ok := w.Delay["danmaku"]; ok && d.Count > 0 {
			lim := danmakuP99LimitMS(r.Scenario.MergeWindow)
			add("danmaku delay p99", fmt.Sprintf("≤ %.0f ms (merge window + 50 ms)", lim), d.P99, "ms", d.P99 <= lim)
		}
		if d, ok := w.Delay["gift"]; ok && d.Count > 0 {
			add("gift delay p99", fmt.Sprintf("≤ %d ms", giftP99LimitMS), d.P99, "ms", d.P99 <= giftP99LimitMS)
		}
		if w.Gifts.Acked > 0 && w.Gifts.Viewers > 0 {
			add("gifts lost", "0", float64(w.Gifts.Lost), "deliveries", w.Gifts.Lost == 0)
			add("gifts doubled", "0", float64(w.Gifts.Doubled), "deliveries", w.Gifts.Doubled == 0)
		}
		if w.Live.Expected > 0 {
			add("live messages missing", fmt.Sprintf("≤ %g %%", liveMissingLimit*100), w.Live.Ratio*100, "%", w.Live.Ratio <= liveMissingLimit)
		}
		if g := w.Gateway; g != nil && g.RSSPerConn > 0 {
			add("gateway RSS per connection", "≤ 3 KiB", g.RSSPerConn/1024, "KiB", g.RSSPerConn <= 3*1024)
		}
	}
	if r.Scenario.Viewers > 0 && !r.Scenario.Floor {
		add("connection errors", "0", float64(r.Connect.Failed), "", r.Connect.Failed == 0)
	}
	if r.Floor != nil && r.Floor.Ratio > 0 {
		add("gateway CPU per frame ÷ floor", "≤ 1.3", r.Floor.Ratio, "×", r.Floor.Ratio <= 1.3)
	}
	return out
}

// OK reports whether every objective held.
func (r *Report) OK() bool {
	for _, o := range r.Objectives {
		if !o.OK {
			return false
		}
	}
	return true
}

// WriteJSON writes the machine report.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteTable writes the human report.
func (r *Report) WriteTable(out io.Writer) error {
	w := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
	s := r.Scenario
	if s.Floor {
		fmt.Fprintf(w, "liveroom bench --floor: %d connections, %g frames/s each, %d bytes\n", s.Viewers, s.FloorFPS, s.FloorSize)
	} else {
		fmt.Fprintf(w, "liveroom bench: %d viewers in %d rooms (hot share %.2f), %g danmaku/s, %g gifts/s, %g likes/s for %v, %d procs\n",
			s.Viewers, s.Rooms, s.HotShare, s.DanmakuRate, s.GiftRate, s.LikeRate, time.Duration(s.Duration), s.Procs)
	}
	if c := r.Connect; c.Attempted > 0 {
		fmt.Fprintf(w, "\nconnect\n")
		fmt.Fprintf(w, "  attempted\t%d\topened %d, welcomed %d, failed %d\n", c.Attempted, c.Opened, c.Welcomed, c.Failed)
		fmt.Fprintf(w, "  rate\t%.0f/s\tover %.2f s\n", c.PerSec, c.Seconds)
		if c.GatewayCPUPerJoinUS > 0 {
			fmt.Fprintf(w, "  gateway CPU\t%.0f µs/join\t%.2f CPU-s in the connect phase\n", c.GatewayCPUPerJoinUS, c.GatewayCPUSeconds)
		}
	}
	if x := r.Window; x != nil {
		if x.ConnectLat.Count > 0 {
			fmt.Fprintf(w, "  dial→welcome\tp50 %.1f ms\tp99 %.1f ms, max %.1f ms\n", x.ConnectLat.P50, x.ConnectLat.P99, x.ConnectLat.Max)
		}
		fmt.Fprintf(w, "\nwindow\t%.1f s\t%d viewers connected at the end, %d lost in the window\n", x.Seconds, x.Viewers, x.Dropped)
		if len(x.Sends) > 0 {
			fmt.Fprintf(w, "\nsends\taccepted/s\tsent\tlatency p50 / p99 / max (ms)\tstatus\n")
			for _, k := range sortedKeys(x.Sends) {
				f := x.Sends[k]
				fmt.Fprintf(w, "  %s\t%.0f\t%d\t%.1f / %.1f / %.1f\t%s\n", k, f.PerSec, f.Sent, f.Latency.P50, f.Latency.P99, f.Latency.Max, statusLine(f.Status, f.Skipped))
			}
		}
		if len(x.Deliveries) > 0 {
			fmt.Fprintf(w, "\ndeliveries\tper s\ttotal\tdelay p50 / p90 / p99 / max (ms)\n")
			for _, k := range sortedKeys(x.Deliveries) {
				d := x.Delay[k]
				fmt.Fprintf(w, "  %s\t%.0f\t%d\t%.1f / %.1f / %.1f / %.1f\n", k, x.PerSec[k], x.Deliveries[k], d.P50, d.P90, d.P99, d.Max)
			}
			fmt.Fprintf(w, "  frames\t%.0f/s\t%.2f messages per frame, %s/s\n", x.FramesPerS, x.MsgsPerFrm, bytesH(x.BytesPerS))
			fmt.Fprintf(w, "  bytes\twire %s/frame, %s/message\tuncompressed %s/frame, %s/message: %.2f× (%.0f %% of frames compressed)\n",
				bytesH(x.Wire.PerFrame), bytesH(x.Wire.PerMsg), bytesH(x.Plain.PerFrame), bytesH(x.Plain.PerMsg), ratio(x.Wire.PerS, x.Plain.PerS), x.Compressed*100)
		}
		if x.Gifts.Acked > 0 {
			fmt.Fprintf(w, "\ngifts\t%d acked\tchecked at %d viewers: %d deliveries expected, %d lost, %d doubled, %d unacked ids\n",
				x.Gifts.Acked, x.Gifts.Viewers, x.Gifts.Expected, x.Gifts.Lost, x.Gifts.Doubled, x.Gifts.Unacked)
		}
		if x.Live.Expected > 0 {
			fmt.Fprintf(w, "live\t%.3f %% missing\t%d of %d (frames one viewer missed that its peers got)\n", x.Live.Ratio*100, x.Live.Missing, x.Live.Expected)
		}
		if len(x.Gateways) > 0 {
			fmt.Fprintf(w, "\ngateway\tconns\tcores\tframes/s\tmsgs/s\tout\tCPU µs/frame\tCPU s/M msgs\tRSS/conn\n")
			rows := x.Gateways
			if len(rows) > 1 && x.Gateway != nil {
				rows = append(rows[:len(rows):len(rows)], x.Gateway)
			}
			for _, g := range rows {
				fmt.Fprintf(w, "  %s\t%d\t%.2f\t%.0f\t%.0f\t%s/s\t%.2f\t%.2f\t%s\n", g.ID, g.Conns, g.Cores, g.FramesPerSec, g.MsgsPerSec, bytesH(g.BytesPerSec),
					g.CPUPerFrameUS, g.CPUPerMMsgs, rssH(g.RSSPerConn))
			}
		}
		fmt.Fprintf(w, "bench\t%.2f cores\t(the viewers' own CPU)\n", x.BenchCPU/max(x.Seconds, 1e-9))
		if len(x.Errors) > 0 {
			fmt.Fprintf(w, "\nerrors\n")
			for _, k := range sortedKeys(x.Errors) {
				fmt.Fprintf(w, "  %s\t%d\t%s\n", k, x.Errors[k], shortErr(x.Examples[k]))
			}
		}
	}
	if f := r.Floor; f != nil {
		fmt.Fprintf(w, "\nfloor\t%d conns\t%.1f frames/s each, %d bytes: %.0f writes/s, %.2f CPU-µs per write (%d EAGAIN)\n", f.Conns, f.FPS, f.Size, f.WritesPerS, f.USPerWrite, f.EAGAIN)
		if f.Ratio > 0 {
			fmt.Fprintf(w, "  ratio\t%.2f×\tgateway CPU per frame ÷ bare write\n", f.Ratio)
		}
	}
	if len(r.Objectives) > 0 {
		fmt.Fprintf(w, "\nobjective\tgoal\tmeasured\t\n")
		for _, o := range r.Objectives {
			mark := "ok"
			if !o.OK {
				mark = "MISSED"
			}
			fmt.Fprintf(w, "  %s\t%s\t%.3g %s\t%s\n", o.Name, o.Goal, o.Value, o.Unit, mark)
		}
	}
	for _, h := range r.Hints {
		fmt.Fprintf(w, "hint: %s\n", h)
	}
	return w.Flush()
}

func statusLine(m map[string]int, skipped int64) string {
	var parts []string
	for _, k := range sortedKeys(m) {
		parts = append(parts, fmt.Sprintf("%s×%d", k, m[k]))
	}
	if skipped > 0 {
		parts = append(parts, fmt.Sprintf("skipped×%d", skipped))
	}
	return strings.Join(parts, " ")
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// rssH shows RSS per connection; a gateway that was not fresh (its
// baseline held memory of earlier connections) gives no figure.
func rssH(v float64) string {
	if v <= 0 {
		return "-"
	}
	return bytesH(v)
}

func ratio(a, b float64) float64 {
	if b <= 0 {
		return 0
	}
	return a / b
}

func bytesH(v float64) string {
	switch {
	case v >= 1<<30:
		return fmt.Sprintf("%.2f GiB", v/(1<<30))
	case v >= 1<<20:
		return fmt.Sprintf("%.1f MiB", v/(1<<20))
	case v >= 1<<10:
		return fmt.Sprintf("%.2f KiB", v/(1<<10))
	}
	return fmt.Sprintf("%.0f B", v)
}
