package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/liveroom/liveroom/client"
	"github.com/liveroom/liveroom/internal/auth"
	"github.com/liveroom/liveroom/internal/cliflag"
	"github.com/liveroom/liveroom/internal/protocol"
)

// Environment variables read by token, tail and send when the matching flag
// is not given. The secret is never a flag default, so -help cannot print it.
const (
	envSecret = "LIVEROOM_JWT_SECRET"
	envToken  = "LIVEROOM_TOKEN"
	envURL    = "LIVEROOM_URL"
)

const defaultBaseURL = "http://127.0.0.1:8080"

// runToken implements `liveroom token`: it mints an HS256 JWT and prints it.
func runToken(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	secret := fs.String("secret", "", "HS256 signing secret, at least 16 bytes (default $"+envSecret+")")
	user := fs.String("user", "", "user id, the token's sub: 1-64 of [A-Za-z0-9_-] (required)")
	name := fs.String("name", "", "display name (default: the user id)")
	role := fs.String("role", protocol.RoleViewer, "role: viewer, anchor or admin")
	ttl := fs.Duration("ttl", 24*time.Hour, "validity of the token")
	privateKey := fs.String("private-key", "", "sign with this PEM private key instead of a secret: RSA signs RS256, Ed25519 signs EdDSA")
	issuer := fs.String("issuer", "", "iss claim (for servers started with --jwt-issuer)")
	audience := fs.String("audience", "", "aud claim (for servers started with --jwt-audience)")
	rooms := fs.String("rooms", "", "with --role anchor: the rooms this anchor owns, comma separated (the rooms claim); an anchor token without it owns no room")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: liveroom token --user ID [--name NAME] [--role viewer|anchor|admin] [--rooms R1,R2] [--ttl 24h] [--secret S | --private-key FILE] [--issuer I] [--audience A]")
		fmt.Fprintln(fs.Output(), "\nMints a JWT for the platform secret (HS256) or private key (RS256, EdDSA) and prints it.")
		fs.PrintDefaults()
	}
	if stop, err := parseFlags(fs, args); stop {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("token: unexpected argument %q", fs.Arg(0))
	}
	if *ttl <= 0 {
		return errors.New("token: --ttl must be positive")
	}
	var signer *auth.Signer
	if *privateKey != "" {
		b, err := os.ReadFile(*privateKey)
		if err != nil {
			return fmt.Errorf("token: cannot read --private-key: %w", err)
		}
		if signer, err = auth.NewKeySigner(b); err != nil {
			return fmt.Errorf("token: %w", err)
		}
	} else {
		if *secret == "" {
			*secret = os.Getenv(envSecret)
		}
		if *secret == "" {
			return fmt.Errorf("token: a secret is required (--secret or $%s, or --private-key)", envSecret)
		}
		var err error
		if signer, err = auth.NewSigner([]byte(*secret)); err != nil {
			return fmt.Errorf("token: %w", err)
		}
	}
	var owned []protocol.Room
	for _, r := range splitList(*rooms) {
		room, err := protocol.ParseRoom(r)
		if err != nil {
			return fmt.Errorf("token: --rooms %q: %w", r, err)
		}
		owned = append(owned, room)
	}
	if len(owned) > 0 && *role != protocol.RoleAnchor {
		return errors.New("token: --rooms is for --role anchor")
	}
	signer = signer.WithRooms(owned...)
	tok, err := mintWith(signer.WithIssuer(*issuer).WithAudience(*audience), *user, *name, *role, *ttl)
	if err != nil {
		return fmt.Errorf("token: %w", err)
	}
	_, err = fmt.Fprintln(stdout, tok)
	return err
}

// parseFlags parses args into fs. It reports stop when the command must not
// go on: after -help (usage printed, err nil) or on a bad flag (err set: one
// short line, with the closest flag for a mistyped one; see cliflag).
func parseFlags(fs *flag.FlagSet, args []string) (stop bool, err error) {
	err = cliflag.Parse(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		return true, nil
	}
	return err != nil, err
}

func mintToken(secret, user, name, role string, ttl time.Duration, rooms ...protocol.Room) (string, error) {
	s, err := auth.NewSigner([]byte(secret))
	if err != nil {
		return "", err
	}
	return mintWith(s.WithRooms(rooms...), user, name, role, ttl)
}

func mintWith(s *auth.Signer, user, name, role string, ttl time.Duration) (string, error) {
	u, err := protocol.ParseUser(user)
	if err != nil {
		return "", fmt.Errorf("--user: %w", err)
	}
	if name == "" {
		name = user
	}
	return s.Mint(u, name, role, ttl)
}

