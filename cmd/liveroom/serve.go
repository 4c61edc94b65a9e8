package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/liveroom/liveroom/internal/app"
	"github.com/liveroom/liveroom/internal/autoscale"
	"github.com/liveroom/liveroom/internal/bus"
	"github.com/liveroom/liveroom/internal/gateway"
	"github.com/liveroom/liveroom/internal/uplink"
)

// runServe implements `liveroom serve`: every role in one process.
func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg app.Config
	var lf logFlags
	var gifts string
	var ev envs
	cfg.Gateway, cfg.Uplink = gateway.DefaultConfig(), uplink.DefaultConfig()
	t := newFlagTable(fs, &ev)
	t.String(&cfg.Addr, "addr", "HTTP listen address (default "+app.DefaultAddr+", and "+app.DevAddr+" in dev mode)")
	t.Bool(&cfg.DevOnNetwork, "insecure-dev-mode-on-network", "INSECURE: let dev mode (no JWT secret) listen on a non-loopback --addr, where anyone can mint viewer and anchor tokens; for demos on a trusted network only")
	t.String(&cfg.PublicURL, "public-url", "WebSocket URL handed out by dispatch (default ws://localhost:PORT/v1/ws)")
	cfg.DataDir = "./data"
	t.String(&cfg.DataDir, "data-dir", "JetStream data directory")
	t.String(&cfg.NATSURL, "nats-url", "use this external NATS instead of the embedded one")
	cfg.NATSHost = "127.0.0.1"
	t.String(&cfg.NATSHost, "nats-host", "embedded NATS listen host, for role processes")
	cfg.NATSPort = 4222
	t.Int(&cfg.NATSPort, "nats-port", "embedded NATS listen port; -1 for a random one")
	var naf natsAuthFlags
	naf.register(t)
	fs.Lookup("nats-key-file").Usage = "NATS key file: the embedded NATS accepts only credentials minted from it (default DATA-DIR/nats.key, created when missing); with --nats-url, serve mints its own credential from it (see liveroom creds) ($LIVEROOM_NATS_KEY_FILE)"
	var jf jwtFlags
	jf.register(t, "HS256 secret that verifies tokens; prefer $LIVEROOM_JWT_SECRET, flags show in ps (empty, and no --jwt-public-key: dev mode)")
	t.String(&cfg.DebugAddr, "debug-addr", "serve Go's /debug/pprof/ on this separate address; empty: off")
	t.String(&cfg.InternalAddr, "internal-addr", internalAddrUsage)
	gatewayFlags(t, &cfg.Gateway)
	uplinkFlags(t, &cfg.Uplink, &gifts)
	apiKeyFlags(t, &cfg.APIKeys)
	var words string
	wordFlags(t, &words)
	var gcPercent int
	gcFlag(t, &gcPercent, sendPathGCPercent)
	var pf policyFlags
	t.Bool(&cfg.Autoscale.Enabled, "autoscale", "run the gateways as child processes, started and drained by the autoscaler, instead of one gateway in this process")
	pf.register(t, "autoscale-")
	var ports string
	t.String(&ports, "autoscale-ports", "with --autoscale: port range of the gateway processes, LOW-HIGH (default any free port)")
	cfg.Autoscale.DrainTimeout = 5 * time.Minute
	t.Duration(&cfg.Autoscale.DrainTimeout, "autoscale-drain-timeout", "with --autoscale: stop a drained gateway that still runs after this long")
	t.Duration(&cfg.Autoscale.StartDelay, "autoscale-start-delay", "with --autoscale: hold each new gateway process this long before starting it, as a pod waits to be scheduled; the autoscaler measures and plans for it (tests, benchmarks)")
	lf.register(t)
	var nf nonCoreFlags
	nf.register(t, true)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), `usage: liveroom serve [flags]

Runs NATS (embedded), gateway, uplink, dispatch and the web pages on one address.
Without a JWT secret ($LIVEROOM_JWT_SECRET) it runs in dev mode: it listens on
loopback only and mints tokens for local callers (POST /v1/dev/token); its
server API (/v1/server/…) takes the dev API key it logs, unless keys are given.

With --autoscale the gateways are child processes of this binary instead, each
with its own file limit, from --autoscale-min to --autoscale-max of them: the
autoscaler adds one as soon as the demand needs it (capacity per gateway from
--gateway-max-conns and the other --gateway-max-* flags or --capacity-file, at
--autoscale-target utilisation), and drains and stops the least loaded one
after --autoscale-stabilization of lower demand. The gateway flags below apply
to every child. GET /v1/autoscale/decisions lists the decisions.

example:
  liveroom serve --autoscale --autoscale-min 1 --autoscale-max 4 --gateway-max-conns 3000

flags:`)
		fs.PrintDefaults()
	}
	if stop, err := parseAll(fs, args, &ev); stop {
		return err
	}
	if cfg.Autoscale.Enabled {
		var base autoscale.Capacity
		if maxConnsGiven(fs) {
			base.Conns = cfg.Gateway.MaxConns
		}
		p, err := pf.policy(base)
		if err != nil {
			return err
		}
		lo, hi, err := parsePorts(ports)
		if err != nil {
			return err
		}
		cfg.Autoscale.Policy, cfg.Autoscale.PortMin, cfg.Autoscale.PortMax = p, lo, hi
		cfg.Autoscale.GatewayArgs = childGatewayArgs(fs)
		cfg.Autoscale.ChildOutput = stderr
	}
	ac, err := jf.config()
	if err != nil {
		return err
	}
	cfg.NATSKeyFile = naf.keyFile
	if cfg.NATSURL == "" && naf.user != "" {
		return errors.New("--nats-user is for an external NATS (--nats-url); the embedded one uses the key file")
	}
	naf.keyFile = "" // the node mints from cfg.NATSKeyFile itself
	if cfg.NATSOptions, err = naf.options(bus.RoleAll, ""); err != nil {
		return err
	}
	cfg.Auth = ac
	cfg.Uplink.Gifts = splitList(gifts)
	wf, err := loadWords(words)
	if err != nil {
		return err
	}
	cfg.Uplink.Words = wf
	ncfg, err := nf.config()
	if err != nil {
		return err
	}
	cfg.NonCore = ncfg
	log, err := newLogger(stderr, lf.level, lf.format)
	if err != nil {
		return err
	}
	cfg.Logger = log
	stopGC, err := startGC(ctx, gcPercent, log)
	if err != nil {
		return err
	}
	defer stopGC()
	n, err := app.New(cfg)
	if err != nil {
		return err
	}
	if err := n.Start(ctx); err != nil {
		return withFix(err, "--nats-port", "--nats-port", "--data-dir")
	}
	fmt.Fprintf(stdout, "liveroom is running: open %s in a browser (Ctrl-C stops it)\n", n.URL())
	<-ctx.Done()
	log.Info("shutting down")
	return n.Close()
}

// childGatewayArgs repeats the gateway and log flags given to serve for its
// gateway processes (their LIVEROOM_* variables reach them through the
// environment).
func childGatewayArgs(fs *flag.FlagSet) []string {
	names := map[string]bool{}
	gfs := flag.NewFlagSet("gateway", flag.ContinueOnError)
	gatewayFlags(newFlagTable(gfs, &envs{}), &gateway.Config{})
	gfs.VisitAll(func(f *flag.Flag) { names[f.Name] = true })
	// The children log to serve's stderr, in serve's format.
	names["log-level"], names["log-format"] = true, true
	var args []string
	fs.Visit(func(f *flag.Flag) {
		if names[f.Name] {
			args = append(args, "--"+f.Name+"="+f.Value.String())
		}
	})
	return args
}

// maxConnsGiven reports whether --max-conns was given (flag or variable):
// with --autoscale it is the capacity when no --gateway-max-conns is.
func maxConnsGiven(fs *flag.FlagSet) bool {
	set := env("MAX_CONNS", "") != ""
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == "max-conns" })
	return set
}
