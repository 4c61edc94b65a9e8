package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"github.com/liveroom/liveroom/internal/apikey"
	"github.com/liveroom/liveroom/internal/presence"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/liveroom/liveroom/internal/admin"
	"github.com/liveroom/liveroom/internal/announce"
	"github.com/liveroom/liveroom/internal/app"
	"github.com/liveroom/liveroom/internal/auth"
	"github.com/liveroom/liveroom/internal/bus"
	"github.com/liveroom/liveroom/internal/dispatch"
	"github.com/liveroom/liveroom/internal/gateway"
	"github.com/liveroom/liveroom/internal/metrics"
	"github.com/liveroom/liveroom/internal/moderation"
	"github.com/liveroom/liveroom/internal/protocol"
	"github.com/liveroom/liveroom/internal/uplink"
)

// roleFlags are shared by the single-role commands.
type roleFlags struct {
	addr         string
	internalAddr string
	natsURL      string
	replicas     int
	jwt          jwtFlags
	debugAddr    string
	metricsAddr  string
	log          logFlags
	nats         natsAuthFlags
}

func (r *roleFlags) register(fs *flag.FlagSet, defAddr string, ev *envs) {
	fs.StringVar(&r.addr, "addr", env("ADDR", defAddr), "HTTP listen address ($LIVEROOM_ADDR)")
	fs.StringVar(&r.natsURL, "nats-url", env("NATS_URL", "nats://127.0.0.1:4222"), "NATS server(s), comma separated ($LIVEROOM_NATS_URL)")
	fs.IntVar(&r.replicas, "replicas", ev.int("REPLICAS", 1), "replicas of streams and buckets: 3 on a 3-node NATS cluster ($LIVEROOM_REPLICAS)")
	r.jwt.register(fs, ev, "HS256 secret that verifies tokens; prefer $LIVEROOM_JWT_SECRET, flags show in ps")
	fs.StringVar(&r.metricsAddr, "metrics-addr", env("METRICS_ADDR", ""), "serve /metrics on this separate address instead of --addr ($LIVEROOM_METRICS_ADDR)")
	fs.StringVar(&r.internalAddr, "internal-addr", env("INTERNAL_ADDR", ""), internalAddrUsage)
	fs.StringVar(&r.debugAddr, "debug-addr", env("DEBUG_ADDR", ""), "serve Go's /debug/pprof/ on this separate address, e.g. 127.0.0.1:6060; empty: off ($LIVEROOM_DEBUG_ADDR)")
	r.log.register(fs)
	r.nats.register(fs)
}

// internalAddrUsage documents --internal-addr (serve and the roles).
const internalAddrUsage = "serve the operator views (/metrics unless --metrics-addr, GET /v1/gateways, GET /v1/autoscale/decisions) on this address only, without a token, e.g. 127.0.0.1:9090; empty: on --addr to admin tokens only ($LIVEROOM_INTERNAL_ADDR)"

// role is what a single-role command has once connected.
type role struct {
	debugAddr    string
	metricsAddr  string
	internalAddr string
	// verifier checks admin tokens for the operator views on the public
	// address; nil when the role has no key (dispatch without a secret).
	verifier *auth.Verifier
	// reg collects the role's metrics, served on /metrics.
	reg *prometheus.Registry
	log *slog.Logger
	nc  *nats.Conn
	js  jetstream.JetStream
	ln  net.Listener
	// configureHTTP, when set, tunes the HTTP server (the gateway's
	// handshake limits).
	configureHTTP func(*http.Server)
}

