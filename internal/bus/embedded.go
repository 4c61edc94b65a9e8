package bus

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/liveroom/liveroom/internal/lockfile"
)

// EmbeddedConfig configures the embedded NATS server.
type EmbeddedConfig struct {
	// Host and Port for NATS clients. Port 0 means 4222; -1 picks a random port.
	Host string
	Port int
	// DataDir holds JetStream files. Required. The server locks it
	// (DataDir/liveroom.lock) while it runs: a second server on the same
	// directory fails at once with a *lockfile.HeldError naming the holder,
	// instead of opening the first one's stream files.
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
	srv  *server.Server
	kr   *keyring // nil without authentication
	lock *lockfile.Lock
}

// ListenError is returned by StartEmbedded when the server cannot listen on
// its client or cluster port, most often because another process holds it
// (Taken). The command that started the server names the flag that changes
// the port.
type ListenError struct {
	// Listener is "client" or "cluster".
	Listener string
	// Addr is the host:port it tried.
	Addr string
	Err  error
}

// Taken reports whether another process holds the port.
func (e *ListenError) Taken() bool { return errors.Is(e.Err, syscall.EADDRINUSE) }

// Error implements error.
func (e *ListenError) Error() string {
	if e.Taken() {
		return fmt.Sprintf("cannot start nats: the %s port %s is taken by another process (another liveroom serve or nats?): %v", e.Listener, e.Addr, e.Err)
	}
	return fmt.Sprintf("cannot start nats: cannot listen for %s connections on %s: %v", e.Listener, e.Addr, e.Err)
}

func (e *ListenError) Unwrap() error { return e.Err }

// LockFileName is the lock file StartEmbedded keeps in its data directory.
const LockFileName = "liveroom.lock"

// readyTimeout bounds how long StartEmbedded waits for the server to accept
// clients. A server that reports a fatal error sooner (its port taken, its
// store unusable) fails at once instead.
const readyTimeout = 30 * time.Second

// StartEmbedded starts a NATS server with JetStream and waits until it accepts
// clients. It fails at once, with the cause, when the data directory is in
// use by another server (*lockfile.HeldError) or a port is taken
// (*ListenError).
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
	}
	lock, err := lockfile.Acquire(filepath.Join(cfg.DataDir, LockFileName), "data directory "+cfg.DataDir, lockfile.Command())
	if err != nil {
		return nil, fmt.Errorf("cannot start nats: %w", err)
	}
	fail := func(err error) (*Embedded, error) {
		if kr != nil {
			kr.close()
		}
		_ = lock.Close()
		return nil, err
	}
	if !cfg.NoAuth {
		if kr, err = newKeyring(cfg.KeyFile, cfg.Keys, cfg.Logger.With("component", "nats")); err != nil {
			return fail(fmt.Errorf("cannot start nats: %w", err))
		}
		opts.CustomClientAuthentication = &clientAuth{kr: kr, log: cfg.Logger.With("component", "nats")}
	}
	// nats-server reports a port it cannot bind only in its log, then
	// waits for nothing; try the ports first to say why at once.
	if err := checkListen("client", cfg.Host, cfg.Port, server.DEFAULT_PORT); err != nil {
		return fail(err)
	}
	if cfg.ClusterName != "" {
		if err := checkListen("cluster", cfg.ClusterHost, cfg.ClusterPort, 0); err != nil {
			return fail(err)
		}
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
	bridge := &slogBridge{l: cfg.Logger.With("component", "nats"), fatal: make(chan string, 1), srv: srv}
	srv.SetLoggerV2(bridge, cfg.Debug, false, false)
	srv.Start()
	if err := waitReady(srv, bridge.fatal, readyTimeout); err != nil {
		srv.Shutdown()
		srv.WaitForShutdown()
		return fail(err)
	}
	return &Embedded{srv: srv, kr: kr, lock: lock}, nil
}

// checkListen binds host:port and lets it go, so that a port held by
// another process is reported as a *ListenError before the server starts.
// Port 0 means def (0: no listener); -1 (any free port) is not checked.
func checkListen(listener, host string, port, def int) error {
	if port == 0 {
		port = def
	}
	if port <= 0 {
		return nil
	}
	addr := net.JoinHostPort(host, strconv.Itoa(port))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return &ListenError{Listener: listener, Addr: addr, Err: err}
	}
	return ln.Close()
}

// waitReady waits until srv accepts clients, or fails with the first fatal
// error the server logged, or after timeout.
func waitReady(srv *server.Server, fatal <-chan string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		if srv.ReadyForConnections(100 * time.Millisecond) {
			return nil
		}
		select {
		case msg := <-fatal:
			return fmt.Errorf("cannot start nats: %s", msg)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cannot start nats: not ready after %v", timeout)
		}
	}
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

// Close shuts the server down, waits for it and releases the data
// directory. It is idempotent.
func (e *Embedded) Close() {
	e.srv.Shutdown()
	e.srv.WaitForShutdown()
	if e.kr != nil {
		e.kr.close()
	}
	_ = e.lock.Close()
}

// slogBridge adapts slog to the nats-server Logger interface. It keeps the
// first fatal message for StartEmbedded (nats-server logs a failed start,
// a port it cannot bind say, and does not return it), and logs the dial
// errors of cluster routes at INFO while no route has connected yet (the
// other nodes of a forming cluster are simply not up yet) and at WARN
// after, never at ERROR: the server keeps retrying on its own.
type slogBridge struct {
	l     *slog.Logger
	fatal chan string // capacity 1: the first fatal message
	srv   *server.Server
	// routed is set once a route has connected.
	routed atomic.Bool
}

// routeDialError starts nats-server's message for a failed route dial.
const routeDialError = "Error trying to connect to route"

func (b *slogBridge) Noticef(f string, v ...any) { b.l.Info(fmt.Sprintf(f, v...)) }
func (b *slogBridge) Warnf(f string, v ...any)   { b.l.Warn(fmt.Sprintf(f, v...)) }
func (b *slogBridge) Debugf(f string, v ...any)  { b.l.Debug(fmt.Sprintf(f, v...)) }
func (b *slogBridge) Tracef(f string, v ...any)  { b.l.Debug(fmt.Sprintf(f, v...)) }

func (b *slogBridge) Fatalf(f string, v ...any) {
	msg := fmt.Sprintf(f, v...)
	b.l.Error(msg)
	select {
	case b.fatal <- msg:
	default:
	}
}

func (b *slogBridge) Errorf(f string, v ...any) {
	msg := fmt.Sprintf(f, v...)
	if !strings.HasPrefix(msg, routeDialError) {
		b.l.Error(msg)
		return
	}
	if !b.routed.Load() && b.srv != nil && b.srv.NumRoutes() > 0 {
		b.routed.Store(true)
	}
	if b.routed.Load() {
		b.l.Warn(msg + " (retrying)")
		return
	}
	b.l.Info(msg + " (the cluster is forming: retrying until the other nodes are up)")
}

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
