package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"flag"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/liveroom/liveroom/internal/auth"
	"github.com/liveroom/liveroom/internal/bus"
	"github.com/liveroom/liveroom/internal/gateway"
	"github.com/liveroom/liveroom/internal/protocol"
	"github.com/liveroom/liveroom/internal/testutil"
)

// writeEdKeys writes an Ed25519 key pair as PEM files and returns their paths.
func writeEdKeys(t *testing.T) (priv, pub string) {
	t.Helper()
	pk, sk, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	der, _ := x509.MarshalPKCS8PrivateKey(sk)
	priv = filepath.Join(dir, "key.pem")
	if err := os.WriteFile(priv, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	der, _ = x509.MarshalPKIXPublicKey(pk)
	pub = filepath.Join(dir, "pub.pem")
	if err := os.WriteFile(pub, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	return priv, pub
}

// TestTokenPrivateKeyAndPublicKeyFlags: `liveroom token --private-key`
// mints an EdDSA token that a verifier built from --jwt-public-key,
// --jwt-issuer and --jwt-audience accepts, and a token without the issuer is
// refused.
func TestTokenPrivateKeyAndPublicKeyFlags(t *testing.T) {
	unsetEnv(t, envSecret)
	priv, pub := writeEdKeys(t)
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	var jf jwtFlags
	var ev envs
	jf.register(newFlagTable(fs, &ev), "secret")
	if err := fs.Parse([]string{"--jwt-public-key", pub, "--jwt-issuer", "https://platform.example", "--jwt-audience", "liveroom", "--jwt-leeway", "5s"}); err != nil {
		t.Fatal(err)
	}
	c, err := jf.config()
	if err != nil {
		t.Fatal(err)
	}
	if len(c.HS256Secret) != 0 || !hasKeys(c) || c.Leeway != 5*time.Second {
		t.Fatalf("config %+v", c)
	}
	v, err := auth.New(c)
	if err != nil {
		t.Fatal(err)
	}
	mint := func(args ...string) string {
		var out, errOut bytes.Buffer
		if err := runToken(context.Background(), append([]string{"--private-key", priv, "--user", "bob", "--role", "anchor"}, args...), &out, &errOut); err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(out.String())
	}
	id, err := v.Verify(mint("--issuer", "https://platform.example", "--audience", "liveroom"))
	if err != nil || id.User != "bob" || id.Role != "anchor" {
		t.Fatalf("%+v, %v", id, err)
	}
	if _, err := v.Verify(mint("--audience", "liveroom")); err == nil {
		t.Fatal("token without iss accepted")
	}
}

func TestJWTFlagsConfigErrors(t *testing.T) {
	unsetEnv(t, envSecret)
	t.Setenv(envPublicKeyPEM, "")
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"leeway too long", []string{"--jwt-secret", "0123456789abcdef0", "--jwt-leeway", "1h"}, "--jwt-leeway"},
		{"missing key file", []string{"--jwt-public-key", "/nonexistent/pub.pem"}, "--jwt-public-key"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fs := flag.NewFlagSet("x", flag.ContinueOnError)
			var jf jwtFlags
			jf.register(newFlagTable(fs, &envs{}), "secret")
			if err := fs.Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			if _, err := jf.config(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to mention %s", err, tc.want)
			}
		})
	}
	// Neither secret nor key: a role refuses to start.
	var rf roleFlags
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	rf.register(newFlagTable(fs, &envs{}), ":0")
	if _, err := rf.verifier(); err == nil || !strings.Contains(err.Error(), "public key") {
		t.Fatalf("verifier without keys: %v", err)
	}
	// Public keys as PEM text in the environment (serve --autoscale's children).
	_, pub := writeEdKeys(t)
	b, _ := os.ReadFile(pub)
	t.Setenv(envPublicKeyPEM, string(b))
	if _, err := rf.verifier(); err != nil {
		t.Fatalf("verifier from %s: %v", envPublicKeyPEM, err)
	}
}

