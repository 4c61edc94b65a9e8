// Command liveroom runs the roles of the liveroom system: `serve` runs all of
// them in one process around an embedded NATS server; `gateway`, `uplink` and
// `dispatch` run one role each against an external NATS; `token`, `tail` and
// `send` are tools. See README.md.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "liveroom:", err)
		os.Exit(1)
	}
}

type command struct {
	name, help string
	run        func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

var commands = []command{
	{"serve", "run every role in one process around an embedded NATS server", runServe},
	{"gateway", "run a gateway (viewers' WebSockets) against --nats-url", runGateway},
	{"uplink", "run an uplink (the send API) against --nats-url", runUplink},
	{"dispatch", "run dispatch (which gateway a client should use) against --nats-url", runDispatch},
	{"drain", "ask a gateway to drain its viewers gently and exit", runDrain},
	{"nats", "run the embedded NATS server (JetStream, cluster flags) as its own process", runNATS},
	{"creds", "make a NATS key and mint the roles' NATS credentials", runCreds},
	{"token", "mint a JWT for a user", runToken},
	{"tail", "print a room's traffic", runTail},
	{"send", "send a danmaku, gift or like to a room", runSend},
	{"bench", "load generator: viewers through dispatch, senders, gateway CPU and memory, bare-write floor", runBench},
	{"archive", "run the archive (replay) and webhooks: the non-core consumers, against --nats-url", runArchive},
	{"autoscale", "decide the gateway count from load beats and act on it (dry-run, local processes or Kubernetes)", runAutoscale},
}

var errUsage = errors.New("usage: liveroom <command> [flags]; try liveroom help")

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		usage(stderr)
		return errUsage
	}
	name := args[0]
	if name == "help" || name == "-h" || name == "--help" || name == "-help" {
		usage(stdout)
		return nil
	}
	for _, c := range commands {
		if c.name == name {
			return c.run(ctx, args[1:], stdout, stderr)
		}
	}
	usage(stderr)
	return fmt.Errorf("unknown command %q", name)
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "liveroom: real-time interaction for live-streaming rooms\n\nusage: liveroom <command> [flags]\n\ncommands:")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-9s %s\n", c.name, c.help)
	}
	fmt.Fprintln(w, "\nRun liveroom <command> -h for its flags.")
}
