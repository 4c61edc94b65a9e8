package main

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/liveroom/liveroom/internal/gateway"
	"github.com/liveroom/liveroom/internal/uplink"
)

// env returns $LIVEROOM_<NAME> or def; every role flag can be set this way.
func env(name, def string) string {
	if v, ok := os.LookupEnv("LIVEROOM_" + name); ok {
		return v
	}
	return def
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(env(name, "")); err == nil {
		return v
	}
	return def
}

func envFloat(name string, def float64) float64 {
	if v, err := strconv.ParseFloat(env(name, ""), 64); err == nil {
		return v
	}
	return def
}

func envDur(name string, def time.Duration) time.Duration {
	if v, err := time.ParseDuration(env(name, "")); err == nil {
		return v
	}
	return def
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
func gatewayFlags(fs *flag.FlagSet, c *gateway.Config) {
	fs.DurationVar(&c.MergeWindow, "merge-window", envDur("MERGE_WINDOW", 50*time.Millisecond), "per-room merge window ($LIVEROOM_MERGE_WINDOW)")
	fs.Float64Var(&c.ViewerBudget, "viewer-budget", envFloat("VIEWER_BUDGET", 30), "live messages per viewer per second before sampling ($LIVEROOM_VIEWER_BUDGET)")
	fs.IntVar(&c.MaxConns, "max-conns", envInt("MAX_CONNS", 19000), "connection capacity of the gateway ($LIVEROOM_MAX_CONNS)")
	fs.IntVar(&c.QueueFrames, "queue-frames", envInt("QUEUE_FRAMES", 64), "frames queued per slow connection before live frames are dropped ($LIVEROOM_QUEUE_FRAMES)")
	fs.IntVar(&c.ReadLimit, "read-limit", envInt("READ_LIMIT", 4096), "largest client frame in bytes ($LIVEROOM_READ_LIMIT)")
	fs.DurationVar(&c.PingInterval, "ping-interval", envDur("PING_INTERVAL", 25*time.Second), "ping idle connections this often ($LIVEROOM_PING_INTERVAL)")
}

// uplinkFlags are the uplink tunables shared by serve and uplink.
func uplinkFlags(fs *flag.FlagSet, c *uplink.Config, gifts *string) {
	fs.StringVar(gifts, "gifts", env("GIFTS", "rose,heart,rocket,castle,car"), "gift catalogue, comma separated ($LIVEROOM_GIFTS)")
	fs.Float64Var(&c.UserRate, "user-rate", envFloat("USER_RATE", 2), "danmaku per user per second ($LIVEROOM_USER_RATE)")
	fs.IntVar(&c.UserBurst, "user-burst", envInt("USER_BURST", 5), "danmaku burst per user ($LIVEROOM_USER_BURST)")
	fs.Float64Var(&c.RoomRate, "room-rate", envFloat("ROOM_RATE", 1000), "danmaku per room per second, all senders ($LIVEROOM_ROOM_RATE)")
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
