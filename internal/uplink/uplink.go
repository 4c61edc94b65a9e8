// Package uplink is liveroom's send path: the HTTP API through which viewers
// and anchors send danmaku, gifts and likes into a room. It authenticates,
// validates, rate-limits and publishes to NATS; it never talks to viewers.
//
//   - danmaku (live class) are core-published once to the room's live subject;
//   - gifts (reliable class) are stored in JetStream under a message id derived
//     from the sender's Idempotency-Key, and answered only after the store
//     acknowledged them, so a retried gift is stored once;
//   - likes (aggregate class) are summed per room in memory and, every
//     LikeWindow, added to the room's total in the room-state bucket and
//     published as one aggregate.
package uplink

import (
	"context"
	"errors"
	"fmt"
	"github.com/prometheus/client_golang/prometheus"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/liveroom/liveroom/internal/auth"
	"github.com/liveroom/liveroom/internal/bus"
	"github.com/liveroom/liveroom/internal/moderation"
	"github.com/liveroom/liveroom/internal/protocol"
	"github.com/liveroom/liveroom/internal/session"
)

// DefaultGifts is the gift catalogue used when Config.Gifts is empty.
var DefaultGifts = protocol.DefaultGifts

// Config configures a Server. Zero values mean the documented defaults.
type Config struct {
	// NC publishes danmaku and like aggregates. Required; owned by the caller.
	NC *nats.Conn
	// JS stores gifts and like totals. Required. The reliable stream and the
	// room-state bucket must exist (bus.EnsureStreams); New does not create
	// them.
	JS jetstream.JetStream
	// Verifier authenticates senders. Required.
	Verifier *auth.Verifier
	// Logger; default slog.Default().
	Logger *slog.Logger
	// Gifts is the gift catalogue: names of [a-z0-9_-]{1,32}, no duplicates.
	// Default DefaultGifts.
	Gifts []string
	// UserRate is how many danmaku one user may send per second, on
	// average. Default 2.
	UserRate float64
	// UserBurst is the size of a user's danmaku bucket. Default 5.
	UserBurst int
	// RoomRate caps the danmaku per second accepted for one room, burst
	// equal to the rate (at least 1). Default 1000.
	RoomRate float64
	// GiftRate and GiftBurst bound the gift requests of one user, across
	// rooms: a person sends a gift every few seconds, a script thousands.
	// Defaults 1 per second, burst 10.
	GiftRate  float64
	GiftBurst int
	// LikeRate and LikeBurst bound the likes (the sum of the counts) one
	// user sends, across rooms: a tap is a like, a held finger a few tens a
	// second. The burst is at least MaxCount, so one request of any valid
	// count fits. Defaults 50 per second, burst 1000.
	LikeRate  float64
	LikeBurst int
	// LikeWindow is how often pending likes are stored and published.
	// Default 500ms.
	LikeWindow time.Duration
	// PublishTimeout bounds the wait for a gift's JetStream ack and for one
	// like flush. Default 5s.
	PublishTimeout time.Duration
	// MaxBody is the largest request body in bytes. Default 4096.
	MaxBody int64
	// Moderation, when set, is checked on every send: closed rooms, bans,
	// mutes, mute-all and slow mode. Owned by the caller.
	Moderation *moderation.Cache
	// Words, when set, filters danmaku text (mask or block per word).
	Words *moderation.WordFilter
	// ClientGifts lets users' tokens send gifts (POST
	// /v1/rooms/{room}/messages type gift). False: a gift is paid for, so
	// only the platform's backend sends it, through the server API after
	// payment, and a user's gift answers 403 client_gifts_disabled.
	// `serve` in dev mode sets it so that the demo page can send gifts;
	// with a secret it is --client-gifts.
	ClientGifts bool
	// ID names this uplink to the other uplinks (fleet-wide limits):
	// 1-64 of [A-Za-z0-9_-], unique in the fleet. Default a random one.
	ID string
	// FleetInterval is how often this uplink reports its usage to the
	// others on lr.uplink.usage, and so how soon a share follows a user who
	// moved to another uplink. Default DefaultFleetInterval (250ms);
	// negative turns fleet-wide limits off: every uplink then enforces the
	// whole of each limit on its own (N uplinks allow N × the rates).
	FleetInterval time.Duration
}

// Server serves the send API. Create it with New, serve Handler and run Run
// for as long as Handler serves: Run stores likes and evicts idle limiters.
// All methods are safe for concurrent use.
type Server struct {
	cfg   Config
	log   *slog.Logger
	gifts catalogue
	users *limiterSet
	rooms *limiterSet
	// giftUsers and likeUsers bound each user's gifts (requests) and likes
	// (counts), across rooms.
	giftUsers *limiterSet
	likeUsers *limiterSet
	likes     *likeAgg
	slow      *slowMode
	fleet     *fleet // nil when fleet-wide limits are off
	stats     counters

	// latency observers by message type; nil until Register.
	latency map[string]prometheus.Observer

	running  atomic.Bool
	sessions *session.Cache     // stamps messages with their live session (session.go)
	kv       jetstream.KeyValue // opened lazily by the Run goroutine only
}

