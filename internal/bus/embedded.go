package bus

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// EmbeddedConfig configures the embedded NATS server.
type EmbeddedConfig struct {
	// Host and Port for NATS clients. Port 0 means 4222; -1 picks a random port.
	Host string
	Port int
	// DataDir holds JetStream files. Required.
	DataDir string
	// Name is the server name (must be unique in a cluster). Default "liveroom".
	Name string
	// Cluster settings; empty ClusterName means a single server.
	ClusterName string
	ClusterHost string
	ClusterPort int
	Routes      []string
	// Logger receives the server's log, bridged to slog. Default slog.Default().
	Logger *slog.Logger
	// Debug enables the server's debug log.
	Debug bool

	// Authentication (auth.go). Exactly one of KeyFile, Keys and NoAuth:
	// KeyFile is the NATS key file, re-read every KeyReloadInterval (key
	// rotation); Keys fixes the keys instead (tests). Every client and
	// cluster route must then authenticate with a credential minted from a
	// key, and each client gets its role's permissions (perms.go).
	KeyFile string
	Keys    Keys
	// NoAuth runs the server without authentication: any process that
	// reaches its port may publish and read anything. Tests only, and
	// `liveroom nats --insecure-no-auth`.
	NoAuth bool

	// MonitorAddr, when set (host:port), serves NATS's monitoring endpoints
	// (/varz, /jsz, /routez, …) there. They have no authentication: an
	// operator's address (loopback or a private network) only.
	MonitorAddr string

	// TLS for the client and route ports: the server's certificate and key
	// (PEM files), and the CA that verifies the other servers' route
	// certificates (and, when set, clients' certificates are not
	// required). All empty: plain TCP.
	TLSCert, TLSKey, TLSCA string
}

// Embedded is a running NATS server with JetStream.
type Embedded struct {
	srv *server.Server
	kr  *keyring // nil without authentication
}

