package gateway

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/liveroom/liveroom/internal/protocol"
	"github.com/liveroom/liveroom/internal/testutil"
)

// TestUserConnectionCap: with the default cap, one user's 21st connection
// to a gateway is refused before the upgrade (429
// too_many_user_connections) while another user still gets in; every way a
// connection or a handshake ends gives its slot back: a handshake refused
// after the token (bad version), a client that closes, a server-side close.
func TestUserConnectionCap(t *testing.T) {
	e := newEnv(t)
	g := e.gateway(func(c *Config) { c.MaxConnsPerIP = -1; c.HandshakeRate = -1 })
	tok := testutil.Token(t, "mallory", protocol.RoleViewer)
	// Handshakes that fail after the user's slot was taken give it back.
	for i := range DefaultMaxConnsPerUser + 5 {
		status, code := rawHandshake(t, g, "room=cap"+strconv.Itoa(i)+"&token="+tok, "Sec-WebSocket-Version: 8")
		if status != http.StatusUpgradeRequired {
			t.Fatalf("bad version: %d %q", status, code)
		}
	}
	var held []*viewer
	for i := range DefaultMaxConnsPerUser {
		v, err := g.tryDial("cap"+strconv.Itoa(i), tok, "")
		if err != nil {
			t.Fatalf("connection %d of the cap: %v", i+1, err)
		}
		v.welcome(t)
		held = append(held, v)
	}
	h := g.handshake(t, "127.0.0.1", "room=cap-more&token="+tok, nil)
	if h.status != http.StatusTooManyRequests || h.code != CodeTooManyUserConnections || h.header.Get("Retry-After") == "" {
		t.Fatalf("21st connection of one user: %d %q (Retry-After %q), want 429 %s", h.status, h.code, h.header.Get("Retry-After"), CodeTooManyUserConnections)
	}
	other := g.dial(t, "cap-more", "someone-else", "")
	other.welcome(t)
	other.close()

	// The client closes one: a slot is free again once the gateway noticed.
	held[0].close()
	testutil.Eventually(t, 10*time.Second, "the closed connection's slot is given back", func() bool {
		return g.edge.userConns("mallory") == DefaultMaxConnsPerUser-1
	})
	v, err := g.tryDial("cap-more", tok, "")
	if err != nil {
		t.Fatalf("after a close: %v", err)
	}
	v.welcome(t)
	held[0] = v
	// The gateway closes them all (a kick of the user in every room would
	// do the same): every slot comes back.
	for _, c := range g.hub.allConns(nil) {
		c.closeWith(protocol.CodeKicked, "test")
	}
	testutil.Eventually(t, 10*time.Second, "server-side closes give every slot back", func() bool {
		return g.edge.userConns("mallory") == 0
	})
	for _, v := range held {
		v.close()
	}
}

// TestForwardedAddressOnlyFromTrustedProxies: a trusted proxy's
// X-Forwarded-For decides which address the per-address limit counts; from
// any other peer the header changes nothing, so a client cannot spread its
// connections over made-up addresses. Both handshake paths: the gateway's
// own and net/http's.
func TestForwardedAddressOnlyFromTrustedProxies(t *testing.T) {
	for _, viaHTTP := range []bool{false, true} {
		t.Run(fmt.Sprintf("viaHTTP=%v", viaHTTP), func(t *testing.T) { testForwarded(t, viaHTTP) })
	}
}

func testForwarded(t *testing.T, viaHTTP bool) {
	e := newEnv(t)
	e.viaHTTP = viaHTTP
	g := e.gateway(func(c *Config) {
		c.TrustedProxies = []string{"127.0.0.1"}
		c.MaxConnsPerIP = 1
	})
	tok := func(u string) string { return testutil.Token(t, u, protocol.RoleViewer) }
	xff := func(v string) map[string]string { return map[string]string{"X-Forwarded-For": v} }
	var open []rawHS
	try := func(from, user string, hdr map[string]string) rawHS {
		h := g.handshake(t, from, "room=xff&token="+tok(user), hdr)
		if h.conn != nil {
			open = append(open, h)
		}
		return h
	}
	defer func() {
		for _, h := range open {
			_ = h.conn.Close()
		}
	}()
	for _, c := range []struct {
		name, from, user string
		hdr              map[string]string
		status           int
	}{
		{"a client behind the proxy", "127.0.0.1", "u1", xff("203.0.113.5"), 101},
		{"the same client again: over its limit", "127.0.0.1", "u2", xff("203.0.113.5"), 429},
		{"another client behind the same proxy", "127.0.0.1", "u3", xff("203.0.113.6"), 101},
		{"a hop the client wrote left of the proxy's is not read", "127.0.0.1", "u4", xff("198.51.100.1, 203.0.113.5"), 429},
		{"an untrusted peer is counted itself", "127.0.0.2", "u5", xff("203.0.113.7"), 101},
		{"and cannot escape its limit with the header", "127.0.0.2", "u6", xff("203.0.113.8"), 429},
		{"the trusted proxy without a header is counted itself", "127.0.0.1", "u7", nil, 101},
		{"loopback is not exempt", "127.0.0.1", "u8", nil, 429},
	} {
		h := try(c.from, c.user, c.hdr)
		if h.status != c.status || (c.status == 429 && h.code != CodeTooManyConnections) {
			t.Errorf("%s: %d %q, want %d", c.name, h.status, h.code, c.status)
		}
	}
}

// TestDuplicateOriginRefused: a handshake with two Origin headers is
// refused, whether the first or the second is the allowed one, on the
// gateway's own handshake path and on net/http's.
func TestDuplicateOriginRefused(t *testing.T) {
	for _, viaHTTP := range []bool{false, true} {
		t.Run(fmt.Sprintf("viaHTTP=%v", viaHTTP), func(t *testing.T) {
			e := newEnv(t)
			e.viaHTTP = viaHTTP
			g := e.gateway(func(c *Config) { c.AllowedOrigins = []string{"https://live.example.com"} })
			tok := testutil.Token(t, "alice", protocol.RoleViewer)
			for _, origins := range [][]string{
				{"https://live.example.com", "https://evil.example"},
				{"https://evil.example", "https://live.example.com"},
				{"https://live.example.com", "https://live.example.com"},
			} {
				status, code := rawHandshake(t, g, "room=o&token="+tok, "Sec-WebSocket-Version: 13", "Origin: "+origins[0], "Origin: "+origins[1])
				if status != http.StatusBadRequest || code != CodeDuplicateOrigin {
					t.Errorf("Origin %v: %d %q, want 400 %s", origins, status, code, CodeDuplicateOrigin)
				}
			}
			if status, _ := rawHandshake(t, g, "room=o&token="+tok, "Sec-WebSocket-Version: 13", "Origin: https://live.example.com"); status != http.StatusSwitchingProtocols {
				t.Fatalf("one allowed Origin: %d", status)
			}
		})
	}
}

// rawHandshake sends a handshake with the given header lines, in order,
// after the Host, Upgrade, Connection and key lines, and returns the
// answer's status and error code.
func rawHandshake(t *testing.T, g *gw, query string, lines ...string) (int, string) {
	t.Helper()
	addr := g.http.Listener.Addr().String()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	head := fmt.Sprintf("GET /v1/ws?%s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", query, addr)
	for _, l := range lines {
		head += l + "\r\n"
	}
	if _, err := io.WriteString(c, head+"\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusSwitchingProtocols {
		return resp.StatusCode, ""
	}
	var body struct {
		Error protocol.ErrorBody `json:"error"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, body.Error.Code
}