// connect connects to NATS as role (a gateway with its id), waits for
// liveroom's streams and listens on --addr. Only the uplink creates and
// updates the streams (its credential may; see bus.Permissions); the other
// roles wait until they exist.
func (r *roleFlags) connect(ctx context.Context, name string, nr bus.Role, id string, stderr io.Writer) (*role, error) {
	log, err := newLogger(stderr, r.log.level, r.log.format)
	if err != nil {
		return nil, err
	}
	opts, err := r.nats.options(nr, id)
	if err != nil {
		return nil, err
	}
	// Listen first: a taken address fails at once, not after the wait for
	// the streams.
	ln, err := app.ListenHTTP(r.addr)
	if err != nil {
		return nil, err
	}
	nc, err := bus.Connect(r.natsURL, name, log, opts...)
	if err != nil {
		ln.Close()
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		ln.Close()
		nc.Close()
		return nil, fmt.Errorf("cannot open jetstream: %w", err)
	}
	sctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	switch nr {
	case bus.RoleUplink:
		err = bus.WaitStreams(sctx, js, log, bus.StreamConfig{Replicas: r.replicas})
	case bus.RoleDispatch:
		// Dispatch reads beats (and, with the JWT secret, the announcements
		// bucket, which it looks for in the background).
	default:
		err = bus.WaitStreamsExist(sctx, js, log, bus.StreamsOf(nr)...)
	}
	cancel()
	if err != nil {
		ln.Close()
		nc.Close()
		return nil, err
	}
	return &role{log: log, nc: nc, js: js, ln: ln, debugAddr: r.debugAddr, metricsAddr: r.metricsAddr, internalAddr: r.internalAddr, reg: metrics.NewRegistry()}, nil
}

// The role handlers put a role's own handler behind an app.Router, which
// adds GET /healthz, answers JSON 404 and 405 for everything the role does
// not serve, and never cleans or redirects a path as a ServeMux would.

func gatewayHandler(h http.Handler) http.Handler {
	return app.NewRouter(app.RouterConfig{Routes: []app.Route{
		{Path: "/v1/ws", Methods: []string{http.MethodGet}, Handler: h},
	}})
}

// uplinkHandler serves the send API, moderation, the server API (server)
// and the public live-room list (rooms).
func uplinkHandler(send, mod, server, rooms http.Handler) http.Handler {
	return app.NewRouter(app.RouterConfig{Send: send, Server: server,
		Routes: []app.Route{{Path: uplink.PublicRoomsPath, Methods: []string{http.MethodGet}, Handler: rooms}},
		RoomRoutes: []app.RoomRoute{
			{Pattern: moderation.Path, Methods: []string{http.MethodGet, http.MethodPost}, Handler: mod},
		}})
}

// dispatchHandler serves dispatch and, when adm is not nil, the admin API.
// GET /v1/gateways is an operator view (dispatchOperator), served by
// serveHTTP.
func dispatchHandler(h, adm http.Handler) http.Handler {
	return app.NewRouter(app.RouterConfig{Routes: []app.Route{
		{Path: "/v1/dispatch", Methods: []string{http.MethodGet}, Handler: h},
	}, Admin: adm})
}

// dispatchOperator is dispatch's operator view: which gateways beat, their
// load and which rooms they host.
func dispatchOperator(h http.Handler) app.Route {
	return app.Route{Path: "/v1/gateways", Methods: []string{http.MethodGet}, Handler: h}
}

// serveHTTP serves h, one of the role handlers above, until ctx ends, then
// shuts down. operator are the role's operator views besides /metrics
// (dispatch's GET /v1/gateways): with --internal-addr they and /metrics are
// served there only, else on --addr behind the admin role.
func (r *role) serveHTTP(ctx context.Context, h http.Handler, stop func(), operator ...app.Route) error {
	metricsRoute := app.Route{Path: "/metrics", Methods: []string{http.MethodGet}, Handler: metrics.Handler(r.reg)}
	if r.metricsAddr != "" {
		stopMetrics, err := serveOn(r.metricsAddr, "/metrics", metricsRoute.Handler, r.log)
		if err != nil {
			return err
		}
		defer stopMetrics()
	} else {
		operator = append(operator, metricsRoute)
	}
	if r.internalAddr != "" {
		stopInternal, err := serveOn(r.internalAddr, "/", app.NewRouter(app.RouterConfig{Routes: operator}), r.log)
		if err != nil {
			return err
		}
		defer stopInternal()
	} else if len(operator) > 0 {
		paths := map[string]bool{}
		for _, rt := range operator {
			paths[rt.Path] = true
		}
		guarded := app.NewRouter(app.RouterConfig{Routes: app.OperatorRoutes(admin.OperatorConfig{Verifier: r.verifier}, operator)})
		inner := h
		h = http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			if paths[req.URL.Path] {
				guarded.ServeHTTP(w, req)
				return
			}
			inner.ServeHTTP(w, req)
		})
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(r.log.Handler(), slog.LevelDebug)}
	if r.configureHTTP != nil {
		r.configureHTTP(srv)
	}
	if r.debugAddr != "" {
		stopDebug, err := serveDebug(r.debugAddr, r.log)
		if err != nil {
			return err
		}
		defer stopDebug()
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(r.ln) }()
	r.log.Info("listening", "addr", r.ln.Addr().String())
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	_ = srv.Shutdown(sctx)
	cancel()
	if stop != nil {
		stop()
	}
	r.nc.Close()
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// parseAll parses flags, then reports bad LIVEROOM_* values; stop as in
// parseFlags.
func parseAll(fs *flag.FlagSet, args []string, ev *envs) (bool, error) {
	if stop, err := parseFlags(fs, args); stop {
		return true, err
	}
	if err := ev.err(); err != nil {
		return true, err
	}
	return false, nil
}

