package app

import (
	"context"
	"fmt"
	"net/http"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/liveroom/liveroom/internal/auth"
	"github.com/liveroom/liveroom/internal/bus"
	"github.com/liveroom/liveroom/internal/role"
	"github.com/liveroom/liveroom/internal/router"
	"github.com/liveroom/liveroom/internal/session"
	"github.com/liveroom/liveroom/internal/web"
)

// pages is what serve adds to the roles: the web pages, the dev token
// route (dev mode) and, with Autoscale, a GET /v1/ws that points at
// dispatch.
type pages struct {
	n      *Node
	js     jetstream.JetStream
	signer *auth.Signer // dev mode only
	h      http.Handler
}

var _ role.Component = (*pages)(nil)

// Start opens the sessions the replay page reads (for its 404).
func (p *pages) Start(ctx context.Context) error {
	skv, err := bus.OpenKV(ctx, p.js, bus.SessionsKV)
	if err != nil {
		return fmt.Errorf("cannot open bucket %s: %w", bus.SessionsKV, err)
	}
	p.h = web.NewHandler(web.Config{Sessions: session.NewRegistry(skv), LiveRooms: p.liveRooms})
	return nil
}

func (p *pages) Mount(m *role.Mount) {
	m.Pages = p.h
	dev := devOnly
	if p.signer != nil {
		dev = router.Route{Path: DevTokenPath, Methods: []string{http.MethodPost}, Handler: DevTokenHandler(p.signer, p.n.cfg.DevOnNetwork)}
	}
	m.Routes = append(m.Routes, dev)
	if p.n.gw == nil {
		m.Routes = append(m.Routes, router.Route{Path: role.WSPath, Handler: childGateways})
	}
}

func (p *pages) Register(prometheus.Registerer) error { return nil }

func (p *pages) Close() error { return nil }

// liveRooms feeds the index page's "Live now".
func (p *pages) liveRooms() []web.LiveRoom {
	rooms := p.n.up.PublicRooms().List(web.MaxLiveRooms)
	out := make([]web.LiveRoom, len(rooms.Rooms))
	for i, r := range rooms.Rooms {
		out[i] = web.LiveRoom{ID: r.Room, Online: r.Online, Live: r.Live}
	}
	return out
}
