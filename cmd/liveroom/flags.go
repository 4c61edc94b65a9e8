package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"github.com/liveroom/liveroom/internal/apikey"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/liveroom/liveroom/internal/dispatch"
	"github.com/liveroom/liveroom/internal/gateway"
	"github.com/liveroom/liveroom/internal/gctune"
	"github.com/liveroom/liveroom/internal/moderation"
	"github.com/liveroom/liveroom/internal/uplink"
)

// env returns $LIVEROOM_<NAME> or def; every role flag can be set this way.
func env(name, def string) string {
	if v := os.Getenv("LIVEROOM_" + name); v != "" {
		return v
	}
	return def // unset and empty both mean "the default"
}

// envs reads the typed LIVEROOM_* variables that serve as flag defaults. A
// value that does not parse is not ignored: it is remembered, and err reports
// it once the flags are parsed, so that a typo in a deployment's environment
// stops the command instead of running it on a default nobody chose. The
// check is strict even when the flag is also given on the command line: the
// environment is wrong either way. An empty value counts as unset. Not safe for concurrent use; one per
// command run.
type envs struct{ errs []error }

func (e *envs) bad(name, value, want string) {
	e.errs = append(e.errs, fmt.Errorf("$LIVEROOM_%s=%q: want %s", name, value, want))
}

func (e *envs) int(name string, def int) int {
	s := os.Getenv("LIVEROOM_" + name)
	if s == "" {
		return def
	}
	v, err := strconv.ParseInt(s, 0, strconv.IntSize) // as flag.IntVar parses
	if err != nil {
		e.bad(name, s, "an integer such as "+strconv.Itoa(def))
		return def
	}
	return int(v)
}

func (e *envs) float(name string, def float64) float64 {
	s := os.Getenv("LIVEROOM_" + name)
	if s == "" {
		return def
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		e.bad(name, s, "a number such as "+strconv.FormatFloat(def, 'g', -1, 64))
		return def
	}
	return v
}

func (e *envs) dur(name string, def time.Duration) time.Duration {
	s := os.Getenv("LIVEROOM_" + name)
	if s == "" {
		return def
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		e.bad(name, s, "a duration with a unit such as "+def.String())
		return def
	}
	return v
}

// err reports every variable that did not parse, or nil.
func (e *envs) err() error {
	if len(e.errs) == 0 {
		return nil
	}
	return fmt.Errorf("cannot use the environment: %w", errors.Join(e.errs...))
}

// newLogger builds the process logger from --log-level and --log-format.
func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: l}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format must be text or json, not %q", format)
}

type logFlags struct{ level, format string }

func (l *logFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&l.level, "log-level", env("LOG_LEVEL", "info"), "log level: debug, info, warn, error ($LIVEROOM_LOG_LEVEL)")
	fs.StringVar(&l.format, "log-format", env("LOG_FORMAT", "text"), "log format: text or json ($LIVEROOM_LOG_FORMAT)")
}

