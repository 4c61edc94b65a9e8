package role

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/liveroom/liveroom/internal/archive"
	"github.com/liveroom/liveroom/internal/bus"
	"github.com/liveroom/liveroom/internal/moderation"
	"github.com/liveroom/liveroom/internal/protocol"
	"github.com/liveroom/liveroom/internal/replay"
	"github.com/liveroom/liveroom/internal/router"
	"github.com/liveroom/liveroom/internal/session"
	"github.com/liveroom/liveroom/internal/webhook"
)

// NonCoreConfig configures the non-core consumers a node runs in-process:
// the archive behind the replay API, and webhooks. Neither is on the live
// path: they read durable streams and may stop or fall behind.
type NonCoreConfig struct {
	// NoArchive turns the archive off; the replay endpoint then answers
	// 503 (run `liveroom archive` elsewhere).
	NoArchive bool
	// ArchivePath is the archive file. Default <DataDir>/archive/archive.db.
	ArchivePath string
	// Retention is how long an archived session is kept after its last
	// message. Default 7 days.
	Retention time.Duration
	// Webhooks; no endpoints means no webhook consumer.
	Webhooks webhook.Config
}

// NonCore is the non-core role: the archive, the webhook dispatcher and
// the live-session and replay API. serve runs one in-process; `liveroom
// archive` runs one on its own.
type NonCore struct {
	d   Deps
	cfg NonCoreConfig
	// anchors restricts live start/stop to a room's anchor: given, or
	// through a moderation service of the role's own (ownMod).
	anchors replay.Anchors
	dataDir string

	ownMod *moderation.Service
	store  *archive.Store
	arch   *archive.Archiver
	hooks  *webhook.Dispatcher
	replay *replay.API
}

// NewNonCore builds the non-core role. anchors, when nil, are read from a
// moderation service the role loads itself (a process without an uplink);
// dataDir holds the archive when cfg.ArchivePath is empty.
func NewNonCore(d Deps, cfg NonCoreConfig, anchors replay.Anchors, dataDir string) *NonCore {
	return &NonCore{d: d, cfg: cfg, anchors: anchors, dataDir: dataDir}
}

// Start opens the archive, starts the archiver and the webhook dispatcher
// (when configured) and builds the replay API.
func (nc *NonCore) Start(ctx context.Context) (err error) {
	d := nc.d
	kv, err := bus.OpenKV(ctx, d.JS, bus.SessionsKV)
	if err != nil {
		return fmt.Errorf("cannot open bucket %s: %w", bus.SessionsKV, err)
	}
	if nc.anchors == nil {
		lctx, cancel := context.WithTimeout(ctx, moderationLoadTimeout)
		defer cancel()
		cache, err := moderation.NewCache(lctx, moderation.CacheConfig{JS: d.JS, Logger: d.Logger})
		if err != nil {
			return err
		}
		if nc.ownMod, err = moderation.NewService(lctx, moderation.Config{NC: d.NC, JS: d.JS, Cache: cache, Verifier: d.Verifier, Logger: d.Logger}); err != nil {
			cache.Close()
			return err
		}
		nc.anchors = serviceAnchors{nc.ownMod}
	}
	cfg := nc.cfg
	if !cfg.NoArchive {
		path := cfg.ArchivePath
		if path == "" {
			path = filepath.Join(nc.dataDir, "archive", "archive.db")
		}
		if nc.store, err = archive.Open(path, false); err != nil {
			return err
		}
		nc.arch, err = archive.New(archive.Config{JS: d.JS, Store: nc.store, Logger: d.Logger, Retention: cfg.Retention})
		if err != nil {
			return err
		}
		if err := nc.arch.Start(ctx); err != nil {
			return err
		}
	}
	if len(cfg.Webhooks.Endpoints) > 0 {
		wcfg := cfg.Webhooks
		wcfg.JS, wcfg.Logger = d.JS, d.Logger
		if nc.hooks, err = webhook.New(wcfg); err != nil {
			return err
		}
		if err := nc.hooks.Start(ctx); err != nil {
			return err
		}
	}
	nc.replay, err = replay.New(replay.Config{JS: d.JS, Sessions: session.NewRegistry(kv), Store: nc.store,
		Verifier: d.Verifier, Anchors: nc.anchors, Logger: d.Logger})
	return err
}

