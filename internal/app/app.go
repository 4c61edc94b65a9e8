// Package app wires the roles together: `liveroom serve` runs an embedded
// NATS server plus gateway, uplink, dispatch and the web pages on one HTTP
// address. It is also what end-to-end tests start.
package app

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/liveroom/liveroom/internal/admin"
	"github.com/liveroom/liveroom/internal/announce"
	"github.com/liveroom/liveroom/internal/apikey"
	"github.com/liveroom/liveroom/internal/auth"
	"github.com/liveroom/liveroom/internal/autoscale"
	"github.com/liveroom/liveroom/internal/bus"
	"github.com/liveroom/liveroom/internal/dispatch"
	"github.com/liveroom/liveroom/internal/gateway"
	"github.com/liveroom/liveroom/internal/metrics"
	"github.com/liveroom/liveroom/internal/moderation"
	"github.com/liveroom/liveroom/internal/presence"
	"github.com/liveroom/liveroom/internal/protocol"
	"github.com/liveroom/liveroom/internal/session"
	"github.com/liveroom/liveroom/internal/uplink"
	"github.com/liveroom/liveroom/internal/web"
)

// Config configures an all-in-one node.
type Config struct {
	// Addr is the HTTP listen address. Default ":8080" with a secret or
	// public key, "127.0.0.1:8080" in dev mode. Use "127.0.0.1:0" in tests.
	// In dev mode a non-loopback address is refused unless DevOnNetwork.
	Addr string
	// DevOnNetwork lets a dev-mode node listen on a non-loopback address
	// (`serve --insecure-dev-mode-on-network`): anyone who reaches it can
	// then mint viewer and anchor tokens. Admin tokens are minted for
	// loopback callers only, whatever this says.
	DevOnNetwork bool
	// PublicURL is the WebSocket URL dispatch hands out for this node's
	// gateway. Default ws://<addr host or localhost>:<port>/v1/ws.
	PublicURL string
	// DataDir holds JetStream data. Default "./data".
	DataDir string
	// NATSURL, when set, connects to an external NATS instead of embedding one.
	NATSURL string
	// NATSHost and NATSPort are where the embedded server listens for other
	// processes. Default 127.0.0.1:4222; -1 picks a random port.
	NATSHost string
	NATSPort int
	// NATSKeyFile is the NATS key file (internal/bus auth.go). The embedded
	// server requires credentials minted from it (created, with a new key,
	// when missing); with NATSURL the node mints its own credential from it
	// when given. Default <DataDir>/nats.key for the embedded server.
	NATSKeyFile string
	// NATSOptions are added to the node's NATS connection: the credential
	// and TLS settings of an external NATS (NATSURL) without a key file.
	NATSOptions []nats.Option
	// JWTSecret verifies tokens. Empty means dev mode: a random secret and
	// POST /v1/dev/token.
	JWTSecret string
	// Auth is the rest of the token configuration: public keys, issuer,
	// audience, leeway (see auth.Config). Its HS256Secret, when empty, is
	// JWTSecret. With neither a secret nor a public key the node runs in dev
	// mode.
	Auth auth.Config
	// Gateway tunes the gateway (NC, JS, Verifier, PublicURL are filled in).
	Gateway gateway.Config
	// Uplink tunes the uplink (NC, JS, Verifier are filled in). In dev mode
	// its ClientGifts is set: the demo page sends gifts with a user token.
	Uplink uplink.Config
	// APIKeys configures the server API's keys (file and env list). In dev
	// mode with no key configured, the node makes one ("dev"), logs it and
	// returns it from DevAPIKey.
	APIKeys apikey.Config
	// MetricsAddr, when set, serves /metrics on this separate address
	// instead of Addr.
	MetricsAddr string
	// InternalAddr, when set, serves the operator views (/metrics unless
	// MetricsAddr is set, GET /v1/gateways, GET /v1/autoscale/decisions)
	// on this separate address only, without a token: bind it to loopback
	// or a private network. Empty: they are served on Addr to admin tokens
	// only (and, in dev mode, to callers on this machine).
	InternalAddr string
	// Autoscale, when Enabled, runs the node's gateways as child processes
	// that an autoscaler starts and drains, instead of one gateway in this
	// process (see AutoscaleConfig).
	Autoscale AutoscaleConfig
	// NonCore configures the archive (replay) and the webhooks the node
	// runs in-process (see replay.go).
	NonCore NonCoreConfig
	// Logger; default slog.Default().
	Logger *slog.Logger
}

