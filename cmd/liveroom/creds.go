package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/liveroom/liveroom/internal/bus"
)

// runCreds implements `liveroom creds`: NATS keys and the credentials of
// the roles (internal/bus auth.go).
func runCreds(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	usage := func(w io.Writer) {
		fmt.Fprintln(w, `usage: liveroom creds new-key
       liveroom creds user --key-file FILE --role ROLE [--id GATEWAY-ID] [--format env|url|user]

Every connection to liveroom's NATS authenticates; its user name is its role,
and the role decides what it may publish and subscribe to (docs/SECURITY.md).
A credential's password is an HMAC of the NATS key, so whoever holds the key
file can mint every role's credential: keep it with the NATS servers and the
operator, and give each process only its own credential.

  new-key   print a new random key: liveroom creds new-key > nats.key
            (chmod 600; the NATS servers take it with --key-file; a second
            line adds a key for rotation, the first line mints)
  user      print the credential of a role: all, gateway, uplink, dispatch,
            archive, autoscale, control (liveroom drain), monitor (liveroom
            bench). A gateway credential with --id may publish only that
            gateway's beat; without, any gateway's.

examples:
  liveroom creds new-key > nats.key
  liveroom creds user --key-file nats.key --role uplink > uplink.env   # LIVEROOM_NATS_USER=… LIVEROOM_NATS_PASSWORD=…
  liveroom creds user --key-file nats.key --role gateway --id gw-1 --format url`)
	}
	if len(args) == 0 {
		usage(stderr)
		return errors.New("creds: want new-key or user")
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		usage(stdout)
		return nil
	case "new-key":
		if len(args) > 1 {
			return fmt.Errorf("creds new-key: unexpected argument %q", args[1])
		}
		fmt.Fprintln(stdout, bus.NewKey())
		return nil
	case "user":
		return runCredsUser(args[1:], stdout, stderr)
	}
	usage(stderr)
	return fmt.Errorf("creds: unknown subcommand %q; want new-key or user", args[0])
}

func runCredsUser(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("creds user", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var keyFile string
	newFlagTable(fs, &envs{}).prefixed("NATS_").String(&keyFile, "key-file", "NATS key file (required)")
	role := fs.String("role", "", "role of the credential (required)")
	id := fs.String("id", "", "gateway id the credential is bound to (gateway role only)")
	format := fs.String("format", "env", "env (LIVEROOM_NATS_USER=… LIVEROOM_NATS_PASSWORD=… lines), url (nats://user:password@127.0.0.1:4222) or user (user and password on one line)")
	host := fs.String("host", "127.0.0.1:4222", "NATS host:port of --format url")
	if stop, err := parseFlags(fs, args); stop {
		return err
	}
	if keyFile == "" || *role == "" {
		return errors.New("creds user: --key-file and --role are required")
	}
	keys, err := bus.LoadKeys(keyFile)
	if err != nil {
		return err
	}
	c, err := keys.Credential(bus.Role(*role), *id)
	if err != nil {
		return fmt.Errorf("creds user: %w", err)
	}
	switch *format {
	case "env":
		fmt.Fprintln(stdout, strings.Join(c.Env(), "\n"))
	case "url":
		fmt.Fprintf(stdout, "nats://%s:%s@%s\n", c.User, c.Password, strings.TrimPrefix(*host, "nats://"))
	case "user":
		fmt.Fprintf(stdout, "%s %s\n", c.User, c.Password)
	default:
		return fmt.Errorf("creds user: --format %q: want env, url or user", *format)
	}
	return nil
}
