package main

import (
	"context"
	"flag"
	"fmt"
	"io"

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
	lf.register(fs)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: liveroom nats [flags]\n\nA three-node cluster: start three with --cluster lr, distinct --name, --port,\n--cluster-port and --data-dir, each with --routes listing all three cluster ports.\n\nflags:")
		fs.PrintDefaults()
	}
	if stop, err := parseAll(fs, args, &ev); stop {
		return err
	}
	log, err := newLogger(stderr, lf.level, lf.format)
	if err != nil {
		return err
	}
	cfg.Logger = log
	cfg.Routes = splitList(routes)
	e, err := bus.StartEmbedded(cfg)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "nats listening on %s\n", e.ClientURL())
	<-ctx.Done()
	e.Close()
	return nil
}