// connectVerified is connect for roles that check tokens: the secret is
// checked before anything is started.
func (r *roleFlags) connectVerified(ctx context.Context, name string, nr bus.Role, id string, stderr io.Writer) (*role, *auth.Verifier, error) {
	v, err := r.verifier()
	if err != nil {
		return nil, nil, err
	}
	rl, err := r.connect(ctx, name, nr, id, stderr)
	if rl != nil {
		rl.verifier = v
	}
	return rl, v, err
}

func (r *roleFlags) verifier() (*auth.Verifier, error) {
	c, err := r.jwt.config()
	if err != nil {
		return nil, err
	}
	if !hasKeys(c) {
		return nil, errors.New("a JWT secret or public key is required for a role process (--jwt-secret or $LIVEROOM_JWT_SECRET, or --jwt-public-key; the same on every role)")
	}
	return auth.New(c)
}

func runGateway(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("gateway", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var rf roleFlags
	var cfg gateway.Config
	var ev envs
	rf.register(fs, ":8081", &ev)
	fs.StringVar(&cfg.ID, "id", env("GATEWAY_ID", ""), "gateway id (default random) ($LIVEROOM_GATEWAY_ID)")
	fs.StringVar(&cfg.PublicURL, "public-url", env("PUBLIC_URL", ""), "WebSocket URL clients use (default ws://127.0.0.1:PORT/v1/ws) ($LIVEROOM_PUBLIC_URL)")
	gatewayFlags(fs, &cfg, &ev)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), `usage: liveroom gateway [flags]

Runs one gateway: it holds viewers' WebSockets (GET /v1/ws), subscribes on NATS
to the rooms its viewers are in, merges each room's traffic into batches and
beats its load to dispatch every second. It needs a NATS with JetStream
(liveroom nats, liveroom serve or nats-server -js) and the JWT secret shared by
every role. Set --public-url to the address viewers can reach.

example:
  export LIVEROOM_JWT_SECRET=…   # the same on every role
  liveroom gateway --nats-url nats://127.0.0.1:4222 --addr :8081 --public-url wss://gw1.example.com/v1/ws

flags:`)
		fs.PrintDefaults()
	}
	if stop, err := parseAll(fs, args, &ev); stop {
		return err
	}
	if cfg.ID == "" {
		// The id is known before connecting: a credential minted from the
		// key file is bound to it.
		cfg.ID = gateway.NewID()
	}
	r, v, err := rf.connectVerified(ctx, "liveroom-gateway", bus.RoleGateway, cfg.ID, stderr)
	if err != nil {
		return err
	}
	// Go's default target, and memory back to the OS once a join storm is
	// over (internal/gctune).
	stopGC, err := startGC(ctx, 0, r.log)
	if err != nil {
		return err
	}
	defer stopGC()
	if cfg.PublicURL == "" {
		_, port, _ := net.SplitHostPort(r.ln.Addr().String())
		cfg.PublicURL = "ws://127.0.0.1:" + port + "/v1/ws"
	}
	cfg.NC, cfg.JS, cfg.Verifier, cfg.Logger = r.nc, r.js, v, r.log
	g, err := gateway.New(cfg)
	if err != nil {
		return err
	}
	if err := g.Register(r.reg); err != nil {
		return err
	}
	if err := g.Start(ctx); err != nil {
		return err
	}
	r.configureHTTP = g.ConfigureHTTP
	// The gateway handshakes GET /v1/ws itself, without net/http's
	// per-request buffers; /healthz and /metrics go on to net/http.
	r.ln = g.Listener(r.ln)
	// SIGTERM (or Ctrl-C) drains before exiting; so does a drain ordered
	// through `liveroom drain` or the admin API. The HTTP server keeps
	// running during the drain to answer new upgrades with 503 draining.
	runCtx, stopRun := context.WithCancel(context.Background())
	defer stopRun()
	go func() {
		select {
		case <-runCtx.Done():
			// serveHTTP returned on its own (the HTTP server failed):
			// nothing left to drain for.
			return
		case <-ctx.Done():
			r.log.Info("signal received: draining before exit")
			dctx, cancel := context.WithTimeout(context.Background(), drainBudget(cfg))
			_ = g.Drain(dctx)
			cancel()
		case <-g.Drained():
		}
		stopRun()
	}()
	return r.serveHTTP(runCtx, gatewayHandler(g.Handler()), func() { _ = g.Close() })
}

