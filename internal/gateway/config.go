package gateway

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/liveroom/liveroom/internal/auth"
	"github.com/liveroom/liveroom/internal/bus"
)

// Config configures a gateway. Zero values take the documented defaults.
type Config struct {
	// ID names the gateway in beats and logs. Default "gw-" + random hex.
	ID string
	// PublicURL is the WebSocket URL clients use, sent in beats
	// (ws://host:port/v1/ws). Required.
	PublicURL string
	// NC and JS connect to the backbone. Required.
	NC *nats.Conn
	JS jetstream.JetStream
	// Verifier checks viewer tokens. Required.
	Verifier *auth.Verifier
	// Logger; default slog.Default().
	Logger *slog.Logger

	// MergeWindow is how long a room's messages are merged into one frame.
	// Default 50ms. It is also the flush tick: a room's window is always a
	// whole number of ticks.
	MergeWindow time.Duration
	// MaxMergeWindow is the longest window a large room gets (see
	// RoomWriteBudget). Default 200ms; at or below MergeWindow every room
	// uses MergeWindow.
	MaxMergeWindow time.Duration
	// RoomWriteBudget is how many frame writes per second one room may cost
	// this gateway before its window grows: a room of m local members uses
	// the window m / RoomWriteBudget, between MergeWindow and MaxMergeWindow.
	// A viewer only absorbs tens of messages per second, so a big room's
	// messages arrive in fewer, fuller frames rather than being sampled
	// harder. Default 20,000 (1,000 members at 50 ms; 4,000 or more at
	// 200 ms).
	RoomWriteBudget float64
	// ViewerBudget is the live messages per second a viewer is sent; a room
	// running hotter is sampled. Reliable and staff messages are always kept.
	// Default 30.
	ViewerBudget float64
	// QueueFrames bounds the frames waiting for one slow connection. When it
	// is full, live frames are dropped and a frame carrying a reliable
	// message closes the connection (it reconnects and recovers). Default 64.
	QueueFrames int
	// QueueBytes bounds the bytes waiting for one slow connection (frames
	// are shared, so this bounds what the connection pins in memory); the
	// queue is full at QueueFrames frames or QueueBytes bytes. Default 1 MiB.
	QueueBytes int
	// ReadLimit is the largest client message accepted, in bytes: the
	// payloads of all its frames (continuations included), and what a
	// compressed one inflates to. A larger message closes that connection
	// (1009). Default 4096.
	ReadLimit int
	// NoCompress turns permessage-deflate off: the gateway declines the
	// extension and writes every frame plain. Compression costs one
	// compression per room frame (not per viewer); turn it off when CPU,
	// not bandwidth, is the tighter budget.
	NoCompress bool
	// CompressMinBytes is the smallest frame payload that is compressed;
	// smaller frames go plain to every viewer. A frame of one or two short
	// messages saves little, and compressing it costs about one write, so
	// quiet rooms stay uncompressed (deflate.go). Default 512; negative
	// compresses every frame.
	CompressMinBytes int
	// HeartbeatInterval is the longest a viewer goes without a frame: a
	// room that pushed nothing for about half of it gets a small heartbeat
	// frame (heartbeat.go), and the welcome promises it (hb_ms) so that
	// clients can leave a gateway that hangs after
	// protocol.LivenessFactor × HeartbeatInterval of silence. Default 1s;
	// negative: no heartbeats (and no promise).
	HeartbeatInterval time.Duration
	// HeartbeatNATSGrace: heartbeats stop once the gateway has been cut off
	// from NATS for this long, so that its viewers move to a gateway that
	// can deliver. Default 5s.
	HeartbeatNATSGrace time.Duration
	// PingInterval is how often an idle connection is pinged. Default 25s.
	PingInterval time.Duration
	// IdleTimeout closes a connection from which nothing (not even a pong)
	// was read for this long. Default 2.5 × PingInterval.
	IdleTimeout time.Duration
	// WriteTimeout closes a connection whose queued frames made no progress
	// for this long. Default 10s.
	WriteTimeout time.Duration
	// MaxConns is this gateway's connection capacity; upgrades beyond it get
	// 503. Default 19000 (the per-process file limit here is 20000).
	MaxConns int
	// MaxCPU, MaxBytesOut and MaxMsgsOut are the other capacity dimensions
	// of the load score (CPU in cores, bytes and messages written to viewers
	// per second). Defaults: all CPUs of the machine, 100 MB/s, 1,000,000
	// messages/s; `liveroom bench capacity` measures real ones.
	MaxCPU      float64
	MaxBytesOut float64
	MaxMsgsOut  float64
	// DrainWindow is the time over which a draining gateway spreads its
	// viewers' reconnects. Default 30s.
	DrainWindow time.Duration
	// DrainDelay is the pause between reporting "draining" (so dispatch
	// stops sending viewers) and the first reconnect notice. Default 2s.
	DrainDelay time.Duration
	// DrainRate caps reconnects per second caused by a drain; the window
	// stretches when the gateway holds more viewers than rate × window.
	// Default 1000.
	DrainRate float64
	// DrainGrace is how long after its reconnect time a viewer that has not
	// left is closed. Default 3s.
	DrainGrace time.Duration
	// ReliableWindow is how many recent reliable messages per room are kept
	// in memory to serve reconnects with since=. Default 1024.
	ReliableWindow int
	// ReplayMax bounds how many reliable messages one reconnect's catch-up
	// sends (welcome.replayed in the protocol); the rest follow on the next
	// connection. Default 10000.
	ReplayMax int
	// CheckInterval is how often every hosted room is checked against the
	// reliable stream while the stream moves (reliable.go): the safety net
	// under the gap detection, for a room's last message lost on its way.
	// Checks are incremental (only rooms with messages newer than the last
	// check are answered) and skipped while the stream does not move.
	// Default 2s.
	CheckInterval time.Duration
	// HistoryDanmaku and HistoryGifts are how many of a room's last
	// danmaku and gifts a viewer joining without since= gets in the history
	// frame after its welcome (history.go). Defaults DefaultHistoryDanmaku
	// (20) and DefaultHistoryGifts (10); negative: none of that kind (both
	// negative: no history at all, and no ring per room).
	HistoryDanmaku int
	HistoryGifts   int
	// HistoryIdle drops a room's history after this long without a danmaku
	// or a gift, so that rooms gone quiet cost what idle rooms cost.
	// Default 10m.
	HistoryIdle time.Duration
	// HistoryWait is the longest the rooms of a start batch wait for their
	// history reads from the streams before their first joiners are
	// welcomed; a read that takes longer fills the history when it ends,
	// for the joins after it (the rooms have their last gift and danmaku
	// at once: the start's own requests return them). Default 20ms: what
	// the reads take on a quiet system, not enough to hold up a join storm.
	HistoryWait time.Duration
	// RoomLinger keeps a room's subscriptions for this long after its last
	// local viewer left, so a reconnecting viewer does not cause churn.
	// Default 2s.
	RoomLinger time.Duration
	// BeatInterval is how often the load beat is published. Default 1s.
	BeatInterval time.Duration
	// CountInterval is the minimum time between two online-count pushes to a
	// room; counts are pushed only when they changed. Default 2s.
	CountInterval time.Duration
	// Shards is the number of registry shards. Default 64.
	Shards int
	// Flushers is the number of goroutines flushing rooms. Default GOMAXPROCS.
	Flushers int

	// Edge limits (edge.go, docs/SECURITY.md).

	// AllowedOrigins lists the web origins (scheme://host[:port], or
	// scheme://*.domain for every subdomain) whose pages may open a
	// WebSocket here; a handshake with another Origin header gets 403
	// origin_not_allowed. Empty (or "*") allows every origin. A handshake
	// without an Origin header (not a browser) is always allowed.
	AllowedOrigins []string
	// MaxConnsPerIP bounds the connections one peer address holds here;
	// more get 429 too_many_connections. Default DefaultMaxConnsPerIP (1000:
	// a NAT of a campus or a mobile carrier shares one address); negative:
	// unlimited.
	MaxConnsPerIP int
	// HandshakeRate and HandshakeBurst bound the handshakes per second one
	// peer address may start (counted before the token is checked, so a
	// flood of bad tokens costs no verification); more get 429
	// handshake_rate_limited. Defaults DefaultHandshakeRate (200/s) and
	// DefaultHandshakeBurst (400); a negative rate is unlimited.
	HandshakeRate  float64
	HandshakeBurst int
	// TrustedProxies lists the proxies (addresses or CIDR prefixes) whose
	// X-Forwarded-For is believed: a handshake from one of them is counted
	// against the rightmost hop of that header that is not itself a trusted
	// proxy. Empty (the default): the TCP peer is counted, loopback
	// included, and X-Forwarded-For is ignored.
	TrustedProxies []string
	// MaxConnsPerUser bounds the connections one user (the token's sub)
	// holds on this gateway, counted after the token is verified; more get
	// 429 too_many_user_connections. Default DefaultMaxConnsPerUser (20);
	// negative: unlimited. Per gateway process: behind N gateways a user may
	// hold N × this.
	MaxConnsPerUser int
	// HeaderTimeout is the longest a client may take to send its handshake
	// (request line and headers) and MaxHeaderBytes their largest size;
	// applied by ConfigureHTTP. Defaults DefaultHeaderTimeout (10s) and
	// DefaultMaxHeaderBytes (32 KiB).
	HeaderTimeout  time.Duration
	MaxHeaderBytes int
}