// authFlags are the ways tail, send and live get a token: --token, else a
// token minted with --secret for --user, else one asked from a dev-mode
// server. After resolve, dev says whether the token came from the dev token
// endpoint (a dev-mode server restarted since signs with a new secret, so
// such a token can be renewed; see renew). rooms, for an anchor, are the
// rooms a minted or dev token owns (live sets it to its --room).
type authFlags struct {
	token, secret, user, name, role string
	rooms                           []protocol.Room
	dev                             bool
}

// toolFlags are the flags of the tools that talk to a running liveroom
// (tail, send, live): where it is, which room, and as whom.
type toolFlags struct {
	url, room string
	authFlags
}

func (t *toolFlags) register(fs *flag.FlagSet, defaultRole string) {
	fs.StringVar(&t.url, "url", "", "liveroom base URL (default $"+envURL+" or "+defaultBaseURL+")")
	fs.StringVar(&t.room, "room", "", "room id (required)")
	t.authFlags.register(fs, defaultRole)
}

// base is the base URL to use (see toolBaseURL).
func (t *toolFlags) base() string { return toolBaseURL(t.url) }

// setUsage sets fs's usage: text, then the flags.
func setUsage(fs *flag.FlagSet, text string) {
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), text)
		fs.PrintDefaults()
	}
}

func (a *authFlags) register(fs *flag.FlagSet, defaultRole string) {
	fs.StringVar(&a.token, "token", "", "JWT to use (default $"+envToken+")")
	fs.StringVar(&a.secret, "secret", "", "mint a token with this HS256 secret instead (default $"+envSecret+")")
	fs.StringVar(&a.user, "user", "", "user id for a minted or dev token (default: a random cli-… id)")
	fs.StringVar(&a.name, "name", "", "display name for a minted or dev token")
	fs.StringVar(&a.role, "role", defaultRole, "role for a minted or dev token")
}

// resolve returns the token to use against baseURL. With neither a token
// nor a secret it asks the dev token endpoint, which only a server running
// without a secret offers.
func (a *authFlags) resolve(ctx context.Context, baseURL string) (string, error) {
	if a.token == "" {
		a.token = os.Getenv(envToken)
	}
	if a.token != "" {
		return a.token, nil
	}
	if a.user == "" {
		a.user = "cli-" + randomHex(4)
	}
	if a.secret == "" {
		a.secret = os.Getenv(envSecret)
	}
	if a.secret != "" {
		return mintToken(a.secret, a.user, a.name, a.role, 24*time.Hour, a.rooms...)
	}
	return a.renew(ctx, baseURL)
}

// renew asks the dev token endpoint of baseURL for a token of the same
// user, name and role.
func (a *authFlags) renew(ctx context.Context, baseURL string) (string, error) {
	rooms := make([]string, len(a.rooms))
	for i, r := range a.rooms {
		rooms[i] = string(r)
	}
	tok, err := client.DevToken(ctx, baseURL, a.user, a.name, a.role, rooms...)
	var ae *client.APIError
	switch {
	case err == nil:
		a.dev = true
		return tok, nil
	case !errors.As(err, &ae):
		return "", reachErr(baseURL, err)
	case ae.Body.Code == protocol.CodeDevOnly:
		return "", fmt.Errorf("%s runs with a JWT secret, so it has no dev tokens: give --token (or $%s), or --secret (or $%s) to mint one", baseURL, envToken, envSecret)
	case ae.Status == http.StatusNotFound:
		return "", fmt.Errorf("%s offers no dev tokens (it is not a dev-mode liveroom serve): give --token (or $%s), or --secret (or $%s) to mint one", baseURL, envToken, envSecret)
	}
	return "", fmt.Errorf("no --token or --secret given, and %s refused a dev token: %w", baseURL, err)
}

// reachErr explains an error that means nothing answered at baseURL (the
// connection was refused, the name did not resolve, the dial timed out):
// where it looked, and how to start a server or point at one. Other errors,
// HTTP answers included, are returned as they are.
func reachErr(baseURL string, err error) error {
	var ae *client.APIError
	var op *net.OpError
	var dns *net.DNSError
	if errors.As(err, &ae) || !(errors.As(err, &op) || errors.As(err, &dns)) {
		return err
	}
	cause := err
	switch {
	case op != nil:
		cause = op
	case dns != nil:
		cause = dns
	}
	hint := "start one with liveroom serve (go run ./cmd/liveroom serve in the source tree)"
	if baseURL != defaultBaseURL {
		hint = "is it running? Start it (liveroom serve)"
	}
	return fmt.Errorf("cannot reach liveroom at %s (%v): %s, or point at a running one with --url URL or $%s", baseURL, cause, hint, envURL)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// toolBaseURL returns the --url value, else $LIVEROOM_URL, else the default,
// without a trailing slash.
func toolBaseURL(flagValue string) string {
	u := flagValue
	if u == "" {
		u = os.Getenv(envURL)
	}
	if u == "" {
		u = defaultBaseURL
	}
	return strings.TrimRight(u, "/")
}