// drainBudget bounds how long a gateway may take to drain before it exits
// anyway; a termination grace period (Kubernetes) must be longer.
func drainBudget(cfg gateway.Config) time.Duration {
	return cfg.DrainDelay + cfg.DrainWindow + cfg.DrainGrace + 10*time.Second
}

func runUplink(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("uplink", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var rf roleFlags
	var cfg uplink.Config
	var gifts, words string
	var ev envs
	rf.register(fs, ":8082", &ev)
	uplinkFlags(fs, &cfg, &gifts, &ev)
	var kc apikey.Config
	apiKeyFlags(fs, &kc)
	wordFlags(fs, &words)
	var gcPercent int
	gcFlag(fs, &gcPercent, sendPathGCPercent, &ev)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), `usage: liveroom uplink [flags]

Runs one uplink: the send API (POST /v1/rooms/{room}/messages). It checks the
sender's token and the message, rate-limits danmaku, publishes danmaku live,
stores gifts in JetStream once per Idempotency-Key, and sums likes into one
update per room within 500 ms. It needs a NATS with JetStream and the JWT
secret shared by every role. Rate limits and slow mode hold across all the
uplinks on the same NATS: they share each limit through usage reports on
lr.uplink.usage (--limit-sync).
It also serves the server API for the platform's backend (/v1/server/…, API
keys from --api-keys-file or $LIVEROOM_API_KEYS): paid gifts, announcements,
notices, room state. Gifts from users' tokens need --client-gifts.

example:
  export LIVEROOM_JWT_SECRET=…   # the same on every role
  liveroom uplink --nats-url nats://127.0.0.1:4222 --addr :8082 --gifts rose,heart,rocket

flags:`)
		fs.PrintDefaults()
	}
	if stop, err := parseAll(fs, args, &ev); stop {
		return err
	}
	wf, err := loadWords(words)
	if err != nil {
		return err
	}
	cfg.Words = wf
	r, v, err := rf.connectVerified(ctx, "liveroom-uplink", bus.RoleUplink, "", stderr)
	if err != nil {
		return err
	}
	stopGC, err := startGC(ctx, gcPercent, r.log)
	if err != nil {
		return err
	}
	defer stopGC()
	// The uplink reads the moderation cache; the service stamps room
	// notices through the uplink: cache, uplink, service.
	c, err := loadModerationCache(ctx, r)
	if err != nil {
		return err
	}
	defer c.Close()
	cfg.NC, cfg.JS, cfg.Verifier, cfg.Logger, cfg.Gifts = r.nc, r.js, v, r.log, splitList(gifts)
	cfg.Moderation = c
	u, err := uplink.New(cfg)
	if err != nil {
		return err
	}
	if err := u.Register(r.reg); err != nil {
		return err
	}
	mod, err := newModerationService(ctx, r, v, c, u.StampSession)
	if err != nil {
		return err
	}
	kc.Logger = r.log
	keys, err := apikey.New(kc)
	if err != nil {
		return err
	}
	if keys.Len() == 0 {
		r.log.Warn("no server API keys (--api-keys-file, $LIVEROOM_API_KEYS): /v1/server/… refuses every call")
	}
	pres := presence.New(r.nc)
	if err := pres.Start(); err != nil {
		return err
	}
	defer pres.Close()
	runCtx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = u.Run(runCtx)
	}()
	sweepDone := make(chan struct{})
	go func() {
		defer close(sweepDone)
		mod.Run(runCtx, time.Minute)
	}()
	server := u.ServerHandler(uplink.ServerAPIConfig{Keys: keys, Presence: pres})
	return r.serveHTTP(ctx, uplinkHandler(u.Handler(), mod.Handler(), server, u.NewPublicRooms(pres)), func() {
		cancel()
		<-done
		<-sweepDone
	})
}

