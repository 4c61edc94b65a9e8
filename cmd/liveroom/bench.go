package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/liveroom/liveroom/internal/bench"
)

// runBench implements `liveroom bench` (see internal/bench): the load
// generator, its `capacity` and `flash` modes, and the hidden child modes it re-executes
// itself in (--child holds viewers, --floor-server is the bare-write floor).
func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		switch args[0] {
		case "--child", "-child":
			return bench.RunChild(ctx, os.Stdin, stdout)
		case "--floor-server", "-floor-server":
			return bench.RunFloorServer(ctx, os.Stdin, stdout)
		case "capacity":
			return benchErr("bench capacity", bench.RunCapacity(ctx, args[1:], stdout, stderr))
		case "flash":
			return benchErr("bench flash", bench.RunFlash(ctx, args[1:], stdout, stderr))
		}
	}
	s, err := bench.ParseScenario(args, stderr)
	if err != nil {
		return benchErr("bench", err)
	}
	rep, err := bench.Run(ctx, s, bench.Env{Progress: stderr, Stderr: stderr})
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	if s.JSON {
		return rep.WriteJSON(stdout)
	}
	return rep.WriteTable(stdout)
}

// benchErr prefixes err with what failed; -h (flag.ErrHelp) is no error.
func benchErr(what string, err error) error {
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return nil
	}
	return fmt.Errorf("%s: %w", what, err)
}
