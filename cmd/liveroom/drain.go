package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/liveroom/liveroom/internal/bus"
)

// runDrain implements `liveroom drain --gateway ID`: it asks one gateway,
// over NATS, to drain (and then exit), and optionally waits until it is gone.
func runDrain(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("drain", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var ev envs
	t := newFlagTable(fs, &ev)
	natsURL := "nats://127.0.0.1:4222"
	t.String(&natsURL, "nats-url", "NATS server(s)")
	id := fs.String("gateway", "", "id of the gateway to drain (see GET /v1/gateways) (required)")
	wait := fs.Bool("wait", false, "wait until the gateway has stopped beating")
	timeout := fs.Duration("timeout", 5*time.Minute, "with --wait: give up after this long")
	reqTimeout := fs.Duration("request-timeout", 15*time.Second, "how long to keep trying to reach the gateway with the drain order (across NATS nodes)")
	var naf natsAuthFlags
	naf.register(t)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), `usage: liveroom drain --gateway ID [--wait] [--nats-url URL]

Asks a gateway to drain: it reports "draining" so dispatch sends it nobody,
refuses new WebSockets, asks its viewers to reconnect elsewhere spread over its
drain window, closes the stragglers at a paced rate, then exits.

flags:`)
		fs.PrintDefaults()
	}
	if stop, err := parseAll(fs, args, &ev); stop {
		return err
	}
	if !bus.ValidGatewayID(*id) {
		return errors.New("--gateway: want a gateway id of 1-64 characters A-Z a-z 0-9 _ -")
	}
	log, err := newLogger(stderr, "error", "text")
	if err != nil {
		return err
	}
	opts, err := naf.options(bus.RoleControl, "")
	if err != nil {
		return err
	}
	nc, err := bus.Connect(natsURL, "liveroom-drain", log, opts...)
	if err != nil {
		return err
	}
	defer nc.Close()
	rctx, rcancel := context.WithTimeout(ctx, *reqTimeout)
	reply, err := bus.SendControl(rctx, nc, *id, bus.CmdDrain)
	rcancel()
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "gateway %s is %s with %d connections\n", reply.Gateway, reply.State, reply.Conns)
	if !*wait {
		return nil
	}
	wctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	for {
		select {
		case <-wctx.Done():
			return fmt.Errorf("gateway %s still running: %w", *id, wctx.Err())
		case <-time.After(time.Second):
		}
		sctx, scancel := context.WithTimeout(wctx, 5*time.Second)
		r, err := bus.SendControl(sctx, nc, *id, bus.CmdStatus)
		scancel()
		switch {
		case err == nil:
			fmt.Fprintf(stdout, "gateway %s: %s, %d connections\n", r.Gateway, r.State, r.Conns)
		case errors.Is(err, bus.ErrGone):
			fmt.Fprintf(stdout, "gateway %s is gone\n", *id)
			return nil
		case wctx.Err() != nil:
			return fmt.Errorf("gateway %s still running: %w", *id, wctx.Err())
		default:
			// No answer yet: the gateway or its NATS node is slow or
			// failing over; it has not exited as far as anyone knows.
			fmt.Fprintf(stdout, "gateway %s: no answer yet (%v); still waiting\n", *id, err)
		}
	}
}