// DefaultConfig is the tunables' defaults: what every zero field of a
// Config takes, and what the command line's flags start from. Fields whose
// default depends on another field or on the machine stay zero (IdleTimeout:
// 2.5 × PingInterval; MaxCPU and Flushers: this machine's CPUs), as do the
// edge lists (AllowedOrigins, TrustedProxies: none).
func DefaultConfig() Config {
	var c Config
	c.fillDefaults()
	return c
}

// fillDefaults sets every zero tunable with a fixed default.
func (c *Config) fillDefaults() {
	setDur(&c.MergeWindow, 50*time.Millisecond)
	setDur(&c.MaxMergeWindow, 200*time.Millisecond)
	if c.RoomWriteBudget <= 0 {
		c.RoomWriteBudget = 20000
	}
	if c.ViewerBudget <= 0 {
		c.ViewerBudget = 30
	}
	setInt(&c.QueueFrames, 64)
	setInt(&c.QueueBytes, 1<<20)
	setInt(&c.ReadLimit, 4096)
	if c.CompressMinBytes == 0 {
		c.CompressMinBytes = DefaultCompressMinBytes
	}
	if c.HeartbeatInterval == 0 {
		c.HeartbeatInterval = time.Second
	}
	setDur(&c.HeartbeatNATSGrace, 5*time.Second)
	setDur(&c.PingInterval, 25*time.Second)
	setDur(&c.WriteTimeout, 10*time.Second)
	setInt(&c.MaxConns, 19000)
	if c.MaxBytesOut <= 0 {
		c.MaxBytesOut = 100e6
	}
	if c.MaxMsgsOut <= 0 {
		c.MaxMsgsOut = 1e6
	}
	setDur(&c.DrainWindow, 30*time.Second)
	setDur(&c.DrainDelay, 2*time.Second)
	if c.DrainRate <= 0 {
		c.DrainRate = 1000
	}
	setDur(&c.DrainGrace, 3*time.Second)
	setInt(&c.ReliableWindow, 1024)
	setInt(&c.ReplayMax, 10000)
	if c.HistoryDanmaku == 0 {
		c.HistoryDanmaku = DefaultHistoryDanmaku
	}
	if c.HistoryGifts == 0 {
		c.HistoryGifts = DefaultHistoryGifts
	}
	setDur(&c.HistoryIdle, 10*time.Minute)
	setDur(&c.HistoryWait, 20*time.Millisecond)
	setDur(&c.RoomLinger, 2*time.Second)
	setDur(&c.CheckInterval, 2*time.Second)
	setDur(&c.BeatInterval, time.Second)
	setDur(&c.CountInterval, 2*time.Second)
	setInt(&c.Shards, 64)
	if c.MaxConnsPerIP == 0 {
		c.MaxConnsPerIP = DefaultMaxConnsPerIP
	}
	if c.MaxConnsPerUser == 0 {
		c.MaxConnsPerUser = DefaultMaxConnsPerUser
	}
	if c.HandshakeRate == 0 {
		c.HandshakeRate = DefaultHandshakeRate
	}
	setInt(&c.HandshakeBurst, DefaultHandshakeBurst)
	setDur(&c.HeaderTimeout, DefaultHeaderTimeout)
	setInt(&c.MaxHeaderBytes, DefaultMaxHeaderBytes)
}

