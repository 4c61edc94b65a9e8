package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/nats-io/nats.go"

	"github.com/liveroom/liveroom/internal/bus"
)

// natsAuthFlags say how a process authenticates to NATS (internal/bus
// auth.go): with the NATS key file it mints its own role's credential; or
// it is given a user and password (minted by `liveroom creds user`); or the
// --nats-url carries them (nats://user:password@host:4222).
type natsAuthFlags struct {
	keyFile  string
	user     string
	password secretValue
	ca       string
}

func (f *natsAuthFlags) register(t flagTable) {
	t.String(&f.keyFile, "nats-key-file", "NATS key file: mint this process's own NATS credential from it (see liveroom creds)")
	t.String(&f.user, "nats-user", "NATS user of this process's credential, e.g. uplink or gateway.gw-1 (see liveroom creds user)")
	t.fs.Var(&f.password, "nats-password", "password of --nats-user; prefer $"+bus.EnvNATSPassword+", flags show in ps")
	t.String(&f.ca, "nats-ca", "PEM file of the CA that signed NATS's TLS certificate")
}

// options returns the nats options that authenticate a process of role
// (and gateway id). With nothing given it returns none: the URL may carry
// the credential, or the server may run without authentication.
func (f *natsAuthFlags) options(role bus.Role, id string) ([]nats.Option, error) {
	var opts []nats.Option
	if f.ca != "" {
		opts = append(opts, nats.RootCAs(f.ca))
	}
	pass, set := f.password.v, f.password.set
	if !set {
		pass, set = os.LookupEnv(bus.EnvNATSPassword)
	}
	switch {
	case f.keyFile != "" && f.user != "":
		return nil, errors.New("give either --nats-key-file or --nats-user, not both")
	case f.keyFile != "":
		keys, err := bus.LoadKeys(f.keyFile)
		if err != nil {
			return nil, err
		}
		c, err := keys.Credential(role, id)
		if err != nil {
			return nil, err
		}
		return append(opts, c.Option()), nil
	case f.user != "":
		if !set || pass == "" {
			return nil, fmt.Errorf("--nats-user %s: give its password in $%s (or --nats-password)", f.user, bus.EnvNATSPassword)
		}
		return append(opts, nats.UserInfo(f.user, pass)), nil
	case set && pass != "":
		return nil, fmt.Errorf("$%s is set without a user: give --nats-user (or $%s) too", bus.EnvNATSPassword, bus.EnvNATSUser)
	}
	return opts, nil
}
