package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	"github.com/liveroom/liveroom/internal/apikey"
	"github.com/liveroom/liveroom/internal/role"

	"github.com/liveroom/liveroom/internal/admin"
	"github.com/liveroom/liveroom/internal/auth"
	"github.com/liveroom/liveroom/internal/bus"
	"github.com/liveroom/liveroom/internal/dispatch"
	"github.com/liveroom/liveroom/internal/gateway"
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

func (r *roleFlags) register(t flagTable, defAddr string) {
	r.addr = defAddr
	t.String(&r.addr, "addr", "HTTP listen address")
	r.natsURL = "nats://127.0.0.1:4222"
	t.String(&r.natsURL, "nats-url", "NATS server(s), comma separated")
	r.replicas = 1
	t.Int(&r.replicas, "replicas", "replicas of streams and buckets: 3 on a 3-node NATS cluster")
	r.jwt.register(t, "HS256 secret that verifies tokens; prefer $LIVEROOM_JWT_SECRET, flags show in ps")
	t.String(&r.metricsAddr, "metrics-addr", "serve /metrics on this separate address instead of --addr")
	t.String(&r.internalAddr, "internal-addr", internalAddrUsage)
	t.String(&r.debugAddr, "debug-addr", "serve Go's /debug/pprof/ on this separate address, e.g. 127.0.0.1:6060; empty: off")
	r.log.register(t)
	r.nats.register(t)
}

// internalAddrUsage documents --internal-addr (serve and the roles).
const internalAddrUsage = "serve the operator views (/metrics unless --metrics-addr, GET /v1/gateways, GET /v1/autoscale/decisions) on this address only, without a token, e.g. 127.0.0.1:9090; empty: on --addr to admin tokens only"

// proc is what a single-role command has once connected: its logger, its
// dependencies and its public listener.
type proc struct {
	log  *slog.Logger
	deps role.Deps
	ln   net.Listener
}

// connect connects to NATS as nr (a gateway with its id), waits for
// liveroom's streams (role.Connect) and listens on --addr. v, the token
// verifier, may be nil (dispatch without a key).
func (r *roleFlags) connect(ctx context.Context, name string, nr bus.Role, id string, v *auth.Verifier, stderr io.Writer) (*proc, error) {
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
	ln, err := role.ListenHTTP(r.addr)
	if err != nil {
		return nil, err
	}
	d, err := role.Connect(ctx, role.ConnectConfig{URL: r.natsURL, Name: name, Role: nr, Options: opts,
		Streams: bus.StreamConfig{Replicas: r.replicas}, Logger: log})
	if err != nil {
		ln.Close()
		return nil, err
	}
	d.Verifier = v
	return &proc{log: log, deps: d, ln: ln}, nil
}

