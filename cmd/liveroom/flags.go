package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/liveroom/liveroom/internal/apikey"

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

// bool reads a boolean variable; def when unset.
func (e *envs) bool(name string, def bool) bool {
	s := os.Getenv("LIVEROOM_" + name)
	if s == "" {
		return def
	}
	v, err := strconv.ParseBool(s)
	if err != nil {
		e.bad(name, s, "true or false")
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

// flagTable registers a command's flags, one rule for all of them:
//   - the default is the value the field holds when it is registered, which
//     the command fills from the package that owns it (gateway.DefaultConfig,
//     uplink.DefaultConfig, autoscale.DefaultPolicy, dispatch's Default…
//     constants): a default is written once;
//   - $LIVEROOM_<NAME> overrides the default, NAME being the flag's name in
//     capitals with dashes as underscores, after the table's prefix (the
//     nats command's NATS_, the autoscale command's AUTOSCALE_), and the
//     usage ends with the variable's name. A value that does not parse stops
//     the command (envs).
//
// Two flags keep the variable they had before the rule (as): gateway --id
// ($LIVEROOM_GATEWAY_ID) and dispatch --replicas-dispatch
// ($LIVEROOM_DISPATCH_REPLICAS); nats --data-dir is $LIVEROOM_DATA_DIR like
// every --data-dir. Secrets (--jwt-secret, --nats-password) read their
// variable themselves (secretValue).
type flagTable struct {
	fs  *flag.FlagSet
	ev  *envs
	pre string // after LIVEROOM_, before the flag's name
	as  string // the variable of the next flag, whole, after LIVEROOM_
}

// newFlagTable starts the table of fs.
func newFlagTable(fs *flag.FlagSet, ev *envs) flagTable { return flagTable{fs: fs, ev: ev} }

// prefixed is t with variables named prefix + the flag's name.
func (t flagTable) prefixed(prefix string) flagTable {
	t.pre = prefix
	return t
}

// envAs is t for one flag whose variable is LIVEROOM_<name>.
func (t flagTable) envAs(name string) flagTable {
	t.as = name
	return t
}

// envName is the variable of flag name, after LIVEROOM_.
func (t flagTable) envName(name string) string {
	if t.as != "" {
		return t.as
	}
	return t.pre + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

func (t flagTable) usage(name, usage string) string {
	return usage + " ($LIVEROOM_" + t.envName(name) + ")"
}

func (t flagTable) Int(p *int, name, usage string) {
	t.fs.IntVar(p, name, t.ev.int(t.envName(name), *p), t.usage(name, usage))
}

func (t flagTable) Float(p *float64, name, usage string) {
	t.fs.Float64Var(p, name, t.ev.float(t.envName(name), *p), t.usage(name, usage))
}

func (t flagTable) Duration(p *time.Duration, name, usage string) {
	t.fs.DurationVar(p, name, t.ev.dur(t.envName(name), *p), t.usage(name, usage))
}

func (t flagTable) Bool(p *bool, name, usage string) {
	t.fs.BoolVar(p, name, t.ev.bool(t.envName(name), *p), t.usage(name, usage))
}

func (t flagTable) String(p *string, name, usage string) {
	t.fs.StringVar(p, name, env(t.envName(name), *p), t.usage(name, usage))
}

// Var registers a flag of its own type (lists, counts); the variable, when
// set, is parsed by v.Set.
func (t flagTable) Var(v flag.Value, name, usage string) {
	if s := env(t.envName(name), ""); s != "" {
		if err := v.Set(s); err != nil {
			t.ev.bad(t.envName(name), s, err.Error())
		}
	}
	t.fs.Var(v, name, t.usage(name, usage))
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

func (l *logFlags) register(t flagTable) {
	l.level = "info"
	t.String(&l.level, "log-level", "log level: debug, info, warn, error")
	l.format = "text"
	t.String(&l.format, "log-format", "log format: text or json")
}

// gatewayFlags are the gateway tunables shared by serve and gateway.
// c holds the defaults (gateway.DefaultConfig).
func gatewayFlags(t flagTable, c *gateway.Config) {
	t.Duration(&c.MergeWindow, "merge-window", "per-room merge window, and the window of rooms up to --room-write-budget × window members")
	t.Duration(&c.MaxMergeWindow, "max-merge-window", "longest merge window of a large room; = --merge-window turns adaptive windows off")
	t.Float(&c.RoomWriteBudget, "room-write-budget", "frame writes per second one room may cost a gateway before its window grows")
	t.Float(&c.ViewerBudget, "viewer-budget", "live messages per viewer per second before sampling")
	t.Int(&c.MaxConns, "max-conns", "connection capacity of the gateway")
	t.Int(&c.QueueFrames, "queue-frames", "frames queued per slow connection before live frames are dropped")
	t.Int(&c.ReadLimit, "read-limit", "largest client message in bytes, all its frames together")
	t.Bool(&c.NoCompress, "no-compress", "decline permessage-deflate and write every frame plain, when CPU rather than bandwidth is the tighter budget")
	t.Int(&c.CompressMinBytes, "compress-min-bytes", "frames with a smaller payload go plain even to viewers that negotiated compression; -1 compresses all")
	t.Duration(&c.HeartbeatInterval, "heartbeat-interval", "longest a viewer goes without a frame: quiet rooms get a small heartbeat, and clients leave a gateway silent for 1.75× this; negative: none")
	t.Var((*historyFlag)(&c.HistoryDanmaku), "history-danmaku", "last danmaku of a room a viewer joining without since= gets in the history frame after its welcome; 0: none")
	t.Var((*historyFlag)(&c.HistoryGifts), "history-gifts", "last gifts of a room in that history frame; 0: none")
	t.Duration(&c.PingInterval, "ping-interval", "ping idle connections this often")
	t.Float(&c.MaxCPU, "max-cpu", "CPU capacity in cores for the load score; 0 = all CPUs")
	t.Float(&c.MaxBytesOut, "max-bytes-out", "bytes/s to viewers at full load")
	t.Float(&c.MaxMsgsOut, "max-msgs-out", "messages/s to viewers at full load")
	t.Duration(&c.DrainWindow, "drain-window", "a drain spreads reconnects over this window")
	t.Duration(&c.DrainDelay, "drain-delay", "pause between reporting draining and the first reconnect notice")
	t.Float(&c.DrainRate, "drain-rate", "most reconnects per second a drain causes")
	t.Duration(&c.DrainGrace, "drain-grace", "a viewer still connected this long after its reconnect time is closed")
	edgeFlags(t, c)
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
// c holds the defaults (uplink.DefaultConfig).
func uplinkFlags(t flagTable, c *uplink.Config, gifts *string) {
	t.Bool(&c.ClientGifts, "client-gifts", "accept gifts sent with users' tokens; without it (and with a JWT secret) only the platform's backend sends gifts, through the server API after payment; dev mode always accepts them")
	*gifts = strings.Join(uplink.DefaultGifts, ",")
	t.String(gifts, "gifts", "gift catalogue, comma separated")
	t.Float(&c.UserRate, "user-rate", "danmaku per user per second")
	t.Int(&c.UserBurst, "user-burst", "danmaku burst per user")
	t.Float(&c.RoomRate, "room-rate", "danmaku per room per second, all senders")
	t.Float(&c.GiftRate, "gift-rate", "gift requests per user per second, across rooms")
	t.Int(&c.GiftBurst, "gift-burst", "gift burst per user")
	t.Float(&c.LikeRate, "like-rate", "likes (summed counts) per user per second, across rooms")
	t.Int(&c.LikeBurst, "like-burst", "like burst per user, at least 999")
	t.String(&c.ID, "uplink-id", "this uplink's name to the other uplinks, [A-Za-z0-9_-]{1,64}, unique; empty: a random one")
	t.Duration(&c.FleetInterval, "limit-sync", "how often uplinks exchange the usage of their hot rate-limit keys, so that every limit holds across all uplinks; negative: off, each uplink enforces every limit alone")
}

// sendPathGCPercent is the garbage collector target of the processes on the
// send path (serve, uplink). Their live heap is small and their garbage is
// per request; at Go's default of 100 a collection runs every few
// milliseconds at 20,000 sends/s and its assist work lands on requests: the
// send latency p99 at 20,000 danmaku/s was 41–71 ms with 100 and 12–19 ms
// with 400 (docs/BENCHMARKS.md), for a heap about four times larger.
const sendPathGCPercent = 400

// gcFlag registers --gc-percent with default def.
func gcFlag(t flagTable, v *int, def int) {
	*v = def
	t.Int(v, "gc-percent", "Go garbage collector target (GOGC) while the live heap is small; the heap's headroom stays within 64 MiB as connections grow it, and memory goes back to the OS when the process is idle; $GOGC, when set, wins")
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
func wordFlags(t flagTable, path *string) {
	t.String(path, "word-list", "danmaku word filter: a file with one \"block <word>\" or \"mask <word>\" per line")
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
func dispatchFlags(t flagTable, c *dispatch.Config) {
	c.LoadCeiling = dispatch.DefaultLoadCeiling
	t.Float(&c.LoadCeiling, "load-ceiling", "never offer a gateway at or above this load")
	c.FillMargin = dispatch.DefaultFillMargin
	t.Float(&c.FillMargin, "fill-margin", "how strongly emptier gateways are favoured; smaller is stronger")
	c.AffinityMaxViewers = dispatch.DefaultAffinityMaxViewers
	t.Int(&c.AffinityMaxViewers, "affinity-max-viewers", "rooms with fewer viewers on a gateway stick to it; -1 disables")
	c.AffinityMaxLoad = dispatch.DefaultAffinityMaxLoad
	t.Float(&c.AffinityMaxLoad, "affinity-max-load", "no room affinity above this load")
	c.Replicas = 1
	t.envAs("DISPATCH_REPLICAS").Int(&c.Replicas, "replicas-dispatch", "number of dispatch processes sharing the clients")
	t.Duration(&c.StaleAfter, "stale-after", "forget a gateway silent this long; 0 = 3 beat intervals")
	c.MaxStaleView = dispatch.DefaultMaxStaleView
	t.Duration(&c.MaxStaleView, "max-stale-view", "while dispatch's own NATS does not answer, keep offering the gateways that were fresh for at most this long instead of answering 503; -1s: never")
	t.Var((*listValue)(&c.GatewayHosts), "gateway-hosts",
		"comma-separated hosts gateway URLs may name, e.g. gw1.example.com,*.gw.example.com; beats naming another host are refused; empty: any")
}

// apiKeyFlags registers the server API's key file; the keys may also come
// from $LIVEROOM_API_KEYS ("name:key,name:key"), never from a flag (flags
// show in ps).
func apiKeyFlags(t flagTable, c *apikey.Config) {
	t.String(&c.File, "api-keys-file", "file of the server API's keys, one \"name lrk_…\" per line, re-read within a second of a change (docs/OPERATIONS.md); $LIVEROOM_API_KEYS adds name:key,name:key")
	c.Env = os.Getenv("LIVEROOM_API_KEYS")
}
