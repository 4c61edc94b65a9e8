package role

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"sync"
	"syscall"
	"time"

	"github.com/liveroom/liveroom/internal/admin"
	"github.com/liveroom/liveroom/internal/metrics"
	"github.com/liveroom/liveroom/internal/router"
)

// HostConfig configures a Host.
type HostConfig struct {
	// Listener is the public address, already listening (ListenHTTP): a
	// taken address fails before the process waits for NATS.
	Listener net.Listener
	// MetricsAddr, when set, serves /metrics there instead of with the
	// other operator views.
	MetricsAddr string
	// InternalAddr, when set, serves the operator views (Mount.Operator and
	// /metrics) there only, without a token: bind it to loopback or a
	// private network. Empty: they are served on the public address to
	// admin tokens only (admin.Operator with Operator).
	InternalAddr string
	// OperatorOnly says the public address serves operator views only (the
	// autoscaler's): it is an internal address, and they are served there
	// without a token.
	OperatorOnly bool
	// AdminAddr, when set, serves the admin API (Mount.Admin) there only,
	// instead of on the public address.
	AdminAddr string
	// DebugAddr, when set, serves Go's /debug/pprof/ there.
	DebugAddr string
	// Operator guards the operator views on the public address.
	Operator admin.OperatorConfig
	Logger   *slog.Logger
}

// Host serves the components of one process: it starts them in order,
// registers their metrics, mounts their routes on one router and serves it
// on the public address (and the side addresses of HostConfig), and closes
// them in reverse.
type Host struct {
	cfg     HostConfig
	comps   []Component
	started int
	http    *http.Server
	side    []*http.Server
	// internalURL is the base URL of InternalAddr, "" without it.
	internalURL string
	handler     http.Handler
	wg          sync.WaitGroup
	// failed is closed when the public server stops on its own; err says
	// why.
	failed    chan struct{}
	err       error
	closeOnce sync.Once
}

// StartHost starts comps in order, then serves them. On error what was
// started is closed, the listener included.
func StartHost(ctx context.Context, cfg HostConfig, comps ...Component) (_ *Host, err error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	h := &Host{cfg: cfg, comps: comps, failed: make(chan struct{})}
	defer func() {
		if err != nil {
			_ = h.Close()
		}
	}()
	for _, c := range comps {
		h.started++
		if err := c.Start(ctx); err != nil {
			return nil, err
		}
	}
	reg := metrics.NewRegistry()
	var m Mount
	for _, c := range comps {
		if err := c.Register(reg); err != nil {
			return nil, fmt.Errorf("cannot register metrics: %w", err)
		}
		if err := mount(&m, c); err != nil {
			return nil, err
		}
	}
	metricsRoute := router.Route{Path: "/metrics", Methods: []string{http.MethodGet}, Handler: metrics.Handler(reg)}
	operator := m.Operator
	if cfg.MetricsAddr != "" {
		if _, err := h.serveSide(cfg.MetricsAddr, router.New(router.Config{Routes: []router.Route{metricsRoute}})); err != nil {
			return nil, err
		}
	} else {
		operator = append(operator, metricsRoute)
	}
	if cfg.InternalAddr != "" {
		if h.internalURL, err = h.serveSide(cfg.InternalAddr, router.New(router.Config{Routes: operator})); err != nil {
			return nil, err
		}
	} else if cfg.OperatorOnly {
		m.Routes = append(m.Routes, operator...)
	} else {
		m.Routes = append(m.Routes, OperatorRoutes(cfg.Operator, operator)...)
	}
	if cfg.AdminAddr != "" && m.Admin != nil {
		if _, err := h.serveSide(cfg.AdminAddr, router.New(router.Config{Admin: m.Admin})); err != nil {
			return nil, err
		}
		m.Admin = nil // not on the public address
	}
	if cfg.DebugAddr != "" {
		if _, err := h.serveSide(cfg.DebugAddr, debugHandler()); err != nil {
			return nil, err
		}
	}
	h.handler = router.New(m.Config)
	h.http = &http.Server{Handler: h.handler, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second,
		ErrorLog: slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelDebug)}
	if m.ConfigureHTTP != nil {
		m.ConfigureHTTP(h.http)
	}
	ln := cfg.Listener
	if m.Listener != nil {
		ln = m.Listener(ln)
	}
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		// Both accept loops (the gateway's and net/http's) back off on
		// accept errors such as EMFILE (up to 1 s) rather than spinning.
		err := h.http.Serve(ln)
		if !errors.Is(err, http.ErrServerClosed) {
			h.err = err
			cfg.Logger.Error("http server stopped", "err", err)
			close(h.failed)
		}
	}()
	cfg.Logger.Info("listening", "addr", cfg.Listener.Addr().String())
	return h, nil
}

