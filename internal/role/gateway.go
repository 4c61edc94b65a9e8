package role

import (
	"net/http"

	"github.com/liveroom/liveroom/internal/gateway"
	"github.com/liveroom/liveroom/internal/router"
)

// Gateway is the gateway role: viewers' WebSockets on GET /v1/ws.
type Gateway struct{ *gateway.Server }

// NewGateway builds a gateway from d and cfg (its NC, JS, Verifier and
// Logger come from d; PublicURL must be set).
func NewGateway(d Deps, cfg gateway.Config) (*Gateway, error) {
	cfg.NC, cfg.JS, cfg.Verifier, cfg.Logger = d.NC, d.JS, d.Verifier, d.Logger
	g, err := gateway.New(cfg)
	if err != nil {
		return nil, err
	}
	return &Gateway{g}, nil
}

// WSPath is the WebSocket route.
const WSPath = "/v1/ws"

// Mount serves GET /v1/ws. The gateway handshakes it itself, without
// net/http's per-request buffers (which a hijack leaves behind), and sets
// the handshake's header timeout and size; every other request goes on to
// net/http.
func (g *Gateway) Mount(m *Mount) {
	m.Routes = append(m.Routes, router.Route{Path: WSPath, Methods: []string{http.MethodGet}, Handler: g.Handler()})
	m.Listener = g.Listener
	m.ConfigureHTTP = g.ConfigureHTTP
}

// Start, Register and Close are the gateway's own: Start subscribes to
// NATS and starts its loops; Close closes every viewer's connection and
// waits for them.
var _ Component = (*Gateway)(nil)