// DefaultConfig is the tunables' defaults: what every zero field of a
// Config takes, and what the command line's flags start from. Gifts stay
// empty (DefaultGifts).
func DefaultConfig() Config {
	var c Config
	c.fillDefaults()
	return c
}

// fillDefaults sets every zero tunable.
func (c *Config) fillDefaults() {
	if c.UserRate == 0 {
		c.UserRate = 2
	}
	if c.UserBurst == 0 {
		c.UserBurst = 5
	}
	if c.RoomRate == 0 {
		c.RoomRate = 1000
	}
	if c.GiftRate == 0 {
		c.GiftRate = 1
	}
	if c.GiftBurst == 0 {
		c.GiftBurst = 10
	}
	if c.LikeRate == 0 {
		c.LikeRate = 50
	}
	if c.LikeBurst == 0 {
		c.LikeBurst = 1000
	}
	if c.LikeWindow == 0 {
		c.LikeWindow = 500 * time.Millisecond
	}
	if c.PublishTimeout == 0 {
		c.PublishTimeout = 5 * time.Second
	}
	if c.MaxBody == 0 {
		c.MaxBody = 4096
	}
	if c.FleetInterval == 0 {
		c.FleetInterval = DefaultFleetInterval
	}
}

// New validates cfg, fills defaults and returns a Server. It does no I/O.
func New(cfg Config) (*Server, error) {
	if cfg.NC == nil || cfg.JS == nil || cfg.Verifier == nil {
		return nil, errors.New("cannot create uplink: NC, JS and Verifier are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if len(cfg.Gifts) == 0 {
		cfg.Gifts = DefaultGifts
	}
	gifts := make(catalogue, len(cfg.Gifts))
	for _, g := range cfg.Gifts {
		if !validGiftName(g) {
			return nil, fmt.Errorf("cannot create uplink: gift name %q: want [a-z0-9_-]{1,32}", g)
		}
		if _, dup := gifts[g]; dup {
			return nil, fmt.Errorf("cannot create uplink: gift %q listed twice", g)
		}
		gifts[g] = struct{}{}
	}
	cfg.Gifts = append([]string(nil), cfg.Gifts...)
	cfg.fillDefaults()
	cfg.LikeBurst = max(cfg.LikeBurst, MaxCount)
	if cfg.ID == "" {
		cfg.ID = "up-" + nuid.Next()
	}
	if !bus.ValidUplinkID(cfg.ID) {
		return nil, fmt.Errorf("cannot create uplink: id %q: want [A-Za-z0-9_-]{1,64}", cfg.ID)
	}
	switch {
	case cfg.UserRate < 0 || cfg.UserBurst < 0 || cfg.RoomRate < 0 || cfg.GiftRate < 0 || cfg.GiftBurst < 0 || cfg.LikeRate < 0 || cfg.LikeBurst < 0:
		return nil, errors.New("cannot create uplink: rates and bursts must be positive")
	case cfg.FleetInterval > time.Minute:
		// Other uplinks drop reports announcing more (bus.DecodeUsage).
		return nil, errors.New("cannot create uplink: FleetInterval is at most 1m")
	case cfg.LikeWindow < 0 || cfg.PublishTimeout < 0 || cfg.MaxBody < 0:
		return nil, errors.New("cannot create uplink: LikeWindow, PublishTimeout and MaxBody must be positive")
	}
	s := &Server{
		cfg:       cfg,
		log:       cfg.Logger.With("component", "uplink"),
		gifts:     gifts,
		users:     newLimiterSet(cfg.UserRate, cfg.UserBurst),
		rooms:     newLimiterSet(cfg.RoomRate, max(int(cfg.RoomRate), 1)),
		giftUsers: newLimiterSet(cfg.GiftRate, cfg.GiftBurst),
		likeUsers: newLimiterSet(cfg.LikeRate, cfg.LikeBurst),
		likes:     newLikeAgg(),
		slow:      newSlowMode(),

		sessions: session.NewCache(cfg.JS, cfg.Logger),
	}
	if cfg.FleetInterval > 0 {
		s.fleet = newFleet(cfg.ID, cfg.FleetInterval)
		for c, set := range s.sets() {
			set.class, set.fleet = c, s.fleet
		}
	}
	s.stats.init()
	return s, nil
}

func validGiftName(g string) bool {
	if len(g) == 0 || len(g) > 32 {
		return false
	}
	for i := 0; i < len(g); i++ {
		c := g[i]
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '_' && c != '-' {
			return false
		}
	}
	return true
}

// Run stores and publishes likes every LikeWindow and evicts idle rate
// limiters, until ctx is done. It then flushes the pending likes once more
// (bounded by PublishTimeout) and returns nil. Stop serving Handler before
// cancelling ctx: likes accepted after Run returned stay pending. Run may not
// be called twice at once.
func (s *Server) Run(ctx context.Context) error {
	if !s.running.CompareAndSwap(false, true) {
		return errors.New("cannot run uplink: already running")
	}
	defer s.running.Store(false)
	defer s.runSessions(ctx)()
	defer s.runFleet(ctx)()
	likeTick := time.NewTicker(s.cfg.LikeWindow)
	defer likeTick.Stop()
	sweepTick := time.NewTicker(limiterSweepEvery)
	defer sweepTick.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx := context.WithoutCancel(ctx)
			s.flushLikes(fctx)
			if rooms, likes := s.likes.pending(); rooms > 0 {
				s.log.Error("likes not stored at shutdown", "rooms", rooms, "likes", likes)
			}
			return nil
		case <-likeTick.C:
			s.flushLikes(ctx)
		case now := <-sweepTick.C:
			s.slow.sweep(now)
			u, r := s.users.sweep(now)+s.giftUsers.sweep(now)+s.likeUsers.sweep(now), s.rooms.sweep(now)
			if u+r > 0 {
				s.log.Debug("evicted idle rate limiters", "users", u, "rooms", r)
			}
		}
	}
}