func runDispatch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("dispatch", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var rf roleFlags
	var ev envs
	rf.register(fs, ":8083", &ev)
	adminAddr := fs.String("admin-addr", env("ADMIN_ADDR", ""), "serve the admin API (/v1/admin/) on this separate address only, e.g. 127.0.0.1:8090; empty: on --addr ($LIVEROOM_ADMIN_ADDR)")
	var dc dispatch.Config
	dispatchFlags(fs, &dc, &ev)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), `usage: liveroom dispatch [flags]

Runs one dispatch: it listens to the gateways' beats on NATS and tells clients
which gateways to try, best first (GET /v1/dispatch?room=R), and operators
what every gateway reports (GET /v1/gateways). Every dispatch sees the same
beats, so any number can run. It needs a NATS with JetStream; it verifies no
tokens, so it needs no secret.

example:
  liveroom dispatch --nats-url nats://127.0.0.1:4222 --addr :8083

flags:`)
		fs.PrintDefaults()
	}
	if stop, err := parseAll(fs, args, &ev); stop {
		return err
	}
	r, err := rf.connect(ctx, "liveroom-dispatch", bus.RoleDispatch, "", stderr)
	if err != nil {
		return err
	}
	dc.NC, dc.Logger = r.nc, r.log
	d, err := dispatch.New(dc)
	if err != nil {
		return err
	}
	if err := d.Register(r.reg); err != nil {
		return err
	}
	if err := d.Start(ctx); err != nil {
		return err
	}
	// The admin API (drain a gateway, announce an audience) lives beside
	// dispatch when the JWT secret is known; admin calls need a token with
	// role admin.
	var adm http.Handler
	if v, err := rf.verifier(); err == nil {
		r.verifier = v
		// The uplink creates the bucket; until it exists the store holds
		// no announcement and keeps looking (announce.Open).
		actx, cancel := context.WithTimeout(ctx, 30*time.Second)
		ann, err := announce.Open(actx, announce.Config{JS: r.js, Logger: r.log})
		cancel()
		if err != nil {
			_ = d.Close()
			return err
		}
		defer ann.Close()
		adm = admin.Handler(admin.Config{NC: r.nc, Verifier: v, Logger: r.log, Gateways: d.Gateways, Announcements: ann})
	}
	if adm != nil && *adminAddr != "" {
		stopAdmin, err := serveOn(*adminAddr, "/v1/admin/", adm, r.log)
		if err != nil {
			_ = d.Close()
			return err
		}
		defer stopAdmin()
		adm = nil // not on the public address
	}
	return r.serveHTTP(ctx, dispatchHandler(d.Handler(), adm), func() { _ = d.Close() }, dispatchOperator(d.Handler()))
}

// startModeration loads the moderation cache and builds the moderation
// service; stamp, when not nil, stamps its room notices with the live
// session. Close the service's cache when done.
func startModeration(ctx context.Context, r *role, v *auth.Verifier, stamp func(*protocol.Message)) (*moderation.Service, error) {
	c, err := loadModerationCache(ctx, r)
	if err != nil {
		return nil, err
	}
	s, err := newModerationService(ctx, r, v, c, stamp)
	if err != nil {
		c.Close()
		return nil, err
	}
	return s, nil
}

// moderationLoadTimeout bounds loading the moderation bucket.
const moderationLoadTimeout = 30 * time.Second

// loadModerationCache loads the moderation cache. Close it when done.
func loadModerationCache(ctx context.Context, r *role) (*moderation.Cache, error) {
	lctx, cancel := context.WithTimeout(ctx, moderationLoadTimeout)
	defer cancel()
	return moderation.NewCache(lctx, moderation.CacheConfig{JS: r.js, Logger: r.log})
}

// newModerationService builds the moderation service on c; stamp, when not
// nil, stamps its room notices with the live session.
func newModerationService(ctx context.Context, r *role, v *auth.Verifier, c *moderation.Cache, stamp func(*protocol.Message)) (*moderation.Service, error) {
	lctx, cancel := context.WithTimeout(ctx, moderationLoadTimeout)
	defer cancel()
	return moderation.NewService(lctx, moderation.Config{NC: r.nc, JS: r.js, Cache: c, Verifier: v, Logger: r.log, Stamp: stamp})
}