// StartEmbedded starts a NATS server with JetStream and waits until it accepts
// clients.
func StartEmbedded(cfg EmbeddedConfig) (*Embedded, error) {
	if cfg.DataDir == "" {
		return nil, errors.New("cannot start nats: data dir is required")
	}
	if cfg.Name == "" {
		cfg.Name = "liveroom"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	opts := &server.Options{
		ServerName:            cfg.Name,
		Host:                  cfg.Host,
		Port:                  cfg.Port,
		JetStream:             true,
		StoreDir:              cfg.DataDir,
		NoSigs:                true,
		MaxPayload:            1 << 20,
		DisableShortFirstPing: true,
		// A client that does not read for 2 s (frozen) is cut off rather
		// than let its backlog grow; it reconnects and its gateway checks
		// its rooms. Clients are pinged every 2 s (they ping us faster).
		WriteDeadline: 2 * time.Second,
		PingInterval:  2 * time.Second,
		MaxPingsOut:   3,
	}
	var kr *keyring
	switch n := btoi(cfg.KeyFile != "") + btoi(len(cfg.Keys) > 0) + btoi(cfg.NoAuth); {
	case n == 0:
		return nil, errors.New("cannot start nats: no key file given (authentication is always on; see liveroom creds)")
	case n > 1:
		return nil, errors.New("cannot start nats: give one of a key file, keys or no authentication")
	case !cfg.NoAuth:
		var err error
		if kr, err = newKeyring(cfg.KeyFile, cfg.Keys, cfg.Logger.With("component", "nats")); err != nil {
			return nil, fmt.Errorf("cannot start nats: %w", err)
		}
		opts.CustomClientAuthentication = &clientAuth{kr: kr, log: cfg.Logger.With("component", "nats")}
	}
	fail := func(err error) (*Embedded, error) {
		if kr != nil {
			kr.close()
		}
		return nil, err
	}
	if cfg.TLSCert != "" || cfg.TLSKey != "" {
		tc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: cfg.TLSCert, KeyFile: cfg.TLSKey, CaFile: cfg.TLSCA})
		if err != nil {
			return fail(fmt.Errorf("cannot start nats: cannot load TLS certificate: %w", err))
		}
		opts.TLSConfig, opts.TLS, opts.TLSTimeout = tc, true, 2
	}
	if cfg.ClusterName != "" {
		// A frozen node's routes are detected in 3–4 s (pings every second,
		// three unanswered), and a route write blocked for 2 s is cut, so
		// that a hung node does not hold the others' traffic for the whole
		// freeze.
		opts.Cluster.PingInterval, opts.Cluster.MaxPingsOut = time.Second, 3
		opts.Cluster.WriteDeadline = 2 * time.Second
		opts.Cluster.Name = cfg.ClusterName
		opts.Cluster.Host = cfg.ClusterHost
		opts.Cluster.Port = cfg.ClusterPort
		routes, err := parseRoutes(cfg.Routes)
		if err != nil {
			return fail(err)
		}
		if kr != nil {
			rc := kr.current().routeCredential()
			opts.Cluster.Username, opts.Cluster.Password = rc.User, rc.Password
			opts.CustomRouterAuthentication = &routeAuth{kr: kr}
			for _, u := range routes {
				u.User = url.UserPassword(rc.User, rc.Password)
			}
		}
		opts.Routes = routes
		if opts.TLSConfig != nil {
			tc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: cfg.TLSCert, KeyFile: cfg.TLSKey, CaFile: cfg.TLSCA, Verify: cfg.TLSCA != ""})
			if err != nil {
				return fail(fmt.Errorf("cannot start nats: cannot load route TLS certificate: %w", err))
			}
			opts.Cluster.TLSConfig, opts.Cluster.TLSTimeout = tc, 2
		}
	}
	if cfg.MonitorAddr != "" {
		host, port, err := net.SplitHostPort(cfg.MonitorAddr)
		p, perr := strconv.Atoi(port)
		if err != nil || perr != nil {
			return fail(fmt.Errorf("cannot start nats: monitor address %q: want host:port", cfg.MonitorAddr))
		}
		opts.HTTPHost, opts.HTTPPort = host, p
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return fail(fmt.Errorf("cannot create nats server: %w", err))
	}
	srv.SetLoggerV2(&slogBridge{l: cfg.Logger.With("component", "nats")}, cfg.Debug, false, false)
	srv.Start()
	if !srv.ReadyForConnections(30 * time.Second) {
		srv.Shutdown()
		return fail(errors.New("cannot start nats: not ready after 30s"))
	}
	return &Embedded{srv: srv, kr: kr}, nil
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Credential mints the credential of role (and gateway id) from the
// server's current keys; an empty credential without authentication.
func (e *Embedded) Credential(role Role, id string) (Credential, error) {
	if e.kr == nil {
		return Credential{}, nil
	}
	return e.kr.current().Credential(role, id)
}

// ClientURL is the URL clients connect to.
func (e *Embedded) ClientURL() string { return e.srv.ClientURL() }

// Server exposes the underlying server (tests read its counters).
func (e *Embedded) Server() *server.Server { return e.srv }

// Close shuts the server down and waits for it. It is idempotent.
func (e *Embedded) Close() {
	e.srv.Shutdown()
	e.srv.WaitForShutdown()
	if e.kr != nil {
		e.kr.close()
	}
}

// slogBridge adapts slog to the nats-server Logger interface.
type slogBridge struct{ l *slog.Logger }

func (b *slogBridge) Noticef(f string, v ...any) { b.l.Info(fmt.Sprintf(f, v...)) }
func (b *slogBridge) Warnf(f string, v ...any)   { b.l.Warn(fmt.Sprintf(f, v...)) }
func (b *slogBridge) Fatalf(f string, v ...any)  { b.l.Error(fmt.Sprintf(f, v...)) }
func (b *slogBridge) Errorf(f string, v ...any)  { b.l.Error(fmt.Sprintf(f, v...)) }
func (b *slogBridge) Debugf(f string, v ...any)  { b.l.Debug(fmt.Sprintf(f, v...)) }
func (b *slogBridge) Tracef(f string, v ...any)  { b.l.Debug(fmt.Sprintf(f, v...)) }

func parseRoutes(routes []string) ([]*url.URL, error) {
	out := make([]*url.URL, 0, len(routes))
	for _, r := range routes {
		u, err := url.Parse(r)
		if err != nil || u.Host == "" {
			return nil, fmt.Errorf("cannot parse route %q: want nats-route://host:port", r)
		}
		out = append(out, u)
	}
	return out, nil
}
