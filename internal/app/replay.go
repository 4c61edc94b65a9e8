package app

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/liveroom/liveroom/internal/archive"
	"github.com/liveroom/liveroom/internal/auth"
	"github.com/liveroom/liveroom/internal/bus"
	"github.com/liveroom/liveroom/internal/moderation"
	"github.com/liveroom/liveroom/internal/protocol"
	"github.com/liveroom/liveroom/internal/replay"
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

// NonCore is a running set of non-core consumers: the archive, the
// webhook dispatcher and the live-session and replay API. A node runs one
// in-process; `liveroom archive` runs one on its own.
type NonCore struct {
	store  *archive.Store
	arch   *archive.Archiver
	hooks  *webhook.Dispatcher
	replay *replay.API
}

// nonCore is the node's NonCore (a value so the zero Node needs no nil checks).
type nonCore = NonCore

// NonCoreDeps are what StartNonCore needs from its process.
type NonCoreDeps struct {
	JS       jetstream.JetStream
	Verifier *auth.Verifier
	// Anchors restricts live start/stop to a room's anchor; may be nil.
	Anchors replay.Anchors
	// DataDir holds the archive when NonCoreConfig.ArchivePath is empty.
	DataDir string
	Logger  *slog.Logger
}

// StartNonCore opens the archive, starts the archiver and the webhook
// dispatcher (when configured). On error what was started is stopped.
func StartNonCore(ctx context.Context, d NonCoreDeps, cfg NonCoreConfig) (_ *NonCore, err error) {
	nc := &NonCore{}
	defer func() {
		if err != nil {
			nc.Close()
		}
	}()
	kv, err := d.JS.KeyValue(ctx, bus.SessionsKV)
	if err != nil {
		return nil, fmt.Errorf("cannot open bucket %s: %w", bus.SessionsKV, err)
	}
	if !cfg.NoArchive {
		path := cfg.ArchivePath
		if path == "" {
			path = filepath.Join(d.DataDir, "archive", "archive.db")
		}
		if nc.store, err = archive.Open(path, false); err != nil {
			return nil, err
		}
		nc.arch, err = archive.New(archive.Config{JS: d.JS, Store: nc.store, Logger: d.Logger, Retention: cfg.Retention})
		if err != nil {
			return nil, err
		}
		if err := nc.arch.Start(ctx); err != nil {
			return nil, err
		}
	}
	if len(cfg.Webhooks.Endpoints) > 0 {
		wcfg := cfg.Webhooks
		wcfg.JS, wcfg.Logger = d.JS, d.Logger
		if nc.hooks, err = webhook.New(wcfg); err != nil {
			return nil, err
		}
		if err := nc.hooks.Start(ctx); err != nil {
			return nil, err
		}
	}
	nc.replay, err = replay.New(replay.Config{JS: d.JS, Sessions: session.NewRegistry(kv), Store: nc.store,
		Verifier: d.Verifier, Anchors: d.Anchors, Logger: d.Logger})
	if err != nil {
		return nil, err
	}
	return nc, nil
}

// NonCoreRoutes returns the live-session and replay endpoints of api.
func NonCoreRoutes(api *replay.API) []RoomRoute {
	return []RoomRoute{
		{Pattern: "live/start", Methods: []string{http.MethodPost}, Handler: api.Start()},
		{Pattern: "live/stop", Methods: []string{http.MethodPost}, Handler: api.Stop()},
		{Pattern: "sessions", Methods: []string{http.MethodGet}, Handler: api.List()},
		{Pattern: "sessions/{session}/replay", Methods: []string{http.MethodGet}, Handler: api.Replay()},
	}
}

// Routes are the live-session and replay endpoints.
func (nc *NonCore) Routes() []RoomRoute { return NonCoreRoutes(nc.replay) }

// Close stops the consumers and closes the archive. Idempotent.
func (nc *NonCore) Close() {
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
}

// startNonCore starts the node's NonCore and returns its routes.
func (n *Node) startNonCore(ctx context.Context, js jetstream.JetStream, verifier *auth.Verifier, anchors replay.Anchors) ([]RoomRoute, error) {
	nc, err := StartNonCore(ctx, NonCoreDeps{JS: js, Verifier: verifier, Anchors: anchors, DataDir: n.cfg.DataDir, Logger: n.log}, n.cfg.NonCore)
	if err != nil {
		return nil, err
	}
	n.nonCore = *nc
	if n.reg != nil {
		if err := nc.Register(n.reg); err != nil {
			return nil, fmt.Errorf("cannot register metrics: %w", err)
		}
	}
	return nc.Routes(), nil
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

// closeNonCore stops the node's NonCore.
func (n *Node) closeNonCore() { n.nonCore.Close() }

// Archiver exposes the node's archiver (tests stop and restart it); nil
// with NonCore.NoArchive.
func (n *Node) Archiver() *archive.Archiver { return n.nonCore.arch }

// ArchiveStore exposes the node's archive; nil with NonCore.NoArchive.
func (n *Node) ArchiveStore() *archive.Store { return n.nonCore.store }

// Webhooks exposes the node's webhook dispatcher; nil without endpoints.
func (n *Node) Webhooks() *webhook.Dispatcher { return n.nonCore.hooks }

// ModerationAnchors adapts the moderation cache and service to
// replay.Anchors.
func ModerationAnchors(c *moderation.Cache, s *moderation.Service) replay.Anchors {
	return moderationAnchors{c, s}
}

// moderationAnchors gives the replay API the room anchors of the
// moderation service: only a room's anchor (or an admin) starts and stops
// its live session.
type moderationAnchors struct {
	cache *moderation.Cache
	svc   *moderation.Service
}

func (m moderationAnchors) Anchor(room protocol.Room) protocol.User { return m.cache.Anchor(room) }

func (m moderationAnchors) ClaimAnchor(ctx context.Context, room protocol.Room, user protocol.User) (protocol.User, error) {
	return m.svc.ClaimAnchor(ctx, room, user)
}
