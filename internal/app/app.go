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

	"github.com/nats-io/nats.go"

	"github.com/liveroom/liveroom/internal/admin"
	"github.com/liveroom/liveroom/internal/apikey"
	"github.com/liveroom/liveroom/internal/archive"
	"github.com/liveroom/liveroom/internal/auth"
	"github.com/liveroom/liveroom/internal/autoscale"
	"github.com/liveroom/liveroom/internal/bus"
	"github.com/liveroom/liveroom/internal/dispatch"
	"github.com/liveroom/liveroom/internal/gateway"
	"github.com/liveroom/liveroom/internal/moderation"
	"github.com/liveroom/liveroom/internal/protocol"
	"github.com/liveroom/liveroom/internal/role"
	"github.com/liveroom/liveroom/internal/router"
	"github.com/liveroom/liveroom/internal/uplink"
	"github.com/liveroom/liveroom/internal/webhook"
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
	// DebugAddr, when set, serves Go's /debug/pprof/ on this separate
	// address.
	DebugAddr string
	// Autoscale, when Enabled, runs the node's gateways as child processes
	// that an autoscaler starts and drains, instead of one gateway in this
	// process (see AutoscaleConfig).
	Autoscale AutoscaleConfig
	// NonCore configures the archive (replay) and the webhooks the node
	// runs in-process (see replay.go).
	NonCore role.NonCoreConfig
	// Logger; default slog.Default().
	Logger *slog.Logger
}

