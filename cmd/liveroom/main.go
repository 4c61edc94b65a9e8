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
		var rep reportedError
		if !errors.As(err, &rep) {
			fmt.Fprintln(os.Stderr, "liveroom:", err)
		}
		os.Exit(1)
	}
}

// reportedError is an error the command has already shown the user (send
// prints a refusal as its JSON answer): main exits non-zero without
// printing it a second time.
type reportedError struct{ error }

func (e reportedError) Unwrap() error { return e.error }

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
	{"live", "start, stop and list a room's live sessions (and their replays)", runLive},
	{"bench", "load generator: viewers through dispatch, senders, gateway CPU and memory, bare-write floor", runBench},
	{"archive", "run the archive (replay) and webhooks: the non-core consumers, against --nats-url", runArchive},
	{"autoscale", "decide the gateway count from load beats and act on it (dry-run, local processes or Kubernetes)", runAutoscale},
	{"version", "print the version of this binary", runVersion},
}

var errUsage = errors.New("usage: liveroom <command> [flags]; try liveroom help")

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		usage(stderr)
		return errUsage
	}
	name := args[0]
	switch name {
	case "help", "-h", "--help", "-help":
		if name == "help" && len(args) > 1 {
			return help(ctx, args[1:], stdout, stderr)
		}
		usage(stdout)
		return nil
	case "--version", "-version", "-v":
		return runVersion(ctx, nil, stdout, stderr)
	}
	if c, ok := lookup(name); ok {
		return c.run(ctx, args[1:], stdout, stderr)
	}
	usage(stderr)
	return unknownCommand(name)
}

// help implements `liveroom help COMMAND`: the command's own help, on
// stdout.
func help(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 1 {
		return fmt.Errorf("help: want one command, got %q", args)
	}
	c, ok := lookup(args[0])
	if !ok {
		usage(stderr)
		return unknownCommand(args[0])
	}
	return c.run(ctx, []string{"-h"}, stdout, stdout)
}

func lookup(name string) (command, bool) {
	for _, c := range commands {
		if c.name == name {
			return c, true
		}
	}
	return command{}, false
}

func unknownCommand(name string) error {
	return fmt.Errorf("unknown command %q (liveroom help lists the commands)", name)
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "liveroom: real-time interaction for live-streaming rooms\n\nusage: liveroom <command> [flags]\n\ncommands:")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-9s %s\n", c.name, c.help)
	}
	fmt.Fprintln(w, "\nRun liveroom help <command> (or liveroom <command> -h) for its flags.")
}
