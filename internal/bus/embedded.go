package bus

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
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
}

// Embedded is a running NATS server with JetStream.
type Embedded struct {
	srv *server.Server
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
		WriteDeadline:         10 * time.Second,
		DisableShortFirstPing: true,
	}
	if cfg.ClusterName != "" {
		opts.Cluster.Name = cfg.ClusterName
		opts.Cluster.Host = cfg.ClusterHost
		opts.Cluster.Port = cfg.ClusterPort
		routes, err := parseRoutes(cfg.Routes)
		if err != nil {
			return nil, err
		}
		opts.Routes = routes
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("cannot create nats server: %w", err)
	}
	srv.SetLoggerV2(&slogBridge{l: cfg.Logger.With("component", "nats")}, cfg.Debug, false, false)
	srv.Start()
	if !srv.ReadyForConnections(30 * time.Second) {
		srv.Shutdown()
		return nil, errors.New("cannot start nats: not ready after 30s")
	}
	return &Embedded{srv: srv}, nil
}

// ClientURL is the URL clients connect to.
func (e *Embedded) ClientURL() string { return e.srv.ClientURL() }

// Server exposes the underlying server (tests read its counters).
func (e *Embedded) Server() *server.Server { return e.srv }

// Close shuts the server down and waits for it. It is idempotent.
func (e *Embedded) Close() {
	e.srv.Shutdown()
	e.srv.WaitForShutdown()
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