// mount adds c's routes to m, refusing a single handler set twice.
func mount(m *Mount, c Component) error {
	var own Mount
	c.Mount(&own)
	for _, s := range []struct {
		name     string
		dst, src *http.Handler
	}{{"send", &m.Send, &own.Send}, {"server API", &m.Server, &own.Server}, {"admin API", &m.Admin, &own.Admin}, {"pages", &m.Pages, &own.Pages}} {
		if *s.src == nil {
			continue
		}
		if *s.dst != nil {
			return fmt.Errorf("two components serve the %s", s.name)
		}
		*s.dst = *s.src
	}
	m.Routes = append(m.Routes, own.Routes...)
	m.RoomRoutes = append(m.RoomRoutes, own.RoomRoutes...)
	m.Operator = append(m.Operator, own.Operator...)
	if own.Listener != nil {
		if m.Listener != nil {
			return errors.New("two components wrap the listener")
		}
		m.Listener = own.Listener
	}
	if own.ConfigureHTTP != nil {
		if m.ConfigureHTTP != nil {
			return errors.New("two components configure the HTTP server")
		}
		m.ConfigureHTTP = own.ConfigureHTTP
	}
	return nil
}

// Handler is the public handler (a *router.Router).
func (h *Host) Handler() http.Handler { return h.handler }

// InternalURL is the base URL of HostConfig.InternalAddr, "" without it.
func (h *Host) InternalURL() string { return h.internalURL }

// Failed is closed when the public HTTP server stops on its own; Err says
// why.
func (h *Host) Failed() <-chan struct{} { return h.failed }

// Err is why the public HTTP server stopped on its own, after Failed.
func (h *Host) Err() error {
	select {
	case <-h.failed:
		return h.err
	default:
		return nil
	}
}

// Shutdown stops taking requests (in-flight ones get up to 5 s) and closes
// the side servers, leaving the components running: a gateway drains
// first, then its process calls Close.
func (h *Host) Shutdown() {
	for _, s := range h.side {
		_ = s.Close()
	}
	switch {
	case h.http != nil:
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = h.http.Shutdown(ctx)
		cancel()
	case h.cfg.Listener != nil:
		_ = h.cfg.Listener.Close() // never served
	}
}

// Close shuts the servers down, closes the components in reverse order and
// waits for the servers' goroutines. Idempotent.
func (h *Host) Close() error {
	var errs []error
	h.closeOnce.Do(func() {
		h.Shutdown()
		for i := h.started - 1; i >= 0; i-- {
			if err := h.comps[i].Close(); err != nil {
				errs = append(errs, err)
			}
		}
		h.wg.Wait()
	})
	return errors.Join(errs...)
}

// serveSide serves hd on a side address until Close and returns its base
// URL.
func (h *Host) serveSide(addr string, hd http.Handler) (string, error) {
	ln, err := ListenHTTP(addr)
	if err != nil {
		return "", err
	}
	srv := &http.Server{Handler: hd, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(h.cfg.Logger.Handler(), slog.LevelDebug)}
	h.side = append(h.side, srv)
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		_ = srv.Serve(ln)
	}()
	h.cfg.Logger.Info("listening", "addr", ln.Addr().String())
	return "http://" + ln.Addr().String(), nil
}

// debugHandler is Go's profiler, served on its own address only: profiles
// show internals and cost CPU.
func debugHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// OperatorRoutes puts the operator views behind the admin role
// (admin.Operator), for a public address.
func OperatorRoutes(cfg admin.OperatorConfig, routes []router.Route) []router.Route {
	out := make([]router.Route, len(routes))
	for i, r := range routes {
		r.Handler = admin.Operator(cfg, r.Handler)
		out[i] = r
	}
	return out
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