// gatewayFlags are the gateway tunables shared by serve and gateway.
func gatewayFlags(fs *flag.FlagSet, c *gateway.Config, ev *envs) {
	fs.DurationVar(&c.MergeWindow, "merge-window", ev.dur("MERGE_WINDOW", 50*time.Millisecond), "per-room merge window, and the window of rooms up to --room-write-budget × window members ($LIVEROOM_MERGE_WINDOW)")
	fs.DurationVar(&c.MaxMergeWindow, "max-merge-window", ev.dur("MAX_MERGE_WINDOW", 200*time.Millisecond), "longest merge window of a large room; = --merge-window turns adaptive windows off ($LIVEROOM_MAX_MERGE_WINDOW)")
	fs.Float64Var(&c.RoomWriteBudget, "room-write-budget", ev.float("ROOM_WRITE_BUDGET", 20000), "frame writes per second one room may cost a gateway before its window grows ($LIVEROOM_ROOM_WRITE_BUDGET)")
	fs.Float64Var(&c.ViewerBudget, "viewer-budget", ev.float("VIEWER_BUDGET", 30), "live messages per viewer per second before sampling ($LIVEROOM_VIEWER_BUDGET)")
	fs.IntVar(&c.MaxConns, "max-conns", ev.int("MAX_CONNS", 19000), "connection capacity of the gateway ($LIVEROOM_MAX_CONNS)")
	fs.IntVar(&c.QueueFrames, "queue-frames", ev.int("QUEUE_FRAMES", 64), "frames queued per slow connection before live frames are dropped ($LIVEROOM_QUEUE_FRAMES)")
	fs.IntVar(&c.ReadLimit, "read-limit", ev.int("READ_LIMIT", 4096), "largest client message in bytes, all its frames together ($LIVEROOM_READ_LIMIT)")
	fs.BoolVar(&c.NoCompress, "no-compress", envBool(ev, "NO_COMPRESS"), "decline permessage-deflate and write every frame plain, when CPU rather than bandwidth is the tighter budget ($LIVEROOM_NO_COMPRESS)")
	fs.IntVar(&c.CompressMinBytes, "compress-min-bytes", ev.int("COMPRESS_MIN_BYTES", gateway.DefaultCompressMinBytes), "frames with a smaller payload go plain even to viewers that negotiated compression; -1 compresses all ($LIVEROOM_COMPRESS_MIN_BYTES)")
	fs.DurationVar(&c.HeartbeatInterval, "heartbeat-interval", ev.dur("HEARTBEAT_INTERVAL", time.Second), "longest a viewer goes without a frame: quiet rooms get a small heartbeat, and clients leave a gateway silent for 1.75× this; negative: none ($LIVEROOM_HEARTBEAT_INTERVAL)")
	c.HistoryDanmaku = historyCount(ev.int("HISTORY_DANMAKU", gateway.DefaultHistoryDanmaku))
	fs.Var((*historyFlag)(&c.HistoryDanmaku), "history-danmaku", "last danmaku of a room a viewer joining without since= gets in the history frame after its welcome; 0: none ($LIVEROOM_HISTORY_DANMAKU)")
	c.HistoryGifts = historyCount(ev.int("HISTORY_GIFTS", gateway.DefaultHistoryGifts))
	fs.Var((*historyFlag)(&c.HistoryGifts), "history-gifts", "last gifts of a room in that history frame; 0: none ($LIVEROOM_HISTORY_GIFTS)")
	fs.DurationVar(&c.PingInterval, "ping-interval", ev.dur("PING_INTERVAL", 25*time.Second), "ping idle connections this often ($LIVEROOM_PING_INTERVAL)")
	fs.Float64Var(&c.MaxCPU, "max-cpu", ev.float("MAX_CPU", 0), "CPU capacity in cores for the load score; 0 = all CPUs ($LIVEROOM_MAX_CPU)")
	fs.Float64Var(&c.MaxBytesOut, "max-bytes-out", ev.float("MAX_BYTES_OUT", 100e6), "bytes/s to viewers at full load ($LIVEROOM_MAX_BYTES_OUT)")
	fs.Float64Var(&c.MaxMsgsOut, "max-msgs-out", ev.float("MAX_MSGS_OUT", 1e6), "messages/s to viewers at full load ($LIVEROOM_MAX_MSGS_OUT)")
	fs.DurationVar(&c.DrainWindow, "drain-window", ev.dur("DRAIN_WINDOW", 30*time.Second), "a drain spreads reconnects over this window ($LIVEROOM_DRAIN_WINDOW)")
	fs.DurationVar(&c.DrainDelay, "drain-delay", ev.dur("DRAIN_DELAY", 2*time.Second), "pause between reporting draining and the first reconnect notice ($LIVEROOM_DRAIN_DELAY)")
	fs.Float64Var(&c.DrainRate, "drain-rate", ev.float("DRAIN_RATE", 1000), "most reconnects per second a drain causes ($LIVEROOM_DRAIN_RATE)")
	fs.DurationVar(&c.DrainGrace, "drain-grace", ev.dur("DRAIN_GRACE", 3*time.Second), "a viewer still connected this long after its reconnect time is closed ($LIVEROOM_DRAIN_GRACE)")
	edgeFlags(fs, c, ev)
}

// historyFlag is a history bound: a count, 0 for none (the gateway
// config's negative).
type historyFlag int

