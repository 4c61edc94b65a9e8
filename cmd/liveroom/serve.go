package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/liveroom/liveroom/internal/app"
)

// runServe implements `liveroom serve`: every role in one process.
func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg app.Config
	var lf logFlags
	var gifts string
	var ev envs
	fs.StringVar(&cfg.Addr, "addr", env("ADDR", ":8080"), "HTTP listen address ($LIVEROOM_ADDR)")
	fs.StringVar(&cfg.PublicURL, "public-url", env("PUBLIC_URL", ""), "WebSocket URL handed out by dispatch (default ws://localhost:PORT/v1/ws) ($LIVEROOM_PUBLIC_URL)")
	fs.StringVar(&cfg.DataDir, "data-dir", env("DATA_DIR", "./data"), "JetStream data directory ($LIVEROOM_DATA_DIR)")
	fs.StringVar(&cfg.NATSURL, "nats-url", env("NATS_URL", ""), "use this external NATS instead of the embedded one ($LIVEROOM_NATS_URL)")
	fs.StringVar(&cfg.NATSHost, "nats-host", env("NATS_HOST", "127.0.0.1"), "embedded NATS listen host, for role processes ($LIVEROOM_NATS_HOST)")
	fs.IntVar(&cfg.NATSPort, "nats-port", ev.int("NATS_PORT", 4222), "embedded NATS listen port; -1 for a random one ($LIVEROOM_NATS_PORT)")
	secret := fs.String("jwt-secret", "", "HS256 secret that verifies tokens; prefer $LIVEROOM_JWT_SECRET, flags show in ps (empty: dev mode)")
	debugAddr := fs.String("debug-addr", env("DEBUG_ADDR", ""), "serve Go's /debug/pprof/ on this separate address; empty: off ($LIVEROOM_DEBUG_ADDR)")
	gatewayFlags(fs, &cfg.Gateway, &ev)
	uplinkFlags(fs, &cfg.Uplink, &gifts, &ev)
	lf.register(fs)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: liveroom serve [flags]\n\nRuns NATS (embedded), gateway, uplink, dispatch and the web pages on one address.\nWithout a JWT secret ($LIVEROOM_JWT_SECRET) it runs in dev mode.\n\nflags:")
		fs.PrintDefaults()
	}
	if stop, err := parseAll(fs, args, &ev); stop {
		return err
	}
	cfg.JWTSecret = secretOr(*secret)
	cfg.Uplink.Gifts = splitList(gifts)
	log, err := newLogger(stderr, lf.level, lf.format)
	if err != nil {
		return err
	}
	cfg.Logger = log
	n, err := app.New(cfg)
	if err != nil {
		return err
	}
	if *debugAddr != "" {
		stopDebug, err := serveDebug(*debugAddr, log)
		if err != nil {
			return err
		}
		defer stopDebug()
	}
	if err := n.Start(ctx); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "liveroom is running: open %s in a browser (Ctrl-C stops it)\n", n.URL())
	<-ctx.Done()
	log.Info("shutting down")
	return n.Close()
}
