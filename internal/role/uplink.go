package role

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/liveroom/liveroom/internal/apikey"
	"github.com/liveroom/liveroom/internal/moderation"
	"github.com/liveroom/liveroom/internal/presence"
	"github.com/liveroom/liveroom/internal/protocol"
	"github.com/liveroom/liveroom/internal/replay"
	"github.com/liveroom/liveroom/internal/router"
	"github.com/liveroom/liveroom/internal/uplink"
)

// UplinkConfig configures the uplink role.
type UplinkConfig struct {
	// Uplink tunes the send path (its NC, JS, Verifier, Logger and
	// Moderation come from the role).
	Uplink uplink.Config
	// APIKeys are the server API's keys.
	APIKeys apikey.Config
	// DevAPIKey, when no key is configured, makes one ("dev") and logs it:
	// for a dev-mode serve, which listens on loopback only.
	DevAPIKey bool
}

// Uplink is the uplink role: the send API, moderation, the server API for
// the platform's backend and the public list of live rooms.
type Uplink struct {
	d   Deps
	cfg UplinkConfig

	cache     *moderation.Cache
	up        *uplink.Server
	mod       *moderation.Service
	keys      *apikey.Set
	devKey    string
	presence  *presence.Tracker
	rooms     *uplink.PublicRooms
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// NewUplink builds the uplink role; Start loads what it reads from NATS.
func NewUplink(d Deps, cfg UplinkConfig) *Uplink { return &Uplink{d: d, cfg: cfg} }

// moderationLoadTimeout bounds loading the moderation bucket.
const moderationLoadTimeout = 30 * time.Second

// Start loads the moderation cache, then the uplink (which reads it), the
// moderation service (which stamps room notices through the uplink), the
// server API's keys and the presence tracker, and runs the uplink's and
// the service's loops until Close.
func (u *Uplink) Start(ctx context.Context) (err error) {
	lctx, cancel := context.WithTimeout(ctx, moderationLoadTimeout)
	defer cancel()
	if u.cache, err = moderation.NewCache(lctx, moderation.CacheConfig{JS: u.d.JS, Logger: u.d.Logger}); err != nil {
		return err
	}
	ucfg := u.cfg.Uplink
	ucfg.NC, ucfg.JS, ucfg.Verifier, ucfg.Logger, ucfg.Moderation = u.d.NC, u.d.JS, u.d.Verifier, u.d.Logger, u.cache
	if u.up, err = uplink.New(ucfg); err != nil {
		return err
	}
	if u.mod, err = moderation.NewService(lctx, moderation.Config{NC: u.d.NC, JS: u.d.JS, Cache: u.cache, Verifier: u.d.Verifier,
		Logger: u.d.Logger, Stamp: u.up.StampSession}); err != nil {
		return err
	}
	kcfg := u.cfg.APIKeys
	kcfg.Logger = u.d.Logger
	if u.keys, err = apikey.New(kcfg); err != nil {
		return err
	}
	switch {
	case u.keys.Len() > 0:
	case u.cfg.DevAPIKey:
		u.devKey = apikey.Generate()
		if err := u.keys.Add("dev", u.devKey); err != nil {
			return err
		}
		u.d.Logger.Warn("DEV MODE: the server API (/v1/server/…) takes this dev API key, valid until the process stops: Authorization: Bearer " + u.devKey)
	default:
		u.d.Logger.Warn("no server API keys (--api-keys-file, $LIVEROOM_API_KEYS): /v1/server/… refuses every call")
	}
	u.presence = presence.New(u.d.NC)
	if err := u.presence.Start(); err != nil {
		u.presence = nil
		return err
	}
	u.rooms = u.up.NewPublicRooms(u.presence)
	runCtx, stop := context.WithCancel(context.Background())
	u.cancel = stop
	u.wg.Add(2)
	go func() {
		defer u.wg.Done()
		if err := u.up.Run(runCtx); err != nil && !errors.Is(err, context.Canceled) {
			u.d.Logger.Error("uplink stopped", "err", err)
		}
	}()
	go func() {
		defer u.wg.Done()
		u.mod.Run(runCtx, time.Minute)
	}()
	return nil
}

// Mount serves the send API, the server API, moderation and GET /v1/rooms.
func (u *Uplink) Mount(m *Mount) {
	m.Send = u.up.Handler()
	m.Server = u.up.ServerHandler(uplink.ServerAPIConfig{Keys: u.keys, Presence: u.presence})
	m.RoomRoutes = append(m.RoomRoutes, router.RoomRoute{Pattern: moderation.Path, Methods: []string{http.MethodGet, http.MethodPost}, Handler: u.mod.Handler()})
	m.Routes = append(m.Routes, router.Route{Path: uplink.PublicRoomsPath, Methods: []string{http.MethodGet}, Handler: u.rooms})
}

// Register adds the uplink's metrics.
func (u *Uplink) Register(reg prometheus.Registerer) error { return u.up.Register(reg) }

// Close stops the loops (the uplink stores the likes still pending) and
// waits for them. Stop serving first: likes taken after it stay pending.
func (u *Uplink) Close() error {
	u.closeOnce.Do(func() {
		if u.cancel != nil {
			u.cancel()
		}
		u.wg.Wait()
		if u.presence != nil {
			_ = u.presence.Close()
		}
		if u.cache != nil {
			u.cache.Close()
		}
	})
	return nil
}

// Server is the uplink (nil before Start).
func (u *Uplink) Server() *uplink.Server { return u.up }

// Moderation is the moderation service (nil before Start).
func (u *Uplink) Moderation() *moderation.Service { return u.mod }

// PublicRooms lists the live rooms (nil before Start).
func (u *Uplink) PublicRooms() *uplink.PublicRooms { return u.rooms }

// DevAPIKey is the key made with UplinkConfig.DevAPIKey, or "".
func (u *Uplink) DevAPIKey() string { return u.devKey }

// Anchors restricts live start and stop to the room's anchor, through the
// moderation service (for a NonCore in the same process; valid once
// started).
func (u *Uplink) Anchors() replay.Anchors { return lazyAnchors{u} }

// lazyAnchors are serviceAnchors of an uplink's service, looked up at each
// call: the NonCore is built before the uplink starts.
type lazyAnchors struct{ u *Uplink }

func (a lazyAnchors) Anchor(room protocol.Room) protocol.User {
	return serviceAnchors{a.u.mod}.Anchor(room)
}

func (a lazyAnchors) ClaimAnchor(ctx context.Context, room protocol.Room, user protocol.User) (protocol.User, error) {
	return serviceAnchors{a.u.mod}.ClaimAnchor(ctx, room, user)
}
