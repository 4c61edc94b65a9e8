package main

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/liveroom/liveroom/internal/auth"
	"github.com/liveroom/liveroom/internal/gateway"
)

// jwtFlags say how a process verifies tokens; shared by the roles and serve.
// The secret is never a flag default, so -help cannot print it.
type jwtFlags struct {
	secret    secretValue
	publicKey string // file
	issuer    string
	audience  string
	leeway    time.Duration
}

// envPublicKeyPEM carries public keys as PEM text rather than a file: serve
// --autoscale hands its keys to its gateway processes this way. Public keys
// are not secret.
const envPublicKeyPEM = "LIVEROOM_JWT_PUBLIC_KEY_PEM"

func (j *jwtFlags) register(t flagTable, secretUsage string) {
	t.fs.Var(&j.secret, "jwt-secret", secretUsage)
	t.String(&j.publicKey, "jwt-public-key", "PEM file of one or more public keys that verify tokens: RSA keys verify RS256, Ed25519 keys EdDSA")
	t.String(&j.issuer, "jwt-issuer", "when set, tokens must carry this iss claim")
	t.String(&j.audience, "jwt-audience", "when set, tokens must carry this aud claim")
	j.leeway = auth.DefaultLeeway
	t.Duration(&j.leeway, "jwt-leeway", "clock skew allowed on exp and nbf, at most "+auth.MaxLeeway.String())
}

// config builds the verifier configuration. With neither a secret nor a
// public key it returns an empty key set (serve: dev mode; roles: an error).
func (j *jwtFlags) config() (auth.Config, error) {
	secret, err := j.secret.get()
	if err != nil {
		return auth.Config{}, err
	}
	c := auth.Config{HS256Secret: []byte(secret), Issuer: j.issuer, Audience: j.audience, Leeway: j.leeway}
	if j.leeway == 0 {
		c.Leeway = -1 // --jwt-leeway 0 means none; auth reads 0 as the default
	}
	if j.leeway > auth.MaxLeeway || j.leeway < 0 {
		return c, fmt.Errorf("--jwt-leeway %v: want 0 to %v", j.leeway, auth.MaxLeeway)
	}
	if j.publicKey != "" {
		b, err := os.ReadFile(j.publicKey)
		if err != nil {
			return c, fmt.Errorf("cannot read --jwt-public-key: %w", err)
		}
		c.PublicKeysPEM = b
	} else if p := os.Getenv(envPublicKeyPEM); p != "" {
		c.PublicKeysPEM = []byte(p)
	}
	if len(c.HS256Secret) == 0 {
		c.HS256Secret = nil
	}
	return c, nil
}

// secretValue is the --jwt-secret flag. It remembers whether it was given,
// so that an explicitly empty secret is an error rather than "no secret".
type secretValue struct {
	v   string
	set bool
}

func (s *secretValue) String() string { return "" } // never printed, not even by -help
func (s *secretValue) Set(v string) error {
	s.v, s.set = v, true
	return nil
}

// get returns the flag's secret, or $LIVEROOM_JWT_SECRET when the flag was
// not given; "" when neither is set. A secret that is set but empty or only
// white space is an error: an empty variable left by a deployment template
// must never silently mean dev mode (which hands out admin tokens).
func (s *secretValue) get() (string, error) {
	v, set, from := s.v, s.set, "--jwt-secret"
	if !set {
		v, set = os.LookupEnv(envSecret)
		from = "$" + envSecret
	}
	if set && strings.TrimSpace(v) == "" {
		return "", fmt.Errorf("%s is set but empty: give a real secret (at least %d random bytes, e.g. openssl rand -hex 32), or unset it to run serve in dev mode on loopback", from, auth.MinSecretLen)
	}
	return v, nil
}

// hasKeys reports whether c can verify anything.
func hasKeys(c auth.Config) bool { return len(c.HS256Secret) > 0 || len(c.PublicKeysPEM) > 0 }

// edgeFlags are the gateway's handshake limits (see internal/gateway/edge.go
// and docs/SECURITY.md); part of gatewayFlags, so serve --autoscale passes
// them to its gateway processes.
func edgeFlags(t flagTable, c *gateway.Config) {
	t.Var((*listValue)(&c.AllowedOrigins), "allowed-origins",
		"comma-separated web origins whose pages may connect, e.g. https://live.example.com,https://*.example.com; empty: any")
	t.Int(&c.MaxConnsPerIP, "max-conns-per-ip", "connections one peer address may hold on a gateway; -1 = unlimited")
	t.Float(&c.HandshakeRate, "handshake-rate", "WebSocket handshakes per second one peer address may start; -1 = unlimited")
	t.Int(&c.HandshakeBurst, "handshake-burst", "burst of handshakes one peer address may start at once")
	t.Int(&c.MaxConnsPerUser, "max-conns-per-user", "connections one user (the token's sub) may hold on a gateway, counted per gateway process; -1 = unlimited")
	t.Var((*listValue)(&c.TrustedProxies), "trusted-proxies",
		"comma-separated proxy addresses or CIDR prefixes, e.g. 10.0.0.0/8,127.0.0.1; from them the per-address limits count the rightmost untrusted X-Forwarded-For hop; empty: the TCP peer, loopback included")
	t.Duration(&c.HeaderTimeout, "header-timeout", "longest a client may take to send its handshake headers")
}

// listValue is a comma-separated flag; String gives it back the same way, so
// serve --autoscale can repeat it to its gateway processes.
type listValue []string

func (l *listValue) String() string { return strings.Join(*l, ",") }

func (l *listValue) Set(s string) error {
	*l = splitList(s)
	return nil
}
