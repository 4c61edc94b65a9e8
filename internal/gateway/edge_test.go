package gateway

import (
	"net/netip"
	"testing"
	"time"
)

func TestOriginAllowed(t *testing.T) {
	rules, err := parseOrigins([]string{"https://live.example.com", "http://localhost:8080", "https://*.fans.example"})
	if err != nil {
		t.Fatal(err)
	}
	e := &edge{origins: rules}
	cases := []struct {
		origin string
		ok     bool
	}{
		{"", true}, // not a browser
		{"https://live.example.com", true},
		{"HTTPS://LIVE.EXAMPLE.COM", true},
		{"http://live.example.com", false},       // other scheme
		{"https://live.example.com:8443", false}, // other port
		{"https://live.example.com.evil.example", false},
		{"https://evillive.example.com", false},
		{"http://localhost:8080", true},
		{"http://localhost", false},
		{"https://a.fans.example", true},
		{"https://a.b.fans.example", true},
		{"https://fans.example", false}, // the wildcard is for subdomains only
		{"https://evilfans.example", false},
		{"null", false},
		{"https://live.example.com/path", false},
		{"not a url", false},
	}
	for _, tc := range cases {
		if got := e.originAllowed(tc.origin); got != tc.ok {
			t.Errorf("originAllowed(%q) = %v, want %v", tc.origin, got, tc.ok)
		}
	}
	if all, err := parseOrigins([]string{"*"}); err != nil || len(all) != 0 {
		t.Fatalf(`"*": %v, %v`, all, err)
	}
	for _, bad := range []string{"live.example.com", "ftp://x.example", "https://x.example/path", "https://a.*.example", "https://*.", "https://user@x.example"} {
		if _, err := parseOrigins([]string{bad}); err == nil {
			t.Errorf("parseOrigins(%q) accepted", bad)
		}
	}
}

// TestEdgeAddressTable: slots are counted and given back, loopback is exempt
// unless asked, and idle addresses are forgotten so the table stays bounded.
func TestEdgeAddressTable(t *testing.T) {
	cfg := Config{MaxConnsPerIP: 2, HandshakeRate: 1000, HandshakeBurst: 1000}
	e, err := newEdge(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	a := netip.MustParseAddr("192.0.2.1")
	for i := range 2 {
		if perr := e.admit(a, now); perr != nil {
			t.Fatalf("connection %d: %v", i, perr)
		}
	}
	if perr := e.admit(a, now); perr == nil || perr.Body.Code != CodeTooManyConnections {
		t.Fatalf("third connection: %v", perr)
	}
	e.release(a)
	if perr := e.admit(a, now); perr != nil {
		t.Fatalf("after a release: %v", perr)
	}
	lo := netip.MustParseAddr("127.0.0.1")
	for range 10 {
		if perr := e.admit(lo, now); perr != nil {
			t.Fatalf("loopback limited without LimitLoopback: %v", perr)
		}
	}
	// Many one-off addresses: forgotten once idle, while a holder stays.
	for i := range 1000 {
		ip := netip.AddrFrom4([4]byte{198, 51, byte(i >> 8), byte(i)})
		if perr := e.admit(ip, now); perr != nil {
			t.Fatal(perr)
		}
		e.release(ip)
	}
	later := now.Add(idleAfter + sweepInterval + time.Second)
	if perr := e.admit(netip.MustParseAddr("203.0.113.9"), later); perr != nil {
		t.Fatal(perr)
	}
	if n := e.tracked(); n != 2 {
		t.Fatalf("%d addresses tracked after the sweep, want 2 (the holder and the newcomer)", n)
	}
	if perr := e.admit(a, later); perr == nil {
		t.Fatal("the holder's count was lost in the sweep")
	}
	// Handshake rate: the burst, then refusals with a retry hint.
	cfg = Config{MaxConnsPerIP: -1, HandshakeRate: 2, HandshakeBurst: 3, LimitLoopback: true}
	e, _ = newEdge(&cfg)
	for i := range 3 {
		if perr := e.admit(lo, now); perr != nil {
			t.Fatalf("handshake %d: %v", i, perr)
		}
	}
	perr := e.admit(lo, now)
	if perr == nil || perr.Body.Code != CodeHandshakeRateLimited || perr.Body.RetryAfterMS < 1000 {
		t.Fatalf("over the burst: %+v", perr)
	}
	if perr := e.admit(lo, now.Add(time.Second)); perr != nil {
		t.Fatalf("after a refill: %v", perr)
	}
}