// TestEdgeFlags: the edge flags fill the gateway config and are repeated to
// serve --autoscale's gateway processes.
func TestEdgeFlags(t *testing.T) {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	c := gateway.DefaultConfig()
	gatewayFlags(newFlagTable(fs, &envs{}), &c)
	args := []string{"--allowed-origins", "https://a.example, https://*.b.example", "--max-conns-per-ip", "7", "--handshake-rate", "3", "--header-timeout", "2s",
		"--max-conns-per-user", "4", "--trusted-proxies", "10.0.0.0/8, 127.0.0.1"}
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(c.AllowedOrigins, []string{"https://a.example", "https://*.b.example"}) || c.MaxConnsPerIP != 7 ||
		c.HandshakeRate != 3 || c.MaxConnsPerUser != 4 || !slices.Equal(c.TrustedProxies, []string{"10.0.0.0/8", "127.0.0.1"}) || c.HeaderTimeout != 2*time.Second || c.HandshakeBurst != gateway.DefaultHandshakeBurst {
		t.Fatalf("config %+v", c)
	}
	child := childGatewayArgs(fs)
	if !slices.Contains(child, "--allowed-origins=https://a.example,https://*.b.example") || !slices.Contains(child, "--max-conns-per-ip=7") ||
		!slices.Contains(child, "--trusted-proxies=10.0.0.0/8,127.0.0.1") || !slices.Contains(child, "--max-conns-per-user=4") {
		t.Fatalf("child args %v", child)
	}
}

// TestDispatchAdminAddr: with --admin-addr the admin API answers only on
// that address (and still wants a token), not on the public --addr.
func TestDispatchAdminAddr(t *testing.T) {
	e := testutil.StartNATS(t)
	t.Setenv(envSecret, testutil.Secret)
	port, adminPort := testutil.FreePort(t), testutil.FreePort(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"dispatch", "--nats-url", testutil.NATSURL(t, e, bus.RoleDispatch, ""), "--addr", testutil.Addr(port),
			"--admin-addr", testutil.Addr(adminPort)}, io.Discard, io.Discard)
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	status := func(base string) int {
		resp, err := http.Post(base+"/v1/admin/gateways/g1/drain", "application/json", nil)
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	testutil.WaitHTTP(t, "http://"+testutil.Addr(port)+"/healthz", 20*time.Second)
	testutil.Eventually(t, 10*time.Second, "admin address answers", func() bool { return status("http://"+testutil.Addr(adminPort)) == http.StatusUnauthorized })
	if s := status("http://" + testutil.Addr(port)); s != http.StatusNotFound {
		t.Fatalf("admin API on the public address: %d, want 404", s)
	}
}

