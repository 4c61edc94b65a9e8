// Package role assembles liveroom's roles. Each role is one Component
// (gateway, uplink, dispatch, non-core, autoscaler) built from the
// dependencies its process shares (Deps: NATS connection, JetStream,
// verifier, logger) and its own config. A Host serves the components of one
// process on one HTTP address: `liveroom serve` runs all of them, each role
// command (`liveroom gateway`, `liveroom uplink`, …) runs one.
//
// Every component has one lifecycle: a constructor that only validates and
// builds, Start(ctx) that starts what runs in the background (ctx bounds the
// start, not the run), and Close that stops it and waits for every
// goroutine it started. The Host starts components in order and closes them
// in reverse.
//
// A new role takes: a Component here (its routes in Mount, its metrics in
// Register), its flags in cmd/liveroom through a flagTable (defaults from its
// package's DefaultConfig, variables derived from the flag names), and a
// command that connects (roleFlags.connect) and runs it (roleFlags.run);
// serve adds it to its component list (internal/app). Components that can
// be stopped and started again by their process (the archiver, the webhook
// dispatcher) say Stop rather than Close; Close is final.
package role

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/liveroom/liveroom/internal/auth"
	"github.com/liveroom/liveroom/internal/bus"
	"github.com/liveroom/liveroom/internal/router"
)

// Deps are what the components of one process share.
type Deps struct {
	NC *nats.Conn
	JS jetstream.JetStream
	// Verifier checks tokens; nil in a process that checks none (dispatch
	// without a key).
	Verifier *auth.Verifier
	Logger   *slog.Logger
}

// Component is one role in a process.
type Component interface {
	// Start starts the component's background work; ctx bounds the start
	// only. After an error the Host calls Close.
	Start(ctx context.Context) error
	// Mount adds the component's routes to its process's HTTP server;
	// called once, after Start.
	Mount(m *Mount)
	// Register adds the component's metrics to reg; called once, after
	// Start.
	Register(reg prometheus.Registerer) error
	// Close stops the component and waits for everything it started. It is
	// safe after a failed or no Start, and more than once.
	Close() error
}

// Mount is what the components of a process add to its HTTP server.
type Mount struct {
	// Config holds the public routes. Of its single handlers (Send, Server,
	// Admin, Pages) at most one component may set each.
	router.Config
	// Operator are the operator views (/v1/gateways, the autoscaler's
	// decisions; /metrics is added by the Host): on the internal address
	// when the Host has one, else on the public address to admin tokens.
	Operator []router.Route
	// Listener, when set, wraps the public listener (the gateway handshakes
	// GET /v1/ws itself, before net/http).
	Listener func(net.Listener) net.Listener
	// ConfigureHTTP, when set, tunes the public HTTP server (the gateway's
	// handshake limits).
	ConfigureHTTP func(*http.Server)
}

// StreamWait bounds how long a process waits at start for liveroom's
// streams (created by the uplink or serve; on a fresh cluster they wait
// for leaders).
const StreamWait = 60 * time.Second

// ConnectConfig says how a process joins NATS.
type ConnectConfig struct {
	// URL is the NATS server list, comma separated.
	URL string
	// Name is the connection's name, e.g. "liveroom-gateway".
	Name string
	// Role is the process's NATS role: what it may do, and which streams it
	// waits for (Connect).
	Role bus.Role
	// Options are added to the connection (credentials, TLS).
	Options []nats.Option
	// Streams configures the streams a process that creates them makes
	// (replicas).
	Streams bus.StreamConfig
	Logger  *slog.Logger
}

// Connect connects to NATS and waits for liveroom's streams, up to
// StreamWait: the uplink and serve (bus.RoleAll) create and update them
// (only their credentials may, see bus.Permissions); dispatch and the
// autoscaler read beats only and do not wait; the other roles wait until
// the streams they use exist. The returned Deps have no Verifier.
func Connect(ctx context.Context, c ConnectConfig) (Deps, error) {
	nc, err := bus.ConnectContext(ctx, c.URL, c.Name, c.Logger, c.Options...)
	if err != nil {
		return Deps{}, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return Deps{}, fmt.Errorf("cannot open jetstream: %w", err)
	}
	sctx, cancel := context.WithTimeout(ctx, StreamWait)
	defer cancel()
	switch c.Role {
	case bus.RoleUplink, bus.RoleAll:
		err = bus.WaitStreams(sctx, js, c.Logger, c.Streams)
	case bus.RoleDispatch, bus.RoleAutoscale:
	default:
		err = bus.WaitStreamsExist(sctx, js, c.Logger, bus.StreamsOf(c.Role)...)
	}
	if err != nil {
		nc.Close()
		return Deps{}, err
	}
	return Deps{NC: nc, JS: js, Logger: c.Logger}, nil
}
