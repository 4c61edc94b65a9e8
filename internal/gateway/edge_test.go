package gateway

import (
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/liveroom/liveroom/internal/protocol"
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

// TestEdgeAddressTable: slots are counted and given back, loopback is
// counted like any address, and idle addresses are forgotten so the table
// stays bounded.
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
	for range 2 {
		if perr := e.admit(lo, now); perr != nil {
			t.Fatal(perr)
		}
	}
	if perr := e.admit(lo, now); perr == nil || perr.Body.Code != CodeTooManyConnections {
		t.Fatalf("loopback is not exempt: a third connection from 127.0.0.1 got %v", perr)
	}
	e.release(lo)
	e.release(lo)
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
	cfg = Config{MaxConnsPerIP: -1, HandshakeRate: 2, HandshakeBurst: 3}
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

// TestEdgeClientAddr: X-Forwarded-For is read only from a trusted proxy, and
// then its rightmost hop that is not a trusted proxy is the client.
func TestEdgeClientAddr(t *testing.T) {
	cfg := Config{TrustedProxies: []string{"10.0.0.0/8", "127.0.0.1", "2001:db8::1"}}
	e, err := newEdge(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, peer, xff, want string
	}{
		{"untrusted peer: header ignored", "192.0.2.1", "203.0.113.5", "192.0.2.1"},
		{"loopback peer not in the list when 127.0.0.2", "127.0.0.2", "203.0.113.5", "127.0.0.2"},
		{"trusted peer without header", "127.0.0.1", "", "127.0.0.1"},
		{"trusted peer: the hop it appended", "127.0.0.1", "203.0.113.5", "203.0.113.5"},
		{"client-written hops on the left are never read", "127.0.0.1", "198.51.100.1, 203.0.113.5", "203.0.113.5"},
		{"a chain of trusted proxies is skipped", "10.1.2.3", "203.0.113.5, 10.9.9.9,127.0.0.1", "203.0.113.5"},
		{"all hops trusted: the leftmost", "10.1.2.3", "10.0.0.7, 10.0.0.8", "10.0.0.7"},
		{"garbage ends the walk on the last trusted address", "127.0.0.1", "203.0.113.5, not-an-ip", "127.0.0.1"},
		{"garbage behind a trusted hop", "127.0.0.1", "not-an-ip, 10.0.0.8", "10.0.0.8"},
		{"IPv6 proxy and client", "2001:db8::1", "2001:db8::beef", "2001:db8::beef"},
		{"IPv4-mapped client", "127.0.0.1", "::ffff:203.0.113.9", "203.0.113.9"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := e.clientAddr(netip.MustParseAddr(c.peer), c.xff); got != netip.MustParseAddr(c.want) {
				t.Fatalf("clientAddr(%s, %q) = %s, want %s", c.peer, c.xff, got, c.want)
			}
		})
	}
	if _, err := ParseTrustedProxies([]string{"10.0.0.0/33"}); err == nil {
		t.Fatal("a bad prefix was accepted")
	}
	if _, err := ParseTrustedProxies([]string{"proxy.example"}); err == nil {
		t.Fatal("a host name was accepted")
	}
}

// TestEdgeUserSlots: a user's slots are counted, refused at the cap, given
// back, and forgotten at zero; another user is not affected.
func TestEdgeUserSlots(t *testing.T) {
	cfg := Config{MaxConnsPerUser: 2}
	e, err := newEdge(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if perr := e.admitUser("alice"); perr != nil {
			t.Fatal(perr)
		}
	}
	if perr := e.admitUser("alice"); perr == nil || perr.Body.Code != CodeTooManyUserConnections || perr.Status != 429 {
		t.Fatalf("third slot of alice: %+v", perr)
	}
	if perr := e.admitUser("bob"); perr != nil {
		t.Fatalf("bob is refused for alice's connections: %v", perr)
	}
	e.releaseUser("alice")
	e.releaseUser("alice")
	e.releaseUser("bob")
	if len(e.users) != 0 {
		t.Fatalf("users left in the table: %v", e.users)
	}
	cfg = Config{MaxConnsPerUser: -1}
	e, _ = newEdge(&cfg)
	for range 100 {
		if perr := e.admitUser("alice"); perr != nil {
			t.Fatal(perr)
		}
	}
	if len(e.users) != 0 {
		t.Fatal("an unlimited edge counts users")
	}
}

// BenchmarkEdgeAdmit is what the edge costs one handshake from a client
// behind a trusted proxy: the forwarded address, the address's and the
// user's slots, and giving both back.
func BenchmarkEdgeAdmit(b *testing.B) {
	cfg := Config{MaxConnsPerIP: 1000, HandshakeRate: 1e9, HandshakeBurst: 1e9, MaxConnsPerUser: 20, TrustedProxies: []string{"10.0.0.0/8"}}
	e, err := newEdge(&cfg)
	if err != nil {
		b.Fatal(err)
	}
	peer := netip.MustParseAddr("10.1.2.3")
	users := make([]protocol.User, 4096)
	for i := range users {
		users[i] = protocol.User("u" + strconv.Itoa(i))
	}
	xff := make([]string, 200)
	for i := range xff {
		xff[i] = "198.51.100.1, 203.0.113." + strconv.Itoa(i)
	}
	now := time.Now()
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		ip := e.clientAddr(peer, xff[i%len(xff)])
		if perr := e.admit(ip, now); perr != nil {
			b.Fatal(perr)
		}
		if perr := e.admitUser(users[i%len(users)]); perr != nil {
			b.Fatal(perr)
		}
		e.release(ip)
		e.releaseUser(users[i%len(users)])
	}
}