func (h *historyFlag) String() string { return strconv.Itoa(max(int(*h), 0)) }

func (h *historyFlag) Set(s string) error {
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || n > gateway.MaxHistory {
		return fmt.Errorf("want a count from 0 (none) to %d", gateway.MaxHistory)
	}
	*h = historyFlag(historyCount(n))
	return nil
}

// historyCount maps a flag's count to the gateway config's: 0 (none) is
// negative there, where 0 means the default.
func historyCount(n int) int {
	if n <= 0 {
		return -1
	}
	return n
}

// uplinkFlags are the uplink tunables shared by serve and uplink.
func uplinkFlags(fs *flag.FlagSet, c *uplink.Config, gifts *string, ev *envs) {
	fs.BoolVar(&c.ClientGifts, "client-gifts", envBool(ev, "CLIENT_GIFTS"), "accept gifts sent with users' tokens; without it (and with a JWT secret) only the platform's backend sends gifts, through the server API after payment; dev mode always accepts them ($LIVEROOM_CLIENT_GIFTS)")
	fs.StringVar(gifts, "gifts", env("GIFTS", strings.Join(uplink.DefaultGifts, ",")), "gift catalogue, comma separated ($LIVEROOM_GIFTS)")
	fs.Float64Var(&c.UserRate, "user-rate", ev.float("USER_RATE", 2), "danmaku per user per second ($LIVEROOM_USER_RATE)")
	fs.IntVar(&c.UserBurst, "user-burst", ev.int("USER_BURST", 5), "danmaku burst per user ($LIVEROOM_USER_BURST)")
	fs.Float64Var(&c.RoomRate, "room-rate", ev.float("ROOM_RATE", 1000), "danmaku per room per second, all senders ($LIVEROOM_ROOM_RATE)")
	fs.Float64Var(&c.GiftRate, "gift-rate", ev.float("GIFT_RATE", 1), "gift requests per user per second, across rooms ($LIVEROOM_GIFT_RATE)")
	fs.IntVar(&c.GiftBurst, "gift-burst", ev.int("GIFT_BURST", 10), "gift burst per user ($LIVEROOM_GIFT_BURST)")
	fs.Float64Var(&c.LikeRate, "like-rate", ev.float("LIKE_RATE", 50), "likes (summed counts) per user per second, across rooms ($LIVEROOM_LIKE_RATE)")
	fs.IntVar(&c.LikeBurst, "like-burst", ev.int("LIKE_BURST", 1000), "like burst per user, at least 999 ($LIVEROOM_LIKE_BURST)")
	fs.StringVar(&c.ID, "uplink-id", env("UPLINK_ID", ""), "this uplink's name to the other uplinks, [A-Za-z0-9_-]{1,64}, unique; empty: a random one ($LIVEROOM_UPLINK_ID)")
	fs.DurationVar(&c.FleetInterval, "limit-sync", ev.dur("LIMIT_SYNC", uplink.DefaultFleetInterval), "how often uplinks exchange the usage of their hot rate-limit keys, so that every limit holds across all uplinks; negative: off, each uplink enforces every limit alone ($LIVEROOM_LIMIT_SYNC)")
}

// sendPathGCPercent is the garbage collector target of the processes on the
// send path (serve, uplink). Their live heap is small and their garbage is
// per request; at Go's default of 100 a collection runs every few
// milliseconds at 20,000 sends/s and its assist work lands on requests: the
// send latency p99 at 20,000 danmaku/s was 41–71 ms with 100 and 12–19 ms
// with 400 (docs/BENCHMARKS.md), for a heap about four times larger.
const sendPathGCPercent = 400

// gcFlag registers --gc-percent with default def.
func gcFlag(fs *flag.FlagSet, v *int, def int, ev *envs) {
	fs.IntVar(v, "gc-percent", ev.int("GC_PERCENT", def), "Go garbage collector target (GOGC) while the live heap is small; the heap's headroom stays within 64 MiB as connections grow it, and memory goes back to the OS when the process is idle; $GOGC, when set, wins ($LIVEROOM_GC_PERCENT)")
}