func (c *Config) setDefaults() error {
	if c.NC == nil || c.JS == nil {
		return errors.New("cannot create gateway: NATS connection and JetStream are required")
	}
	if c.Verifier == nil {
		return errors.New("cannot create gateway: a token verifier is required")
	}
	if c.PublicURL == "" {
		return errors.New("cannot create gateway: a public URL is required")
	}
	return c.resolve()
}

// resolve fills the id, the logger and the defaults, and checks the
// tunables.
func (c *Config) resolve() error {
	if c.ID == "" {
		c.ID = NewID()
	}
	if !bus.ValidGatewayID(c.ID) {
		return errors.New("cannot create gateway: id must be 1-64 characters of A-Z a-z 0-9 _ -")
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	c.fillDefaults()
	if c.MaxMergeWindow < c.MergeWindow {
		c.MaxMergeWindow = c.MergeWindow
	}
	if c.HeartbeatInterval > 0 && c.HeartbeatInterval < 100*time.Millisecond {
		return fmt.Errorf("cannot create gateway: heartbeat interval %s is below 100ms (each one is a write to every idle viewer)", c.HeartbeatInterval)
	}
	// Defaults that depend on another field or on the machine.
	setDur(&c.IdleTimeout, c.PingInterval*5/2)
	if c.MaxCPU <= 0 {
		c.MaxCPU = float64(runtime.NumCPU())
	}
	setInt(&c.Flushers, runtime.GOMAXPROCS(0))
	if c.HistoryDanmaku > MaxHistory || c.HistoryGifts > MaxHistory {
		return fmt.Errorf("cannot create gateway: history of %d danmaku and %d gifts is more than %d of a kind (one frame per join)", c.HistoryDanmaku, c.HistoryGifts, MaxHistory)
	}
	return nil
}

// Defaults of Config.HistoryDanmaku and Config.HistoryGifts.
const (
	DefaultHistoryDanmaku = 20
	DefaultHistoryGifts   = 10
	// MaxHistory bounds either: the history frame is sent to every first
	// join, and read from the streams at every room start.
	MaxHistory = 200
)

// DefaultCompressMinBytes is Config.CompressMinBytes's default.
const DefaultCompressMinBytes = 512

// NewID returns a random gateway id, "gw-" and 8 hex digits.
func NewID() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return "gw-" + hex.EncodeToString(b[:])
}

func setDur(d *time.Duration, def time.Duration) {
	if *d <= 0 {
		*d = def
	}
}

func setInt(i *int, def int) {
	if *i <= 0 {
		*i = def
	}
}