// NonCoreRoutes returns the live-session and replay endpoints of api.
func NonCoreRoutes(api *replay.API) []router.RoomRoute {
	return []router.RoomRoute{
		{Pattern: "live/start", Methods: []string{http.MethodPost}, Handler: api.Start()},
		{Pattern: "live/stop", Methods: []string{http.MethodPost}, Handler: api.Stop()},
		{Pattern: "sessions", Methods: []string{http.MethodGet}, Handler: api.List()},
		{Pattern: "sessions/{session}/replay", Methods: []string{http.MethodGet}, Handler: api.Replay()},
	}
}

// Mount serves the live-session and replay endpoints.
func (nc *NonCore) Mount(m *Mount) { m.RoomRoutes = append(m.RoomRoutes, NonCoreRoutes(nc.replay)...) }

// Close stops the consumers and closes the archive. Idempotent.
func (nc *NonCore) Close() error {
	if nc.hooks != nil {
		nc.hooks.Stop()
	}
	if nc.arch != nil {
		nc.arch.Stop()
	}
	if nc.store != nil {
		_ = nc.store.Close()
		nc.store = nil
	}
	if nc.ownMod != nil {
		nc.ownMod.Cache().Close()
		nc.ownMod = nil
	}
	return nil
}

// Register adds the archive and webhook counters to reg:
// liveroom_archive_{records,skipped,lost}_total and
// liveroom_webhook_deliveries_total{result="delivered|failed|dead"}.
func (nc *NonCore) Register(reg prometheus.Registerer) error {
	var cs []prometheus.Collector
	if a := nc.arch; a != nil {
		counter := func(name, help string, f func() int64) prometheus.Collector {
			return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "liveroom_archive_" + name, Help: help}, func() float64 { return float64(f()) })
		}
		cs = append(cs,
			counter("records_total", "Messages written to the archive.", func() int64 { n, _ := a.Stats(); return n }),
			counter("skipped_total", "Stream messages sent outside a live session (not archived).", func() int64 { _, n := a.Stats(); return n }),
			counter("lost_total", "Stream messages that expired before the archive read them.", a.Lost))
	}
	if h := nc.hooks; h != nil {
		for _, r := range []struct {
			result string
			f      func(webhook.Stats) int64
		}{
			{"delivered", func(s webhook.Stats) int64 { return s.Delivered }},
			{"failed", func(s webhook.Stats) int64 { return s.Failed }},
			{"dead", func(s webhook.Stats) int64 { return s.Dead }},
		} {
			cs = append(cs, prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "liveroom_webhook_deliveries_total",
				Help:        "Webhook delivery attempts by result (failed: will be retried; dead: dead-lettered).",
				ConstLabels: prometheus.Labels{"result": r.result}}, func() float64 { return float64(r.f(h.Stats())) }))
		}
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// Archiver is the archiver (tests stop and restart it); nil with
// NoArchive.
func (nc *NonCore) Archiver() *archive.Archiver { return nc.arch }

// ArchiveStore is the archive; nil with NoArchive.
func (nc *NonCore) ArchiveStore() *archive.Store { return nc.store }

// Webhooks is the webhook dispatcher; nil without endpoints.
func (nc *NonCore) Webhooks() *webhook.Dispatcher { return nc.hooks }

// serviceAnchors gives the replay API the room anchors of a moderation
// service: only a room's anchor (or an admin) starts and stops its live
// session.
type serviceAnchors struct{ svc *moderation.Service }

func (a serviceAnchors) Anchor(room protocol.Room) protocol.User { return a.svc.Cache().Anchor(room) }

func (a serviceAnchors) ClaimAnchor(ctx context.Context, room protocol.Room, user protocol.User) (protocol.User, error) {
	return a.svc.ClaimAnchor(ctx, room, user)
}