// TestEmptyOrBlankSecretRefused: a secret that is given but empty or blank
// never means dev mode, from the flag or the environment, for serve and the
// roles alike; a weak one is refused by the verifier.
func TestEmptyOrBlankSecretRefused(t *testing.T) {
	unsetEnv(t, envPublicKeyPEM)
	config := func(args ...string) error {
		fs := flag.NewFlagSet("x", flag.ContinueOnError)
		var jf jwtFlags
		jf.register(newFlagTable(fs, &envs{}), "secret")
		if err := fs.Parse(args); err != nil {
			t.Fatal(err)
		}
		c, err := jf.config()
		if err == nil && hasKeys(c) {
			_, err = auth.New(c)
		}
		return err
	}
	for _, tc := range []struct {
		name, env string
		setEnv    bool
		args      []string
		want      string
	}{
		{"empty variable", "", true, nil, "$LIVEROOM_JWT_SECRET is set but empty"},
		{"blank variable", "                ", true, nil, "$LIVEROOM_JWT_SECRET is set but empty"},
		{"empty flag", "", false, []string{"--jwt-secret", ""}, "--jwt-secret is set but empty"},
		{"blank flag", "", false, []string{"--jwt-secret=   \t   "}, "--jwt-secret is set but empty"},
		{"repeated character", "", false, []string{"--jwt-secret", strings.Repeat("a", 32)}, "repeats one character"},
		{"short", "", false, []string{"--jwt-secret", "0123456789"}, "at least 16 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			unsetEnv(t, envSecret)
			if tc.setEnv {
				t.Setenv(envSecret, tc.env)
			}
			if err := config(tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
	// An empty variable stops serve before anything starts.
	t.Setenv(envSecret, "")
	var out, errOut bytes.Buffer
	err := run(context.Background(), []string{"serve", "--data-dir", t.TempDir(), "--nats-port", "-1"}, &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "set but empty") {
		t.Fatalf("serve with an empty secret: %v", err)
	}
	// Unset: no keys, which serve takes as dev mode.
	unsetEnv(t, envSecret)
	if err := config(); err != nil {
		t.Fatalf("no secret at all: %v", err)
	}
}

// TestDispatchOperatorViews: GET /v1/gateways and /metrics, operator views,
// are refused to strangers on the public address: with the secret, admin
// tokens only; without it (dispatch needs none), 403 internal_only; with
// --internal-addr they are served there, without a token, and not on --addr.
func TestDispatchOperatorViews(t *testing.T) {
	e := testutil.StartNATS(t)
	start := func(t *testing.T, args ...string) (public string) {
		port := testutil.FreePort(t)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			done <- run(ctx, append([]string{"dispatch", "--nats-url", testutil.NATSURL(t, e, bus.RoleDispatch, ""), "--addr", testutil.Addr(port)}, args...), io.Discard, io.Discard)
		}()
		t.Cleanup(func() {
			cancel()
			if err := <-done; err != nil {
				t.Error(err)
			}
		})
		public = "http://" + testutil.Addr(port)
		testutil.WaitHTTP(t, public+"/healthz", 20*time.Second)
		return public
	}
	viewer, admin := testutil.Token(t, "v", protocol.RoleViewer), testutil.Token(t, "ops", protocol.RoleAdmin)
	get := func(url, token string) (int, string) {
		resp, err := testutil.AuthGet(url, token)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body struct {
			Error protocol.ErrorBody `json:"error"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&body)
		return resp.StatusCode, body.Error.Code
	}
	t.Run("secret", func(t *testing.T) {
		t.Setenv(envSecret, testutil.Secret)
		public := start(t)
		for _, path := range []string{"/v1/gateways", "/metrics"} {
			for _, c := range []struct {
				who, token string
				status     int
			}{{"no token", "", 401}, {"viewer", viewer, 403}, {"admin", admin, 200}} {
				if st, code := get(public+path, c.token); st != c.status {
					t.Errorf("%s %s: %d %s, want %d", path, c.who, st, code, c.status)
				}
			}
			if st, _ := get(public+path+"?token="+admin, ""); st != 401 {
				t.Errorf("%s with ?token=: %d, want 401 (tokens in URLs only on the upgrade)", path, st)
			}
		}
	})
	t.Run("no secret", func(t *testing.T) {
		t.Setenv(envSecret, "")
		public := start(t)
		for _, path := range []string{"/v1/gateways", "/metrics"} {
			if st, code := get(public+path, admin); st != 403 || code != protocol.CodeInternalOnly {
				t.Errorf("%s: %d %s, want 403 %s", path, st, code, protocol.CodeInternalOnly)
			}
		}
	})
	t.Run("internal address", func(t *testing.T) {
		t.Setenv(envSecret, testutil.Secret)
		internal := testutil.Addr(testutil.FreePort(t))
		public := start(t, "--internal-addr", internal)
		testutil.WaitHTTP(t, "http://"+internal+"/v1/gateways", 20*time.Second)
		for _, path := range []string{"/v1/gateways", "/metrics"} {
			if st, _ := get("http://"+internal+path, ""); st != 200 {
				t.Errorf("%s on the internal address: %d", path, st)
			}
			if st, _ := get(public+path, admin); st != 404 {
				t.Errorf("%s on the public address with --internal-addr: %d, want 404", path, st)
			}
		}
		if st, _ := get("http://"+internal+"/v1/dispatch?room=a", ""); st != 404 {
			t.Errorf("dispatch on the internal address: %d, want 404 (operator views only)", st)
		}
	})
}
