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
	root := newFlagTable(fs, &ev)
	t := root.prefixed("NATS_")
	cfg.Name = "liveroom-nats"
	t.String(&cfg.Name, "name", "server name, unique in the cluster")
	cfg.Host = "127.0.0.1"
	t.String(&cfg.Host, "host", "client listen host")
	cfg.Port = 4222
	t.Int(&cfg.Port, "port", "client listen port")
	cfg.DataDir = "./data/nats"
	t.envAs("DATA_DIR").String(&cfg.DataDir, "data-dir", "JetStream data directory")
	t.String(&cfg.ClusterName, "cluster", "cluster name; empty runs a single server")
	cfg.ClusterHost = "127.0.0.1"
	t.String(&cfg.ClusterHost, "cluster-host", "route listen host")
	cfg.ClusterPort = 6222
	t.Int(&cfg.ClusterPort, "cluster-port", "route listen port")
	t.String(&routes, "routes", "routes to the other nodes, comma separated nats://host:port")
	t.String(&cfg.KeyFile, "key-file", "NATS key file: clients and routes must authenticate with credentials minted from it; re-read every 2s (rotation). Default DATA-DIR/nats.key, created when missing on a single node; a cluster's nodes must share one (liveroom creds new-key)")
	t.Bool(&cfg.NoAuth, "insecure-no-auth", "INSECURE: accept every client without credentials or permissions; anyone who reaches the port can forge gifts, bans and beats")
	t.String(&cfg.MonitorAddr, "monitor-addr", "serve NATS's monitoring endpoints (/varz, /jsz, /routez) on this operator-only address, e.g. 127.0.0.1:8222; they have no authentication; empty: off")
	t.String(&cfg.TLSCert, "tls-cert", "PEM certificate for TLS on the client and route ports")
	t.String(&cfg.TLSKey, "tls-key", "PEM private key of --tls-cert")
	t.String(&cfg.TLSCA, "tls-ca", "PEM CA that verifies the other nodes' route certificates")
	lf.register(root)
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