// Node is a running all-in-one liveroom.
type Node struct {
	cfg Config
	log *slog.Logger

	emb *bus.Embedded
	nc  *nats.Conn
	// keys mint the child gateways' NATS credentials (nil: the node was
	// given a credential, not a key file, and its children need one too).
	keys bus.Keys
	gw   *gateway.Server
	up   *uplink.Server
	disp *dispatch.Server
	http *http.Server
	ln   net.Listener
	url  string
	dev  bool
	reg  *prometheus.Registry
	// metricsSrv serves /metrics on MetricsAddr when that is set;
	// internalSrv the operator views on InternalAddr.
	metricsSrv  *http.Server
	internalSrv *http.Server
	internalURL string
	// scaler and procs run the gateways with Autoscale.Enabled.
	scaler *autoscale.Scaler
	procs  *autoscale.Process
	// nonCore runs the archive, the replay API and webhooks (replay.go).
	nonCore nonCore
	// mod serves the moderation API; modCache is the uplink's view.
	mod      *moderation.Service
	modCache *moderation.Cache
	// presence sums the gateways' online counts for the server API and
	// the index page; keys are the server API's credentials.
	presence    *presence.Tracker
	publicRooms *uplink.PublicRooms
	apiKeys     *apikey.Set
	devAPIKey   string
	// ann keeps the announced audiences for the admin API and the
	// autoscaler.
	ann *announce.Store

	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// New validates cfg.
func New(cfg Config) (*Node, error) {
	if cfg.DataDir == "" {
		cfg.DataDir = "./data"
	}
	if cfg.NATSHost == "" {
		cfg.NATSHost = "127.0.0.1"
	}
	if cfg.NATSPort == 0 {
		cfg.NATSPort = 4222
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.JWTSecret != "" && len(cfg.JWTSecret) < auth.MinSecretLen {
		return nil, fmt.Errorf("cannot use jwt secret: need at least %d bytes", auth.MinSecretLen)
	}
	return &Node{cfg: cfg, log: cfg.Logger}, nil
}

// Start starts NATS, the roles and the HTTP listener. On error everything
// already started is stopped.
func (n *Node) Start(ctx context.Context) (err error) {
	defer func() {
		if err != nil {
			_ = n.Close()
		}
	}()
	acfg := n.cfg.Auth
	if len(acfg.HS256Secret) == 0 {
		acfg.HS256Secret = []byte(n.cfg.JWTSecret)
	}
	if len(acfg.HS256Secret) == 0 && len(acfg.PublicKeysPEM) == 0 {
		n.dev = true
		var b [32]byte
		_, _ = rand.Read(b[:])
		acfg.HS256Secret = []byte(hex.EncodeToString(b[:]))
	}
	if err := n.checkBind(); err != nil {
		return err
	}
	secret := acfg.HS256Secret
	verifier, err := auth.New(acfg)
	if err != nil {
		return err
	}
	var signer *auth.Signer
	if n.dev {
		if signer, err = auth.NewSigner(secret); err != nil {
			return err
		}
	}

	natsURL := n.cfg.NATSURL
	natsOpts := n.cfg.NATSOptions
	keyFile := n.cfg.NATSKeyFile
	if natsURL == "" {
		if keyFile == "" {
			keyFile = filepath.Join(n.cfg.DataDir, "nats.key")
		}
		if _, err := bus.EnsureKeyFile(keyFile); err != nil {
			return err
		}
		n.emb, err = bus.StartEmbedded(bus.EmbeddedConfig{
			Host: n.cfg.NATSHost, Port: n.cfg.NATSPort, DataDir: n.cfg.DataDir, Logger: n.log, KeyFile: keyFile,
		})
		if err != nil {
			return err
		}
		natsURL = n.emb.ClientURL()
	}
	// Listen before waiting on JetStream: a taken address fails at once.
	// The embedded server came first so that a second serve on the same
	// data directory is told which process holds it.
	if n.ln, err = ListenHTTP(n.cfg.Addr); err != nil {
		return err
	}
	if keyFile != "" {
		keys, err := bus.LoadKeys(keyFile)
		if err != nil {
			return err
		}
		n.keys = keys
		cred, err := keys.Credential(bus.RoleAll, "")
		if err != nil {
			return err
		}
		natsOpts = append(natsOpts, cred.Option())
	}
	n.nc, err = bus.Connect(natsURL, "liveroom-serve", n.log, natsOpts...)
	if err != nil {
		return err
	}
	js, err := jetstream.New(n.nc)
	if err != nil {
		return fmt.Errorf("cannot open jetstream: %w", err)
	}
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err = bus.WaitStreams(sctx, js, n.log, bus.StreamConfig{})
	cancel()
	if err != nil {
		return err
	}

	host, port := hostPort(n.ln.Addr())
	n.url = "http://" + net.JoinHostPort(host, port)
	public := n.cfg.PublicURL
	if public == "" {
		public = "ws://" + net.JoinHostPort(host, port) + "/v1/ws"
	}

	if !n.cfg.Autoscale.Enabled {
		gcfg := n.cfg.Gateway
		gcfg.NC, gcfg.JS, gcfg.Verifier, gcfg.PublicURL, gcfg.Logger = n.nc, js, verifier, public, n.log
		if n.gw, err = gateway.New(gcfg); err != nil {
			return err
		}
		if err = n.gw.Start(ctx); err != nil {
			return err
		}
	}
	if n.modCache, err = moderation.NewCache(ctx, moderation.CacheConfig{JS: js, Logger: n.log}); err != nil {
		return err
	}
	ucfg := n.cfg.Uplink
	ucfg.NC, ucfg.JS, ucfg.Verifier, ucfg.Logger, ucfg.Moderation = n.nc, js, verifier, n.log, n.modCache
	ucfg.ClientGifts = ucfg.ClientGifts || n.dev
	if n.up, err = uplink.New(ucfg); err != nil {
		return err
	}
	if err := n.startServerAPI(); err != nil {
		return err
	}
	if n.mod, err = moderation.NewService(ctx, moderation.Config{NC: n.nc, JS: js, Cache: n.modCache, Verifier: verifier, Logger: n.log, Stamp: n.up.StampSession}); err != nil {
		return err
	}
	actx, cancel := context.WithTimeout(ctx, 30*time.Second)
	n.ann, err = announce.Open(actx, announce.Config{JS: js, Logger: n.log})
	cancel()
	if err != nil {
		return err
	}
	if n.disp, err = dispatch.New(dispatch.Config{NC: n.nc, Logger: n.log}); err != nil {
		return err
	}
	if err = n.disp.Start(ctx); err != nil {
		return err
	}
	registrars := []interface {
		Register(prometheus.Registerer) error
	}{n.up, n.disp}
	wsRoute := Route{Path: "/v1/ws", Handler: childGateways}
	routes := []Route{}
	// operator are the operator views (OperatorRoutes): on InternalAddr
	// when set, else on Addr behind the admin role.
	operator := []Route{{Path: "/v1/gateways", Methods: []string{http.MethodGet}, Handler: n.disp.Handler()}}
	if n.gw != nil {
		// The gateway's first beat may still be in flight: seed dispatch so
		// the first client is not told "no gateway".
		n.disp.Observe(n.gw.Beat())
		registrars = append(registrars, n.gw)
		wsRoute = Route{Path: "/v1/ws", Methods: []string{http.MethodGet}, Handler: n.gw.Handler()}
	} else {
		if err := n.startAutoscale(ctx, natsURL, string(secret), host); err != nil {
			return err
		}
		registrars = append(registrars, n.scaler)
		operator = append(operator, Route{Path: autoscale.DecisionsPath, Methods: []string{http.MethodGet}, Handler: n.scaler.Handler()})
	}
	n.reg = metrics.NewRegistry()
	for _, r := range registrars {
		if err := r.Register(n.reg); err != nil {
			return fmt.Errorf("cannot register metrics: %w", err)
		}
	}
	metricsRoute := Route{Path: "/metrics", Methods: []string{http.MethodGet}, Handler: metrics.Handler(n.reg)}
	if n.cfg.MetricsAddr != "" {
		if n.metricsSrv, _, err = n.serveSide(n.cfg.MetricsAddr, NewRouter(RouterConfig{Routes: []Route{metricsRoute}})); err != nil {
			return err
		}
	} else {
		operator = append(operator, metricsRoute)
	}
	if n.cfg.InternalAddr != "" {
		if n.internalSrv, n.internalURL, err = n.serveSide(n.cfg.InternalAddr, NewRouter(RouterConfig{Routes: operator})); err != nil {
			return err
		}
	} else {
		routes = append(routes, OperatorRoutes(admin.OperatorConfig{Verifier: verifier, LocalDev: n.dev}, operator)...)
	}

	runCtx, runCancel := context.WithCancel(context.Background())
	n.cancel = runCancel
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		if err := n.up.Run(runCtx); err != nil && !errors.Is(err, context.Canceled) {
			n.log.Error("uplink stopped", "err", err)
		}
	}()
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		n.mod.Run(runCtx, time.Minute)
	}()

	nonCoreRoutes, err := n.startNonCore(ctx, js, verifier, moderationAnchors{n.modCache, n.mod})
	if err != nil {
		return err
	}

	// The pages read sessions for the replay page's 404.
	skv, err := js.KeyValue(ctx, bus.SessionsKV)
	if err != nil {
		return fmt.Errorf("cannot open bucket %s: %w", bus.SessionsKV, err)
	}
	devToken := devOnly
	if n.dev {
		devToken = Route{Path: DevTokenPath, Methods: []string{http.MethodPost}, Handler: DevTokenHandler(signer, n.cfg.DevOnNetwork)}
	}
	h := NewRouter(RouterConfig{
		Routes: append(routes, []Route{
			wsRoute,
			{Path: "/v1/dispatch", Methods: []string{http.MethodGet}, Handler: n.disp.Handler()},
			{Path: uplink.PublicRoomsPath, Methods: []string{http.MethodGet}, Handler: n.publicRooms},
			devToken,
		}...),
		Send:   n.up.Handler(),
		Server: n.up.ServerHandler(uplink.ServerAPIConfig{Keys: n.apiKeys, Presence: n.presence}),
		RoomRoutes: append(nonCoreRoutes,
			RoomRoute{Pattern: moderation.Path, Methods: []string{http.MethodGet, http.MethodPost}, Handler: n.mod.Handler()},
		),
		Pages: web.NewHandler(web.Config{Sessions: session.NewRegistry(skv), LiveRooms: n.liveRooms}),
		Admin: admin.Handler(admin.Config{NC: n.nc, Verifier: verifier, Logger: n.log, Gateways: n.disp.Gateways, Announcements: n.ann}),
	})
	n.http = &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second, ErrorLog: slog.NewLogLogger(n.log.Handler(), slog.LevelDebug)}
	ln := n.ln
	if n.gw != nil {
		n.gw.ConfigureHTTP(n.http) // handshake header timeout and size
		// The gateway handshakes GET /v1/ws itself, without net/http's
		// per-request buffers (which a hijack leaves behind); every other
		// request goes on to n.http.
		ln = n.gw.Listener(n.ln)
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		// Both accept loops (the gateway's and net/http's) back off on
		// accept errors such as EMFILE (up to 1s) rather than spinning.
		if err := n.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("http server stopped", "err", err)
		}
	}()
	switch {
	case n.dev && n.cfg.DevOnNetwork:
		n.log.Warn("DEV MODE ON THE NETWORK (--insecure-dev-mode-on-network): no JWT secret, and anyone who can reach " + n.ln.Addr().String() +
			" can mint viewer and anchor tokens at POST /v1/dev/token (admin tokens only from this machine). Never run like this in production.")
	case n.dev:
		n.log.Warn("DEV MODE: no JWT secret given, so liveroom listens on loopback only (" + n.ln.Addr().String() +
			") and mints tokens for local callers at POST /v1/dev/token. Set $LIVEROOM_JWT_SECRET to run for real.")
	}
	if n.internalURL != "" {
		n.log.Info("operator views (/metrics, /v1/gateways, /v1/autoscale/decisions) on the internal address only", "url", n.internalURL)
	}
	if n.gw != nil {
		n.log.Info("liveroom is up", "url", n.url, "nats", redactURLs(natsURL), "gateway", n.gw.ID())
		return nil
	}
	if err := n.waitGateway(ctx); err != nil {
		return err
	}
	p := n.scaler.Policy()
	n.log.Info("liveroom is up; gateways run as child processes", "url", n.url, "nats", redactURLs(natsURL),
		"autoscale_min", p.Min, "autoscale_max", p.Max, "gateway_conns", p.Capacity.Conns)
	return nil
}

