package main

import (
	"errors"
	"fmt"

	"github.com/liveroom/liveroom/internal/bus"
	"github.com/liveroom/liveroom/internal/lockfile"
)

// withFix adds to a start failure that the user can fix the flag that
// fixes it: a NATS port another process holds (portFlag for the client
// port, clusterFlag for the cluster port), or a data directory or archive
// another process has open (dirFlag).
func withFix(err error, portFlag, clusterFlag, dirFlag string) error {
	var le *bus.ListenError
	var held *lockfile.HeldError
	switch {
	case errors.As(err, &le) && le.Taken() && le.Listener == "cluster":
		return fmt.Errorf("%w; stop that process, or choose another port with %s N (and name it in the other nodes' --routes)", err, clusterFlag)
	case errors.As(err, &le) && le.Taken():
		return fmt.Errorf("%w; stop that process, or choose another port with %s N (%s -1: any free port)", err, portFlag, portFlag)
	case errors.As(err, &held):
		return fmt.Errorf("%w; stop that process first, or give this one its own %s", err, dirFlag)
	}
	return err
}