// Node is a running all-in-one liveroom: an embedded NATS (unless
// NATSURL), then the role components (internal/role) on one Host.
type Node struct {
	cfg Config
	log *slog.Logger

	emb *bus.Embedded
	nc  *nats.Conn
	// keys mint the child gateways' NATS credentials (nil: the node was
	// given a credential, not a key file, and its children need one too).
	keys bus.Keys
	ln   net.Listener
	url  string
	dev  bool

	// The components: gw without Autoscale.Enabled, scaler and procs with
	// it.
	gw      *role.Gateway
	up      *role.Uplink
	disp    *role.Dispatch
	scaler  *role.Autoscale
	procs   *autoscale.Process
	nonCore *role.NonCore
	host    *role.Host

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
	if n.ln, err = role.ListenHTTP(n.cfg.Addr); err != nil {
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
	deps, err := role.Connect(ctx, role.ConnectConfig{URL: natsURL, Name: "liveroom-serve", Role: bus.RoleAll, Options: natsOpts, Logger: n.log})
	if err != nil {
		return err
	}
	n.nc, deps.Verifier = deps.NC, verifier

	host, port := hostPort(n.ln.Addr())
	n.url = "http://" + net.JoinHostPort(host, port)
	public := n.cfg.PublicURL
	if public == "" {
		public = "ws://" + net.JoinHostPort(host, port) + role.WSPath
	}

	var comps []role.Component
	var seed func() bus.Beat
	if !n.cfg.Autoscale.Enabled {
		gcfg := n.cfg.Gateway
		gcfg.PublicURL = public
		if n.gw, err = role.NewGateway(deps, gcfg); err != nil {
			return err
		}
		comps, seed = append(comps, n.gw), n.gw.Beat
	}
	ucfg := n.cfg.Uplink
	ucfg.ClientGifts = ucfg.ClientGifts || n.dev
	n.up = role.NewUplink(deps, role.UplinkConfig{Uplink: ucfg, APIKeys: n.cfg.APIKeys, DevAPIKey: n.dev})
	if n.disp, err = role.NewDispatch(deps, dispatch.Config{}, seed); err != nil {
		return err
	}
	comps = append(comps, n.up, n.disp)
	if n.cfg.Autoscale.Enabled {
		if n.scaler, err = n.newAutoscale(deps, natsURL, string(secret), host); err != nil {
			return err
		}
		comps = append(comps, n.scaler)
	}
	n.nonCore = role.NewNonCore(deps, n.cfg.NonCore, n.up.Anchors(), n.cfg.DataDir)
	comps = append(comps, n.nonCore, &pages{n: n, js: deps.JS, signer: signer})
	if n.host, err = role.StartHost(ctx, role.HostConfig{Listener: n.ln, MetricsAddr: n.cfg.MetricsAddr, InternalAddr: n.cfg.InternalAddr, DebugAddr: n.cfg.DebugAddr,
		Operator: admin.OperatorConfig{Verifier: verifier, LocalDev: n.dev}, Logger: n.log}, comps...); err != nil {
		n.ln = nil // the host closed it
		return err
	}
	switch {
	case n.dev && n.cfg.DevOnNetwork:
		n.log.Warn("DEV MODE ON THE NETWORK (--insecure-dev-mode-on-network): no JWT secret, and anyone who can reach " + n.ln.Addr().String() +
			" can mint viewer and anchor tokens at POST /v1/dev/token (admin tokens only from this machine). Never run like this in production.")
	case n.dev:
		n.log.Warn("DEV MODE: no JWT secret given, so liveroom listens on loopback only (" + n.ln.Addr().String() +
			") and mints tokens for local callers at POST /v1/dev/token. Set $LIVEROOM_JWT_SECRET to run for real.")
	}
	if u := n.host.InternalURL(); u != "" {
		n.log.Info("operator views (/metrics, /v1/gateways, /v1/autoscale/decisions) on the internal address only", "url", u)
	}
	if n.gw != nil {
		n.log.Info("liveroom is up", "url", n.url, "nats", redactURLs(natsURL), "gateway", n.gw.ID())
		return nil
	}
	if err := n.waitGateway(ctx); err != nil {
		return err
	}
	p := n.scaler.Scaler().Policy()
	n.log.Info("liveroom is up; gateways run as child processes", "url", n.url, "nats", redactURLs(natsURL),
		"autoscale_min", p.Min, "autoscale_max", p.Max, "gateway_conns", p.Capacity.Conns)
	return nil
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
func (n *Node) InternalURL() string { return n.host.InternalURL() }

// NATSURL is the NATS URL the node uses (embedded or external).
func (n *Node) NATSURL() string { return n.nc.ConnectedUrl() }

// NATSCredential mints the credential of a process of role (a gateway with
// its id) that joins the node's NATS, from the node's key file.
func (n *Node) NATSCredential(r bus.Role, id string) (bus.Credential, error) {
	if n.keys == nil {
		return bus.Credential{}, errors.New("this node has no NATS key file to mint credentials from")
	}
	return n.keys.Credential(r, id)
}

// Gateway exposes the node's gateway (tests read its counters); nil with
// Autoscale.Enabled, where every gateway is a child process.
func (n *Node) Gateway() *gateway.Server {
	if n.gw == nil {
		return nil
	}
	return n.gw.Server
}

// Scaler exposes the node's autoscaler; nil without Autoscale.Enabled.
func (n *Node) Scaler() *autoscale.Scaler {
	if n.scaler == nil {
		return nil
	}
	return n.scaler.Scaler()
}

// Moderation exposes the node's moderation service (room anchors, mutes,
// bans, room controls).
func (n *Node) Moderation() *moderation.Service { return n.up.Moderation() }

// Uplink exposes the node's uplink.
func (n *Node) Uplink() *uplink.Server { return n.up.Server() }

// DevAPIKey is the server API key a dev-mode node made for itself, or "".
func (n *Node) DevAPIKey() string { return n.up.DevAPIKey() }

// Archiver exposes the node's archiver (tests stop and restart it); nil
// with NonCore.NoArchive.
func (n *Node) Archiver() *archive.Archiver { return n.nonCore.Archiver() }

// ArchiveStore exposes the node's archive; nil with NonCore.NoArchive.
func (n *Node) ArchiveStore() *archive.Store { return n.nonCore.ArchiveStore() }

// Webhooks exposes the node's webhook dispatcher; nil without endpoints.
func (n *Node) Webhooks() *webhook.Dispatcher { return n.nonCore.Webhooks() }

// Dev reports whether the node runs in dev mode.
func (n *Node) Dev() bool { return n.dev }

// Close stops everything in order and waits: stop taking requests, then
// the components in reverse (the autoscaler before its children, viewers'
// connections closed, likes flushed), then NATS. Idempotent.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		if n.host != nil {
			_ = n.host.Close()
		} else if n.ln != nil {
			_ = n.ln.Close() // Start failed before the host served it
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
var devOnly = router.Route{Path: DevTokenPath, Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
	protocol.WriteError(w, protocol.Errorf(http.StatusNotFound, protocol.CodeDevOnly, "",
		"dev tokens exist only on a server started without a JWT secret (liveroom serve in dev mode); this one has a secret, so mint tokens with it (liveroom token)"))
})}