// OperatorRoutes puts the operator views behind the admin role
// (admin.Operator), for a public address.
func OperatorRoutes(cfg admin.OperatorConfig, routes []Route) []Route {
	out := make([]Route, len(routes))
	for i, r := range routes {
		r.Handler = admin.Operator(cfg, r.Handler)
		out[i] = r
	}
	return out
}

// serveSide serves h on a side address (metrics, internal) until Close and
// returns its server and base URL.
func (n *Node) serveSide(addr string, h http.Handler) (*http.Server, string, error) {
	ln, err := ListenHTTP(addr)
	if err != nil {
		return nil, "", err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(n.log.Handler(), slog.LevelDebug)}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		_ = srv.Serve(ln)
	}()
	return srv, "http://" + ln.Addr().String(), nil
}

// DefaultAddr and DevAddr are the listen addresses of a node with and
// without a token key.
const (
	DefaultAddr = ":8080"
	DevAddr     = "127.0.0.1:8080"
)

// checkBind fills the default listen address and refuses a dev-mode node on
// a non-loopback one: dev mode mints tokens for the asking, so on a network
// it would hand them to anyone there.
func (n *Node) checkBind() error {
	if !n.dev {
		if n.cfg.Addr == "" {
			n.cfg.Addr = DefaultAddr
		}
		return nil
	}
	if n.cfg.Addr == "" {
		n.cfg.Addr = DevAddr
	}
	if n.cfg.DevOnNetwork || LoopbackAddr(n.cfg.Addr) {
		return nil
	}
	return fmt.Errorf("refusing to run dev mode on %s: without a JWT secret anyone who can reach that address could mint tokens. "+
		"Set $LIVEROOM_JWT_SECRET (e.g. export LIVEROOM_JWT_SECRET=$(openssl rand -hex 32)), listen on loopback (--addr 127.0.0.1:8080), "+
		"or, for a demo on a trusted network, pass --insecure-dev-mode-on-network", n.cfg.Addr)
}