// startGC runs the collector tuner (internal/gctune) at percent, or at the
// runtime's target when $GOGC is set or percent is 0; stop ends it.
func startGC(ctx context.Context, percent int, log *slog.Logger) (stop func(), err error) {
	if os.Getenv("GOGC") != "" {
		percent = 0
	}
	t, err := gctune.New(gctune.Config{Percent: percent, Logger: log})
	if err != nil {
		return nil, err
	}
	if err := t.Start(ctx); err != nil {
		return nil, err
	}
	return func() { _ = t.Close() }, nil
}

// wordFlags registers the word-filter list shared by serve and uplink.
func wordFlags(fs *flag.FlagSet, path *string) {
	fs.StringVar(path, "word-list", env("WORD_LIST", ""), "danmaku word filter: a file with one \"block <word>\" or \"mask <word>\" per line ($LIVEROOM_WORD_LIST)")
}

// loadWords reads the word list at path; "" is no filter.
func loadWords(path string) (*moderation.WordFilter, error) {
	if path == "" {
		return nil, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("cannot open word list: %w", err)
	}
	defer f.Close()
	return moderation.ParseWordList(f)
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// dispatchFlags are the dispatch tunables (see internal/dispatch).
func dispatchFlags(fs *flag.FlagSet, c *dispatch.Config, ev *envs) {
	fs.Float64Var(&c.LoadCeiling, "load-ceiling", ev.float("LOAD_CEILING", dispatch.DefaultLoadCeiling), "never offer a gateway at or above this load ($LIVEROOM_LOAD_CEILING)")
	fs.Float64Var(&c.FillMargin, "fill-margin", ev.float("FILL_MARGIN", dispatch.DefaultFillMargin), "how strongly emptier gateways are favoured; smaller is stronger ($LIVEROOM_FILL_MARGIN)")
	fs.IntVar(&c.AffinityMaxViewers, "affinity-max-viewers", ev.int("AFFINITY_MAX_VIEWERS", dispatch.DefaultAffinityMaxViewers), "rooms with fewer viewers on a gateway stick to it; -1 disables ($LIVEROOM_AFFINITY_MAX_VIEWERS)")
	fs.Float64Var(&c.AffinityMaxLoad, "affinity-max-load", ev.float("AFFINITY_MAX_LOAD", dispatch.DefaultAffinityMaxLoad), "no room affinity above this load ($LIVEROOM_AFFINITY_MAX_LOAD)")
	fs.IntVar(&c.Replicas, "replicas-dispatch", ev.int("DISPATCH_REPLICAS", 1), "number of dispatch processes sharing the clients ($LIVEROOM_DISPATCH_REPLICAS)")
	fs.DurationVar(&c.StaleAfter, "stale-after", ev.dur("STALE_AFTER", 0), "forget a gateway silent this long; 0 = 3 beat intervals ($LIVEROOM_STALE_AFTER)")
	fs.DurationVar(&c.MaxStaleView, "max-stale-view", ev.dur("MAX_STALE_VIEW", dispatch.DefaultMaxStaleView),
		"while dispatch's own NATS does not answer, keep offering the gateways that were fresh for at most this long instead of answering 503; -1s: never ($LIVEROOM_MAX_STALE_VIEW)")
	c.GatewayHosts = splitList(env("GATEWAY_HOSTS", ""))
	fs.Var((*listValue)(&c.GatewayHosts), "gateway-hosts",
		"comma-separated hosts gateway URLs may name, e.g. gw1.example.com,*.gw.example.com; beats naming another host are refused; empty: any ($LIVEROOM_GATEWAY_HOSTS)")
}

// apiKeyFlags registers the server API's key file; the keys may also come
// from $LIVEROOM_API_KEYS ("name:key,name:key"), never from a flag (flags
// show in ps).
func apiKeyFlags(fs *flag.FlagSet, c *apikey.Config) {
	fs.StringVar(&c.File, "api-keys-file", env("API_KEYS_FILE", ""), "file of the server API's keys, one \"name lrk_…\" per line, re-read within a second of a change (docs/OPERATIONS.md); $LIVEROOM_API_KEYS adds name:key,name:key ($LIVEROOM_API_KEYS_FILE)")
	c.Env = os.Getenv("LIVEROOM_API_KEYS")
}