// Stats is a snapshot of a Server's counters since New.
type Stats struct {
	// Danmaku is the number of danmaku published.
	Danmaku uint64
	// Gifts is the number of gift requests answered 202, duplicates included.
	Gifts uint64
	// GiftDuplicates counts gift requests JetStream recognised as retries.
	GiftDuplicates uint64
	// LikeRequests is the number of like requests answered 202.
	LikeRequests uint64
	// Likes is the sum of the counts of those requests.
	Likes uint64
	// LikeMessages is the number of like aggregates published.
	LikeMessages uint64
	// LikeFlushErrors counts rooms (or whole flushes) whose totals could not
	// be stored; their likes were kept for the next window.
	LikeFlushErrors uint64
	// LikesPending is the sum of likes waiting for a flush.
	LikesPending int64
	// Rejected counts error answers by error code (invalid_room,
	// user_rate_limited, unavailable, ...). The map is a copy.
	Rejected map[string]uint64
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	_, pending := s.likes.pending()
	st := Stats{
		Danmaku:         s.stats.danmaku.Load(),
		Gifts:           s.stats.gifts.Load(),
		GiftDuplicates:  s.stats.giftDuplicates.Load(),
		LikeRequests:    s.stats.likeRequests.Load(),
		Likes:           s.stats.likes.Load(),
		LikeMessages:    s.stats.likeMessages.Load(),
		LikeFlushErrors: s.stats.likeFlushErrors.Load(),
		LikesPending:    pending,
		Rejected:        make(map[string]uint64),
	}
	for code, c := range s.stats.rejected {
		if n := c.Load(); n > 0 {
			st.Rejected[code] = n
		}
	}
	return st
}

// counters are the atomic counters behind Stats. rejected is filled by
// init and only read afterwards, so it needs no lock.
type counters struct {
	danmaku, gifts, giftDuplicates    atomic.Uint64
	likeRequests, likes, likeMessages atomic.Uint64
	likeFlushErrors                   atomic.Uint64
	rejected                          map[string]*atomic.Uint64
}

// rejectCodeOther counts any code not listed in init.
const rejectCodeOther = "other"

func (c *counters) init() {
	c.rejected = make(map[string]*atomic.Uint64)
	for _, code := range []string{
		protocol.CodeInvalidRoom, protocol.CodeUnauthorized, protocol.CodeTooLarge,
		protocol.CodeBadRequest, protocol.CodeInvalidJSON, protocol.CodeUnknownType,
		protocol.CodeInvalidField, protocol.CodeUnknownGift, protocol.CodeMissingIdemKey,
		protocol.CodeUserRateLimited, protocol.CodeRoomRateLimited, protocol.CodeUnavailable,
		protocol.CodeMethodNotAllowed, protocol.CodeInternal, rejectCodeOther,
		protocol.CodeRoomClosed, protocol.CodeBanned, protocol.CodeMuted, protocol.CodeMutedAll,
		protocol.CodeSlowMode, protocol.CodeBlockedWord, protocol.CodeClientGiftsOff,
		protocol.CodeAPIKeyRequired, protocol.CodeAPIKeyInvalid, protocol.CodeAPIKeyRevoked,
		protocol.CodeTokenNotAccepted, protocol.CodeAPIKeyNotAccepted, protocol.CodeNotFound, protocol.CodeOrderReused,
	} {
		c.rejected[code] = new(atomic.Uint64)
	}
}

func (c *counters) reject(code string) {
	n, ok := c.rejected[code]
	if !ok {
		n = c.rejected[rejectCodeOther]
	}
	n.Add(1)
}
