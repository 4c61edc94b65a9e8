package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"time"

	"github.com/liveroom/liveroom/internal/bus"
)

// CapacityFile is what `liveroom bench capacity --out` writes: the measured
// capacity of one gateway in the shape of bus.Capacity (conns, cpu,
// bytes_out, msgs_out), plus the utilisation the autoscaler should aim at.
type CapacityFile struct {
	bus.Capacity
	TargetUtilisation float64 `json:"target_utilisation"`
	Gateway           string  `json:"gateway"`
	Measured          string  `json:"measured"`
	// LimitedBy names the objective that broke at the next step, or
	// "max-viewers" when the ramp ended first (then the gateway can do more).
	LimitedBy string         `json:"limited_by"`
	Steps     []CapacityStep `json:"steps"`
}

// CapacityStep is one load step of the ramp.
type CapacityStep struct {
	Viewers     int     `json:"viewers"`
	DanmakuRate float64 `json:"danmaku_rate"`
	GiftRate    float64 `json:"gift_rate"`
	Conns       int     `json:"conns"`
	Cores       float64 `json:"cores"`
	MsgsOut     float64 `json:"msgs_out"`
	BytesOut    float64 `json:"bytes_out"`
	DanmakuP99  float64 `json:"danmaku_p99_ms"`
	GiftP99     float64 `json:"gift_p99_ms"`
	Missing     float64 `json:"live_missing_ratio"`
	GiftsLost   int64   `json:"gifts_lost"`
	ConnErrors  int     `json:"conn_errors"`
	Broken      string  `json:"broken,omitempty"`
}

type capacityFlags struct {
	start, step, maxV, maxSteps int
	factor, target              float64
	out                         string
}

