package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/liveroom/liveroom/internal/auth"
	"github.com/liveroom/liveroom/internal/bus"
	"github.com/liveroom/liveroom/internal/dispatch"
	"github.com/liveroom/liveroom/internal/gateway"
	"github.com/liveroom/liveroom/internal/uplink"
)

// roleFlags are shared by the single-role commands.
type roleFlags struct {
	addr     string
	natsURL  string
	replicas int
	secret   string
	log      logFlags
}

func (r *roleFlags) register(fs *flag.FlagSet, defAddr string) {
	fs.StringVar(&r.addr, "addr", env("ADDR", defAddr), "HTTP listen address ($LIVEROOM_ADDR)")
	fs.StringVar(&r.natsURL, "nats-url", env("NATS_URL", "nats://127.0.0.1:4222"), "NATS server(s), comma separated ($LIVEROOM_NATS_URL)")
	fs.IntVar(&r.replicas, "replicas", envInt("REPLICAS", 1), "replicas of streams and buckets: 3 on a 3-node NATS cluster ($LIVEROOM_REPLICAS)")
	fs.StringVar(&r.secret, "jwt-secret", "", "HS256 secret that verifies tokens; prefer $LIVEROOM_JWT_SECRET, flags show in ps")
	r.log.register(fs)
}

// role is what a single-role command has once connected.
type role struct {
	log *slog.Logger
	nc  *nats.Conn
	js  jetstream.JetStream
	ln  net.Listener
}

func (r *roleFlags) connect(ctx context.Context, name string, stderr io.Writer) (*role, error) {
	log, err := newLogger(stderr, r.log.level, r.log.format)
	if err != nil {
		return nil, err
	}
	nc, err := bus.Connect(r.natsURL, name, log)
	if err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("cannot open jetstream: %w", err)
	}
	sctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	err = bus.WaitStreams(sctx, js, bus.StreamConfig{Replicas: r.replicas})
	cancel()
	if err != nil {
		nc.Close()
		return nil, err
	}
	ln, err := net.Listen("tcp", r.addr)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("cannot listen on %s: %w", r.addr, err)
	}
	return &role{log: log, nc: nc, js: js, ln: ln}, nil
}

// serveHTTP serves h (plus /healthz) until ctx ends, then shuts down.
func (r *role) serveHTTP(ctx context.Context, h http.Handler, stop func()) error {
	mux := http.NewServeMux()
	mux.Handle("/", h)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(r.log.Handler(), slog.LevelDebug)}
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

// secretOr returns the flag value, or $LIVEROOM_JWT_SECRET when it is empty.
// The secret is never a flag default, so -help cannot print it.
func secretOr(flagValue string) string {
	if flagValue != "" {
		return flagValue
	}
	return os.Getenv("LIVEROOM_JWT_SECRET")
}

func (r *roleFlags) verifier() (*auth.Verifier, error) {
	s := secretOr(r.secret)
	if s == "" {
		return nil, errors.New("a JWT secret is required for a role process (--jwt-secret or $LIVEROOM_JWT_SECRET; the same on every role)")
	}
	return auth.NewHS256([]byte(s), 30*time.Second)
}

func runGateway(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("gateway", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var rf roleFlags
	var cfg gateway.Config
	rf.register(fs, ":8081")
	fs.StringVar(&cfg.ID, "id", env("GATEWAY_ID", ""), "gateway id (default random) ($LIVEROOM_GATEWAY_ID)")
	fs.StringVar(&cfg.PublicURL, "public-url", env("PUBLIC_URL", ""), "WebSocket URL clients use (default ws://127.0.0.1:PORT/v1/ws) ($LIVEROOM_PUBLIC_URL)")
	gatewayFlags(fs, &cfg)
	if stop, err := parseFlags(fs, args); stop {
		return err
	}
	v, err := rf.verifier()
	if err != nil {
		return err
	}
	r, err := rf.connect(ctx, "liveroom-gateway", stderr)
	if err != nil {
		return err
	}
	if cfg.PublicURL == "" {
		_, port, _ := net.SplitHostPort(r.ln.Addr().String())
		cfg.PublicURL = "ws://127.0.0.1:" + port + "/v1/ws"
	}
	cfg.NC, cfg.JS, cfg.Verifier, cfg.Logger = r.nc, r.js, v, r.log
	g, err := gateway.New(cfg)
	if err != nil {
		return err
	}
	if err := g.Start(ctx); err != nil {
		return err
	}
	return r.serveHTTP(ctx, g.Handler(), func() { _ = g.Close() })
}

func runUplink(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("uplink", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var rf roleFlags
	var cfg uplink.Config
	var gifts string
	rf.register(fs, ":8082")
	uplinkFlags(fs, &cfg, &gifts)
	if stop, err := parseFlags(fs, args); stop {
		return err
	}
	v, err := rf.verifier()
	if err != nil {
		return err
	}
	r, err := rf.connect(ctx, "liveroom-uplink", stderr)
	if err != nil {
		return err
	}
	cfg.NC, cfg.JS, cfg.Verifier, cfg.Logger, cfg.Gifts = r.nc, r.js, v, r.log, splitList(gifts)
	u, err := uplink.New(cfg)
	if err != nil {
		return err
	}
	runCtx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = u.Run(runCtx)
	}()
	return r.serveHTTP(ctx, u.Handler(), func() {
		cancel()
		<-done
	})
}

func runDispatch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("dispatch", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var rf roleFlags
	rf.register(fs, ":8083")
	if stop, err := parseFlags(fs, args); stop {
		return err
	}
	r, err := rf.connect(ctx, "liveroom-dispatch", stderr)
	if err != nil {
		return err
	}
	d, err := dispatch.New(dispatch.Config{NC: r.nc, Logger: r.log})
	if err != nil {
		return err
	}
	if err := d.Start(ctx); err != nil {
		return err
	}
	return r.serveHTTP(ctx, d.Handler(), func() { _ = d.Close() })
}