// ListenHTTP listens on addr for a process's HTTP server. When another
// process holds the address it says so, and which flag changes it.
func ListenHTTP(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	switch {
	case err == nil:
		return ln, nil
	case errors.Is(err, syscall.EADDRINUSE):
		return nil, fmt.Errorf("cannot listen on %s: the address is taken by another process (another liveroom?): %w; stop it, or choose another address with --addr HOST:PORT", addr, err)
	}
	return nil, fmt.Errorf("cannot listen on %s: %w", addr, err)
}

// LoopbackAddr reports whether a listen address host:port binds loopback
// only: a loopback IP or "localhost". An empty host binds every interface.
func LoopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

func hostPort(a net.Addr) (string, string) {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		h, p, _ := net.SplitHostPort(a.String())
		return h, p
	}
	host := ta.IP.String()
	if ta.IP.IsUnspecified() {
		host = "localhost"
	}
	return host, strconv.Itoa(ta.Port)
}

// URL is the base HTTP URL, e.g. http://127.0.0.1:8080.
func (n *Node) URL() string { return n.url }

// InternalURL is the base URL of the internal address; "" without
// Config.InternalAddr.
func (n *Node) InternalURL() string { return n.internalURL }

// NATSURL is the NATS URL the node uses (embedded or external).
func (n *Node) NATSURL() string { return n.nc.ConnectedUrl() }