// run serves comps (role.Host) until ctx ends or the HTTP server fails,
// then closes them and the NATS connection. wait, when not nil, replaces
// the wait for ctx: it returns when the process should stop (the gateway
// drains first). adminAddr, when set, serves the admin API there only.
func (r *roleFlags) run(ctx context.Context, p *proc, adminAddr string, wait func(failed <-chan struct{}), comps ...role.Component) error {
	defer p.deps.NC.Close()
	h, err := role.StartHost(ctx, role.HostConfig{Listener: p.ln, MetricsAddr: r.metricsAddr, InternalAddr: r.internalAddr,
		AdminAddr: adminAddr, DebugAddr: r.debugAddr, Operator: admin.OperatorConfig{Verifier: p.deps.Verifier}, Logger: p.log}, comps...)
	if err != nil {
		return err
	}
	if wait == nil {
		wait = func(failed <-chan struct{}) {
			select {
			case <-ctx.Done():
			case <-failed:
			}
		}
	}
	wait(h.Failed())
	return errors.Join(h.Close(), h.Err())
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
	var ev envs
	cfg := gateway.DefaultConfig()
	t := newFlagTable(fs, &ev)
	rf.register(t, ":8081")
	t.envAs("GATEWAY_ID").String(&cfg.ID, "id", "gateway id (default random)")
	t.String(&cfg.PublicURL, "public-url", "WebSocket URL clients use (default ws://127.0.0.1:PORT/v1/ws)")
	gatewayFlags(t, &cfg)
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
	v, err := rf.verifier()
	if err != nil {
		return err
	}
	if cfg.ID == "" {
		// The id is known before connecting: a credential minted from the
		// key file is bound to it.
		cfg.ID = gateway.NewID()
	}
	p, err := rf.connect(ctx, "liveroom-gateway", bus.RoleGateway, cfg.ID, v, stderr)
	if err != nil {
		return err
	}
	// Go's default target, and memory back to the OS once a join storm is
	// over (internal/gctune).
	stopGC, err := startGC(ctx, 0, p.log)
	if err != nil {
		p.deps.NC.Close()
		return err
	}
	defer stopGC()
	if cfg.PublicURL == "" {
		_, port, _ := net.SplitHostPort(p.ln.Addr().String())
		cfg.PublicURL = "ws://127.0.0.1:" + port + role.WSPath
	}
	g, err := role.NewGateway(p.deps, cfg)
	if err != nil {
		p.deps.NC.Close()
		return err
	}
	// SIGTERM (or Ctrl-C) drains before exiting; so does a drain ordered
	// through `liveroom drain` or the admin API. The HTTP server keeps
	// running during the drain to answer new upgrades with 503 draining.
	return rf.run(ctx, p, "", func(failed <-chan struct{}) {
		select {
		case <-failed: // nothing left to drain for
		case <-ctx.Done():
			p.log.Info("signal received: draining before exit")
			dctx, cancel := context.WithTimeout(context.Background(), drainBudget(cfg))
			_ = g.Drain(dctx)
			cancel()
		case <-g.Drained():
		}
	}, g)
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
	var gifts, words string
	var ev envs
	cfg := uplink.DefaultConfig()
	t := newFlagTable(fs, &ev)
	rf.register(t, ":8082")
	uplinkFlags(t, &cfg, &gifts)
	var kc apikey.Config
	apiKeyFlags(t, &kc)
	wordFlags(t, &words)
	var gcPercent int
	gcFlag(t, &gcPercent, sendPathGCPercent)
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
	cfg.Words, cfg.Gifts = wf, splitList(gifts)
	v, err := rf.verifier()
	if err != nil {
		return err
	}
	p, err := rf.connect(ctx, "liveroom-uplink", bus.RoleUplink, "", v, stderr)
	if err != nil {
		return err
	}
	stopGC, err := startGC(ctx, gcPercent, p.log)
	if err != nil {
		p.deps.NC.Close()
		return err
	}
	defer stopGC()
	return rf.run(ctx, p, "", nil, role.NewUplink(p.deps, role.UplinkConfig{Uplink: cfg, APIKeys: kc}))
}

func runDispatch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("dispatch", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var rf roleFlags
	var ev envs
	t := newFlagTable(fs, &ev)
	rf.register(t, ":8083")
	var adminAddr string
	t.String(&adminAddr, "admin-addr", "serve the admin API (/v1/admin/) on this separate address only, e.g. 127.0.0.1:8090; empty: on --addr")
	var dc dispatch.Config
	dispatchFlags(t, &dc)
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
	// The admin API (drain a gateway, announce an audience) lives beside
	// dispatch when the JWT secret is known; admin calls need a token with
	// role admin. Without it dispatch verifies no token, and its operator
	// views answer 403 internal_only on --addr.
	v, _ := rf.verifier()
	p, err := rf.connect(ctx, "liveroom-dispatch", bus.RoleDispatch, "", v, stderr)
	if err != nil {
		return err
	}
	d, err := role.NewDispatch(p.deps, dc, nil)
	if err != nil {
		p.deps.NC.Close()
		return err
	}
	return rf.run(ctx, p, adminAddr, nil, d)
}
