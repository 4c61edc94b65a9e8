// Package gctune runs the garbage collector of a liveroom process for its two
// kinds of load at once: the send path (many short requests, each leaving
// garbage) wants a large heap headroom, so that collections are rare; a
// gateway holding tens of thousands of idle viewers wants its memory to be
// its live connections, not headroom.
//
// Go sizes the headroom in proportion to the live heap (GOGC): at the send
// path's 400 every byte a connection keeps alive would let four more bytes
// of garbage accumulate, and after a join storm that garbage stays resident
// (the runtime keeps freed memory up to about its heap goal). The Tuner
// therefore
//
//   - caps the headroom in bytes (MaxHeadroom): while the live heap is
//     small (the send path alone) the collector runs at Percent; as
//     connections make the live heap grow, the effective GOGC falls so that
//     the heap goal stays within live + MaxHeadroom, never below 100;
//   - returns memory when the process goes quiet: once the allocation rate
//     has stayed under QuietRate for QuietFor and the heap holds at least
//     MinRelease of garbage and free pages, it collects and returns free
//     memory to the operating system (debug.FreeOSMemory). A busy process
//     never pays for it; a gateway that has finished a join storm gets back
//     to its live size within seconds.
package gctune

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"time"
)

// Defaults of Config.
const (
	DefaultMaxHeadroom = 64 << 20
	DefaultQuietRate   = 1 << 20
	DefaultQuietFor    = 3 * time.Second
	DefaultMinRelease  = 8 << 20
	// releaseEvery bounds how often memory is returned.
	releaseEvery = 10 * time.Second
)

// tick is how often the Tuner samples the runtime (tests shorten it).
var tick = time.Second

// Config configures a Tuner. Zero values take the documented defaults.
type Config struct {
	// Percent is the collector target (GOGC) while the live heap is small;
	// 0 keeps the runtime's (100, or $GOGC).
	Percent int
	// MaxHeadroom bounds the heap goal above the live heap, in bytes, by
	// lowering the effective target (not below 100). Default 64 MiB:
	// 400 % of the send path's live heap of a few MiB to 16 MiB.
	MaxHeadroom int64
	// QuietRate is the allocation rate, in bytes per second, under which the
	// process counts as quiet. Default 1 MiB/s (an idle gateway with 19,000
	// viewers allocates a few KiB/s: pings, beats, counts).
	QuietRate float64
	// QuietFor is how long the process must stay quiet before memory is
	// returned. Default 3 s.
	QuietFor time.Duration
	// MinRelease is the least garbage and free memory worth a collection
	// and a release. Default 8 MiB.
	MinRelease int64
	// Logger; default slog.Default().
	Logger *slog.Logger
}

// Tuner adjusts the collector target and returns memory when quiet. Create
// it with New, Start it, Close it; Close restores the target it found.
type Tuner struct {
	cfg    Config
	log    *slog.Logger
	before int // GOGC when Start was called

	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once

	// Owned by the loop goroutine.
	samples     []metrics.Sample
	percent     int // last target set
	prevAllocs  uint64
	quietSince  time.Time
	lastRelease time.Time
	// release returns memory to the OS; setPercent sets the target. Tests
	// replace them.
	release    func()
	setPercent func(int)
}

// New validates cfg.
func New(cfg Config) (*Tuner, error) {
	if cfg.Percent < 0 {
		return nil, errors.New("cannot tune the collector: a negative GC percent")
	}
	if cfg.MaxHeadroom <= 0 {
		cfg.MaxHeadroom = DefaultMaxHeadroom
	}
	if cfg.QuietRate <= 0 {
		cfg.QuietRate = DefaultQuietRate
	}
	if cfg.QuietFor <= 0 {
		cfg.QuietFor = DefaultQuietFor
	}
	if cfg.MinRelease <= 0 {
		cfg.MinRelease = DefaultMinRelease
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	t := &Tuner{cfg: cfg, log: cfg.Logger, release: debug.FreeOSMemory, setPercent: func(p int) { debug.SetGCPercent(p) }}
	t.samples = []metrics.Sample{
		{Name: "/gc/heap/allocs:bytes"},
		{Name: "/gc/heap/live:bytes"},
		{Name: "/memory/classes/heap/objects:bytes"},
		{Name: "/memory/classes/heap/free:bytes"},
		{Name: "/gc/gogc:percent"},
	}
	return t, nil
}

// Start sets the target and starts sampling once a second until Close.
func (t *Tuner) Start(ctx context.Context) error {
	metrics.Read(t.samples)
	t.prevAllocs = t.samples[0].Value.Uint64()
	t.before = int(t.samples[4].Value.Uint64())
	if t.cfg.Percent > 0 {
		t.setPercent(t.cfg.Percent)
	} else {
		t.cfg.Percent = t.before
	}
	t.percent = t.cfg.Percent
	ctx, t.cancel = context.WithCancel(ctx)
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		tk := time.NewTicker(tick)
		defer tk.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-tk.C:
				t.step(now)
			}
		}
	}()
	return nil
}

// Close stops the Tuner and restores the collector target it found.
func (t *Tuner) Close() error {
	t.once.Do(func() {
		if t.cancel == nil {
			return
		}
		t.cancel()
		t.wg.Wait()
		t.setPercent(t.before)
	})
	return nil
}

// sample is what the Tuner reads of the runtime, in bytes.
type sample struct {
	allocs  uint64 // allocated since the process started
	live    int64  // live heap as of the last collection
	objects int64  // heap objects, live and not yet swept garbage
	free    int64  // free heap pages not yet returned to the OS
}

func (t *Tuner) read() sample {
	metrics.Read(t.samples)
	return sample{
		allocs:  t.samples[0].Value.Uint64(),
		live:    int64(t.samples[1].Value.Uint64()),
		objects: int64(t.samples[2].Value.Uint64()),
		free:    int64(t.samples[3].Value.Uint64()),
	}
}

// step takes one sample.
func (t *Tuner) step(now time.Time) { t.apply(now, t.read(), tick) }

// apply adjusts the target to x and returns memory if the process has been
// quiet; every is the time since the previous sample.
func (t *Tuner) apply(now time.Time, x sample, every time.Duration) {
	rate := float64(x.allocs-t.prevAllocs) / every.Seconds()
	t.prevAllocs = x.allocs

	if p := targetPercent(t.cfg.Percent, x.live, t.cfg.MaxHeadroom); p != t.percent && t.cfg.Percent > 100 {
		t.setPercent(p)
		t.percent = p
	}

	if rate >= t.cfg.QuietRate {
		t.quietSince = time.Time{}
		return
	}
	if t.quietSince.IsZero() {
		t.quietSince = now
	}
	reclaimable := x.objects - x.live + x.free
	if now.Sub(t.quietSince) < t.cfg.QuietFor || reclaimable < t.cfg.MinRelease ||
		(!t.lastRelease.IsZero() && now.Sub(t.lastRelease) < releaseEvery) {
		return
	}
	start := time.Now()
	t.release()
	t.lastRelease = now
	t.log.Debug("quiet: memory returned to the OS", "reclaimable_mib", reclaimable>>20, "live_mib", x.live>>20, "took", time.Since(start))
}

// targetPercent is the collector target for a live heap of live bytes:
// percent, lowered so that the headroom stays within maxHeadroom, but not
// below 100 (nor above percent).
func targetPercent(percent int, live, maxHeadroom int64) int {
	if percent <= 100 || live <= 0 {
		return percent
	}
	p := int(math.Ceil(float64(maxHeadroom) * 100 / float64(live)))
	return max(100, min(percent, p))
}