// NATSCredential mints the credential of a process of role (a gateway with
// its id) that joins the node's NATS, from the node's key file.
func (n *Node) NATSCredential(role bus.Role, id string) (bus.Credential, error) {
	if n.keys == nil {
		return bus.Credential{}, errors.New("this node has no NATS key file to mint credentials from")
	}
	return n.keys.Credential(role, id)
}

// Gateway exposes the node's gateway (tests read its counters); nil with
// Autoscale.Enabled, where every gateway is a child process.
func (n *Node) Gateway() *gateway.Server { return n.gw }

// Scaler exposes the node's autoscaler; nil without Autoscale.Enabled.
func (n *Node) Scaler() *autoscale.Scaler { return n.scaler }

// Moderation exposes the node's moderation service (room anchors, mutes,
// bans, room controls).
func (n *Node) Moderation() *moderation.Service { return n.mod }

// Uplink exposes the node's uplink.
func (n *Node) Uplink() *uplink.Server { return n.up }

// Dev reports whether the node runs in dev mode.
func (n *Node) Dev() bool { return n.dev }

// Close stops everything in order and waits: stop taking requests, close
// viewers' connections, flush likes, then NATS. Idempotent.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		// No decision may start a gateway while the node stops.
		if n.scaler != nil {
			_ = n.scaler.Close()
		}
		if n.metricsSrv != nil {
			_ = n.metricsSrv.Close()
		}
		if n.internalSrv != nil {
			_ = n.internalSrv.Close()
		}
		if n.http != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = n.http.Shutdown(ctx)
			cancel()
		} else if n.ln != nil {
			_ = n.ln.Close() // Start failed before serving on it
		}
		if n.gw != nil {
			_ = n.gw.Close()
		}
		if n.procs != nil {
			// The whole node stops, dispatch with it: there is nowhere to
			// drain the children's viewers to. SIGTERM, SIGKILL after 5 s.
			_ = n.procs.Close(5 * time.Second)
		}
		if n.cancel != nil {
			n.cancel()
		}
		n.wg.Wait()
		if n.disp != nil {
			_ = n.disp.Close()
		}
		if n.modCache != nil {
			n.modCache.Close()
		}
		if n.ann != nil {
			_ = n.ann.Close()
		}
		n.closeNonCore()
		if n.presence != nil {
			_ = n.presence.Close()
		}
		if n.nc != nil {
			n.nc.Close()
		}
		if n.emb != nil {
			n.emb.Close()
		}
	})
	return nil
}

// DevTokenPath is the route of POST /v1/dev/token, served in dev mode only.
const DevTokenPath = "/v1/dev/token"

// devOnly answers DevTokenPath on a node with a secret, whatever the method:
// the route does not exist there, and a 405 would say it does.
var devOnly = Route{Path: DevTokenPath, Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
	protocol.WriteError(w, protocol.Errorf(http.StatusNotFound, protocol.CodeDevOnly, "",
		"dev tokens exist only on a server started without a JWT secret (liveroom serve in dev mode); this one has a secret, so mint tokens with it (liveroom token)"))
})}