// RunCapacity is `liveroom bench capacity`: it ramps viewers (and, with
// --rate-factor, the message rate) on one gateway in steps of --duration
// each until an objective breaks, and prints and writes the capacity of the
// last step that held.
func RunCapacity(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cf capacityFlags
	s, err := parseScenario(args, stderr, func(fs *flag.FlagSet) {
		fs.IntVar(&cf.start, "start-viewers", 0, "viewers at the first step (default --step-viewers)")
		fs.IntVar(&cf.step, "step-viewers", 2000, "viewers added at each step")
		fs.IntVar(&cf.maxV, "max-viewers", 18000, "stop adding viewers here")
		fs.IntVar(&cf.maxSteps, "max-steps", 20, "most steps")
		fs.Float64Var(&cf.factor, "rate-factor", 1, "multiply the send rates by this at each step")
		fs.Float64Var(&cf.target, "target", 0.7, "target utilisation written to the capacity file")
		fs.StringVar(&cf.out, "out", "capacity.json", "capacity file to write ('' for none)")
	}, capacityUsage)
	if err != nil {
		return err
	}
	if cf.start <= 0 {
		cf.start = cf.step
	}
	if cf.step < 0 || cf.maxV < cf.start || cf.factor < 1 || cf.target <= 0 || cf.target > 1 || cf.maxSteps < 1 {
		return errors.New("capacity: need 0 < --start-viewers ≤ --max-viewers, --step-viewers ≥ 0, --rate-factor ≥ 1, 0 < --target ≤ 1, --max-steps ≥ 1")
	}
	s.Viewers = cf.maxV
	s.Procs = -1
	if err := s.Validate(); err != nil {
		return err
	}
	r, err := startRun(ctx, &s, Env{Progress: stderr, Stderr: stderr})
	defer r.close()
	if err != nil {
		return err
	}
	r.startProgress()
	base := r.baseline(ctx)
	if len(s.Gateways) == 0 && len(base) > 1 {
		return fmt.Errorf("capacity measures one gateway, and dispatch knows %d: give --gateway ID", len(base))
	}
	out := CapacityFile{TargetUtilisation: cf.target, Measured: time.Now().UTC().Format(time.RFC3339)}
	baseDanmaku, baseGift, baseLike := s.DanmakuRate, s.GiftRate, s.LikeRate
	viewers, failedBefore := 0, 0
	var last *CapacityStep
	for i := 0; i < cf.maxSteps; i++ {
		target := min(cf.maxV, cf.start+i*cf.step)
		if target > viewers {
			r.setPhase("connect")
			rate := float64(target-viewers) / time.Duration(s.Ramp).Seconds()
			c, err := r.connect(ctx, target-viewers, rate)
			if err != nil {
				return fmt.Errorf("capacity: cannot connect step %d: %w", i+1, err)
			}
			viewers = target
			r.s.Viewers = viewers
			failedBefore += c.Failed
		}
		f := math.Pow(cf.factor, float64(i))
		r.s.DanmakuRate, r.s.GiftRate, r.s.LikeRate = baseDanmaku*f, baseGift*f, baseLike*f
		r.s.SendWorkers, r.s.Senders = 0, 0
		if err := r.s.Validate(); err != nil {
			return fmt.Errorf("capacity: step %d: %w", i+1, err)
		}
		if r.s.sends() {
			if r.snd != nil {
				r.snd.close()
			}
			if r.snd, err = newSenders(ctx, r.s, r.s.RoomIDs()); err != nil {
				return fmt.Errorf("capacity: step %d: %w", i+1, err)
			}
		}
		w, err := r.window(ctx, time.Duration(s.Duration), base, time.Now())
		if err != nil {
			return fmt.Errorf("capacity: cannot measure step %d: %w", i+1, err)
		}
		st := CapacityStep{Viewers: viewers, DanmakuRate: r.s.DanmakuRate, GiftRate: r.s.GiftRate, ConnErrors: failedBefore,
			DanmakuP99: w.Delay["danmaku"].P99, GiftP99: w.Delay["gift"].P99, Missing: w.Live.Ratio, GiftsLost: w.Gifts.Lost}
		if g := w.Gateway; g != nil {
			st.Conns, st.Cores, st.MsgsOut, st.BytesOut = g.Conns, g.Cores, g.MsgsPerSec, g.BytesPerSec
			if out.Gateway == "" && len(w.Gateways) == 1 {
				out.Gateway = w.Gateways[0].ID
			}
		}
		mw := danmakuP99LimitMS(s.MergeWindow)
		var broken []string
		if st.DanmakuP99 > mw {
			broken = append(broken, fmt.Sprintf("danmaku p99 %.0f ms > %.0f ms", st.DanmakuP99, mw))
		}
		if st.GiftP99 > giftP99LimitMS {
			broken = append(broken, fmt.Sprintf("gift p99 %.0f ms > %d ms", st.GiftP99, giftP99LimitMS))
		}
		if st.Missing > liveMissingLimit {
			broken = append(broken, fmt.Sprintf("live missing %.2f %% > %g %%", st.Missing*100, liveMissingLimit*100))
		}
		if st.GiftsLost > 0 || w.Gifts.Doubled > 0 {
			broken = append(broken, fmt.Sprintf("gifts lost %d, doubled %d", st.GiftsLost, w.Gifts.Doubled))
		}
		if st.ConnErrors > 0 || w.Dropped > 0 {
			broken = append(broken, fmt.Sprintf("connection errors %d, lost %d", st.ConnErrors, w.Dropped))
		}
		st.Broken = strings.Join(broken, "; ")
		out.Steps = append(out.Steps, st)
		fmt.Fprintf(stdout, "step %2d: %6d viewers %8.0f danmaku/s  conns %6d  cores %.2f  msgs/s %9.0f  out %s/s  danmaku p99 %6.1f ms  gift p99 %6.1f ms  missing %.3f %%  %s\n",
			i+1, st.Viewers, st.DanmakuRate, st.Conns, st.Cores, st.MsgsOut, bytesH(st.BytesOut), st.DanmakuP99, st.GiftP99, st.Missing*100, okOr(st.Broken))
		if st.Broken != "" {
			out.LimitedBy = st.Broken
			break
		}
		last = &out.Steps[len(out.Steps)-1]
		if viewers >= cf.maxV && cf.factor == 1 {
			out.LimitedBy = "max-viewers (the ramp ended before an objective broke)"
			break
		}
	}
	if last == nil {
		return fmt.Errorf("capacity: the first step already broke an objective (%s); start lower", out.LimitedBy)
	}
	out.Capacity = bus.Capacity{Conns: last.Conns, CPU: last.Cores, BytesOut: last.BytesOut, MsgsOut: last.MsgsOut}
	fmt.Fprintf(stdout, "\ncapacity of gateway %s: %d connections, %.0f messages/s out, %.2f cores, %s/s out (limited by: %s)\n",
		out.Gateway, out.Conns, out.MsgsOut, out.CPU, bytesH(out.BytesOut), out.LimitedBy)
	if cf.out != "" {
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false) // "p99 110 ms > 100 ms" stays readable
		enc.SetIndent("", "  ")
		_ = enc.Encode(out)
		if err := os.WriteFile(cf.out, buf.Bytes(), 0o644); err != nil {
			return fmt.Errorf("cannot write capacity file: %w", err)
		}
		fmt.Fprintf(stdout, "wrote %s (target utilisation %.2f)\n", cf.out, cf.target)
	}
	return nil
}

func okOr(s string) string {
	if s == "" {
		return "ok"
	}
	return "BROKEN: " + s
}

const capacityUsage = `usage: liveroom bench capacity --url URL [--gateway ID] [flags]

Ramps load on one gateway, one step of --duration at a time: viewers grow by
--step-viewers up to --max-viewers, and the send rates grow by --rate-factor.
It stops when an objective breaks (danmaku p99 > merge window + 50 ms, gift
p99 > 200 ms, live messages missing > 0.1 %, a gift lost or doubled, a
connection error) and reports the last step that held as the gateway's
capacity, written to --out in the autoscaler's format.

flags:`
