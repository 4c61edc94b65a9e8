package app

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"time"

	"github.com/nats-io/nats.go/jetstream"

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

// nonCore is what a node runs of the non-core consumers.
type nonCore struct {
	store   *archive.Store
	arch    *archive.Archiver
	hooks   *webhook.Dispatcher
	replay  *replay.API
	anchors replay.Anchors
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

// startNonCore opens the archive, starts the archiver and the webhook
// dispatcher (when configured) and returns the routes to serve. anchors may
// be nil (see replay.Config.Anchors).
func (n *Node) startNonCore(ctx context.Context, js jetstream.JetStream, verifier *auth.Verifier, anchors replay.Anchors) ([]RoomRoute, error) {
	cfg := n.cfg.NonCore
	kv, err := js.KeyValue(ctx, bus.SessionsKV)
	if err != nil {
		return nil, fmt.Errorf("cannot open bucket %s: %w", bus.SessionsKV, err)
	}
	if !cfg.NoArchive {
		path := cfg.ArchivePath
		if path == "" {
			path = filepath.Join(n.cfg.DataDir, "archive", "archive.db")
		}
		if n.nonCore.store, err = archive.Open(path, false); err != nil {
			return nil, err
		}
		n.nonCore.arch, err = archive.New(archive.Config{JS: js, Store: n.nonCore.store, Logger: n.log, Retention: cfg.Retention})
		if err != nil {
			return nil, err
		}
		if err := n.nonCore.arch.Start(ctx); err != nil {
			return nil, err
		}
	}
	if len(cfg.Webhooks.Endpoints) > 0 {
		wcfg := cfg.Webhooks
		wcfg.JS, wcfg.Logger = js, n.log
		if n.nonCore.hooks, err = webhook.New(wcfg); err != nil {
			return nil, err
		}
		if err := n.nonCore.hooks.Start(ctx); err != nil {
			return nil, err
		}
	}
	n.nonCore.replay, err = replay.New(replay.Config{JS: js, Sessions: session.NewRegistry(kv), Store: n.nonCore.store,
		Verifier: verifier, Anchors: anchors, Logger: n.log})
	if err != nil {
		return nil, err
	}
	return NonCoreRoutes(n.nonCore.replay), nil
}

// closeNonCore stops the consumers and closes the archive.
func (n *Node) closeNonCore() {
	if n.nonCore.hooks != nil {
		n.nonCore.hooks.Stop()
	}
	if n.nonCore.arch != nil {
		n.nonCore.arch.Stop()
	}
	if n.nonCore.store != nil {
		_ = n.nonCore.store.Close()
	}
}

// Archiver exposes the node's archiver (tests stop and restart it); nil
// with NonCore.NoArchive.
func (n *Node) Archiver() *archive.Archiver { return n.nonCore.arch }

// ArchiveStore exposes the node's archive; nil with NonCore.NoArchive.
func (n *Node) ArchiveStore() *archive.Store { return n.nonCore.store }

// Webhooks exposes the node's webhook dispatcher; nil without endpoints.
func (n *Node) Webhooks() *webhook.Dispatcher { return n.nonCore.hooks }

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
