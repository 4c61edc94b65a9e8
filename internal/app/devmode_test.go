package app

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/liveroom/liveroom/internal/auth"
	"github.com/liveroom/liveroom/internal/protocol"
	"github.com/liveroom/liveroom/internal/testutil"
)

// TestDevModeBindsLoopback: without a secret a node listens on loopback by
// default and refuses any other address unless DevOnNetwork; with a secret
// the default binds every interface.
func TestDevModeBindsLoopback(t *testing.T) {
	for _, tc := range []struct {
		addr, want string
		dev        bool
	}{
		{"", DevAddr, true},
		{"", DefaultAddr, false},
		{"127.0.0.1:0", "127.0.0.1:0", true},
		{"localhost:0", "localhost:0", true},
		{"[::1]:0", "[::1]:0", true},
	} {
		n := &Node{cfg: Config{Addr: tc.addr}, dev: tc.dev}
		if err := n.checkBind(); err != nil || n.cfg.Addr != tc.want {
			t.Errorf("dev %v, addr %q: got %q, %v; want %q", tc.dev, tc.addr, n.cfg.Addr, err, tc.want)
		}
	}
	for _, addr := range []string{":0", "0.0.0.0:0", "[::]:0", "192.0.2.2:0", "example.com:80"} {
		n, err := New(Config{Addr: addr, DataDir: t.TempDir(), NATSPort: -1, Logger: testutil.Logger()})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err = n.Start(ctx)
		cancel()
		if err == nil || !strings.Contains(err.Error(), "--insecure-dev-mode-on-network") {
			t.Errorf("dev mode on %s: %v, want a refusal naming the flag", addr, err)
		}
		if n.emb != nil {
			t.Errorf("dev mode on %s: NATS was started before the refusal", addr)
		}
	}
}

// TestDevTokenLocalOnly: the dev token endpoint answers loopback callers
// only; with DevOnNetwork others get viewer and anchor tokens but never an
// admin one, and a request relayed by a proxy is never local.
func TestDevTokenLocalOnly(t *testing.T) {
	signer, err := auth.NewSigner([]byte(testutil.Secret))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		onNetwork bool
		remote    string
		header    string
		role      string
		want      int
	}{
		{"local admin", false, "127.0.0.1:5000", "", "admin", 200},
		{"local ipv6 viewer", false, "[::1]:5000", "", "viewer", 200},
		{"remote viewer", false, "192.0.2.9:5000", "", "viewer", 403},
		{"remote admin", false, "192.0.2.9:5000", "", "admin", 403},
		{"proxied admin", false, "127.0.0.1:5000", "X-Forwarded-For", "admin", 403},
		{"forwarded viewer", false, "127.0.0.1:5000", "Forwarded", "viewer", 403},
		{"on network: remote viewer", true, "192.0.2.9:5000", "", "viewer", 200},
		{"on network: remote anchor", true, "192.0.2.9:5000", "", "anchor", 200},
		{"on network: remote admin", true, "192.0.2.9:5000", "", "admin", 403},
		{"on network: proxied admin", true, "127.0.0.1:5000", "X-Real-IP", "admin", 403},
		{"on network: local admin", true, "127.0.0.1:5000", "", "admin", 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, DevTokenPath, strings.NewReader(`{"user":"u1","role":"`+tc.role+`"}`))
			r.RemoteAddr = tc.remote
			if tc.header != "" {
				r.Header.Set(tc.header, "203.0.113.7")
			}
			w := httptest.NewRecorder()
			DevTokenHandler(signer, tc.onNetwork).ServeHTTP(w, r)
			if w.Code != tc.want {
				t.Fatalf("status %d, want %d: %s", w.Code, tc.want, w.Body)
			}
			if tc.want == 403 && !strings.Contains(w.Body.String(), protocol.CodeDevLocalOnly) {
				t.Fatalf("body %s, want code %s", w.Body, protocol.CodeDevLocalOnly)
			}
		})
	}
}

// TestDevTokenFromAnotherHost: a real node in dev mode on the network,
// asked over a real TCP connection from a non-loopback address of this
// machine, refuses an admin token and grants a viewer one.
func TestDevTokenFromAnotherHost(t *testing.T) {
	ip := nonLoopbackIP(t)
	n := startNodeWith(t, func(c *Config) {
		c.JWTSecret, c.Addr, c.DevOnNetwork = "", net.JoinHostPort(ip.String(), "0"), true
	})
	if !n.Dev() {
		t.Fatal("node without a secret is not in dev mode")
	}
	for role, want := range map[string]int{"admin": 403, "viewer": 200} {
		resp, err := http.Post(n.URL()+DevTokenPath, "application/json", strings.NewReader(`{"user":"u1","role":"`+role+`"}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("%s token from %s: %d, want %d", role, ip, resp.StatusCode, want)
		}
	}
}

// nonLoopbackIP returns an IPv4 address of this machine that is not
// loopback, so that a connection to it has a non-loopback peer address.
func nonLoopbackIP(t *testing.T) net.IP {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && !ipn.IP.IsLoopback() && ipn.IP.To4() != nil {
			return ipn.IP
		}
	}
	t.Skip("this machine has no non-loopback IPv4 address; TestDevTokenLocalOnly covers the rule")
	return nil
}
