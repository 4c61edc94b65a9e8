package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"

	"github.com/liveroom/liveroom/internal/bus"
)

// runNATS implements `liveroom nats`: the embedded NATS server (with
// JetStream) as a process of its own, so that a NATS cluster can be formed
// from this binary alone.
func runNATS(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("nats", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg bus.EmbeddedConfig
	var routes string
	var lf logFlags
	var ev envs
	fs.StringVar(&cfg.Name, "name", env("NATS_NAME", "liveroom-nats"), "server name, unique in the cluster ($LIVEROOM_NATS_NAME)")
	fs.StringVar(&cfg.Host, "host", env("NATS_HOST", "127.0.0.1"), "client listen host ($LIVEROOM_NATS_HOST)")
	fs.IntVar(&cfg.Port, "port", ev.int("NATS_PORT", 4222), "client listen port ($LIVEROOM_NATS_PORT)")
	fs.StringVar(&cfg.DataDir, "data-dir", env("DATA_DIR", "./data/nats"), "JetStream data directory ($LIVEROOM_DATA_DIR)")
	fs.StringVar(&cfg.ClusterName, "cluster", env("NATS_CLUSTER", ""), "cluster name; empty runs a single server ($LIVEROOM_NATS_CLUSTER)")
	fs.StringVar(&cfg.ClusterHost, "cluster-host", env("NATS_CLUSTER_HOST", "127.0.0.1"), "route listen host ($LIVEROOM_NATS_CLUSTER_HOST)")
	fs.IntVar(&cfg.ClusterPort, "cluster-port", ev.int("NATS_CLUSTER_PORT", 6222), "route listen port ($LIVEROOM_NATS_CLUSTER_PORT)")
	fs.StringVar(&routes, "routes", env("NATS_ROUTES", ""), "routes to the other nodes, comma separated nats://host:port ($LIVEROOM_NATS_ROUTES)")
	fs.StringVar(&cfg.KeyFile, "key-file", env("NATS_KEY_FILE", ""),
		"NATS key file: clients and routes must authenticate with credentials minted from it; re-read every 2s (rotation). Default DATA-DIR/nats.key, created when missing on a single node; a cluster's nodes must share one (liveroom creds new-key) ($LIVEROOM_NATS_KEY_FILE)")
	fs.BoolVar(&cfg.NoAuth, "insecure-no-auth", envBool(&ev, "NATS_INSECURE_NO_AUTH"),
		"INSECURE: accept every client without credentials or permissions; anyone who reaches the port can forge gifts, bans and beats ($LIVEROOM_NATS_INSECURE_NO_AUTH)")
	fs.StringVar(&cfg.MonitorAddr, "monitor-addr", env("NATS_MONITOR_ADDR", ""),
		"serve NATS's monitoring endpoints (/varz, /jsz, /routez) on this operator-only address, e.g. 127.0.0.1:8222; they have no authentication; empty: off ($LIVEROOM_NATS_MONITOR_ADDR)")
	fs.StringVar(&cfg.TLSCert, "tls-cert", env("NATS_TLS_CERT", ""), "PEM certificate for TLS on the client and route ports ($LIVEROOM_NATS_TLS_CERT)")
	fs.StringVar(&cfg.TLSKey, "tls-key", env("NATS_TLS_KEY", ""), "PEM private key of --tls-cert ($LIVEROOM_NATS_TLS_KEY)")
	fs.StringVar(&cfg.TLSCA, "tls-ca", env("NATS_TLS_CA", ""), "PEM CA that verifies the other nodes' route certificates ($LIVEROOM_NATS_TLS_CA)")
	lf.register(fs)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), `usage: liveroom nats [flags]

Runs liveroom's NATS server (with JetStream). Every client authenticates with a
credential minted from the key file and gets its role's permissions (see
liveroom creds -h and docs/SECURITY.md).

A three-node cluster: make one key (liveroom creds new-key > nats.key), then
start three nodes with --cluster lr, distinct --name, --port, --cluster-port and
--data-dir, the same --key-file, each with --routes listing all three cluster
ports.

flags:`)
		fs.PrintDefaults()
	}
	if stop, err := parseAll(fs, args, &ev); stop {
		return err
	}
	switch {
	case cfg.NoAuth && cfg.KeyFile != "":
		return errors.New("give --key-file or --insecure-no-auth, not both")
	case cfg.NoAuth:
	case cfg.KeyFile == "" && cfg.ClusterName != "":
		return errors.New("a cluster's nodes must share one key file: make it once (liveroom creds new-key > nats.key) and give every node --key-file nats.key")
	case cfg.KeyFile == "":
		cfg.KeyFile = filepath.Join(cfg.DataDir, "nats.key")
		if _, err := bus.EnsureKeyFile(cfg.KeyFile); err != nil {
			return err
		}
	}
	log, err := newLogger(stderr, lf.level, lf.format)
	if err != nil {
		return err
	}
	cfg.Logger = log
	cfg.Routes = splitList(routes)
	e, err := bus.StartEmbedded(cfg)
	if err != nil {
		return withFix(err, "--port", "--cluster-port", "--data-dir")
	}
	fmt.Fprintf(stdout, "nats listening on %s\n", e.ClientURL())
	switch {
	case cfg.NoAuth:
		log.Warn("NATS WITHOUT AUTHENTICATION (--insecure-no-auth): anyone who reaches " + e.ClientURL() + " can forge gifts, bans and beats")
	default:
		log.Info("nats authentication on", "key_file", cfg.KeyFile)
	}
	<-ctx.Done()
	e.Close()
	return nil
}
