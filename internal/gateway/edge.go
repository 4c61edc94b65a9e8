package gateway

import (
	"fmt"
	"log"
	"log/slog"
	"math"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/liveroom/liveroom/internal/protocol"
)

// The edge: checks a WebSocket handshake passes before anything costly (token
// verification, the upgrade, a room join) is done for it. In order: the
// browser Origin against an allow-list, the handshake rate of the client
// address, and the number of connections the client address holds; after the
// token, the number of connections its user holds. The client address is the
// TCP peer, or, when the peer is a trusted proxy, the rightmost untrusted hop
// of X-Forwarded-For. See docs/SECURITY.md for the threat model.

// Error codes of the edge checks (HTTP answers to GET /v1/ws).
const (
	// CodeOriginNotAllowed (403): the handshake came from a web page whose
	// Origin is not in Config.AllowedOrigins.
	CodeOriginNotAllowed = protocol.CodeOriginNotAllowed
	// CodeTooManyConnections (429): the peer address already holds
	// Config.MaxConnsPerIP connections to this gateway.
	CodeTooManyConnections = protocol.CodeTooManyConnections
	// CodeHandshakeRateLimited (429): the peer address opened handshakes
	// faster than Config.HandshakeRate allows.
	CodeHandshakeRateLimited = protocol.CodeHandshakeRateLimited
	// CodeTooManyUserConnections (429): the token's user already holds
	// Config.MaxConnsPerUser connections to this gateway.
	CodeTooManyUserConnections = protocol.CodeTooManyUserConnections
	// CodeDuplicateOrigin (400): the handshake carried two Origin headers.
	CodeDuplicateOrigin = protocol.CodeDuplicateOrigin
)

// Defaults of the edge settings of Config.
const (
	DefaultMaxConnsPerIP = 1000
	// DefaultMaxConnsPerUser bounds one user's connections to one gateway:
	// a person watches a few rooms on a few devices, never 21 at once.
	DefaultMaxConnsPerUser = 20
	DefaultHandshakeRate   = 200
	DefaultHandshakeBurst  = 400
	DefaultHeaderTimeout   = 10 * time.Second
	// DefaultMaxHeaderBytes bounds a handshake's request line and headers;
	// a token is well under 4 KiB.
	DefaultMaxHeaderBytes = 32 << 10
	// maxTrackedIPs bounds the per-address table. When it is full of
	// addresses that hold connections or handshook in the last idleAfter, a
	// handshake from a new address is refused with 503 (dispatch offers
	// another gateway) rather than let the table grow.
	maxTrackedIPs = 1 << 16
	// idleAfter is how long an address without connections stays tracked
	// after its last handshake: by then its limiter has refilled at any
	// rate above burst/10 per second, so forgetting it loses nothing.
	idleAfter     = 10 * time.Second
	sweepInterval = 5 * time.Second
)

// ipState is what the gateway tracks of one peer address.
type ipState struct {
	conns int
	lim   *rate.Limiter
	last  time.Time
}

type edge struct {
	origins []originRule // empty: every origin
	perIP   int          // < 0: unlimited
	rate    rate.Limit   // < 0 (rate.Inf): unlimited
	burst   int
	perUser int            // < 0: unlimited
	proxies []netip.Prefix // trusted proxies: their X-Forwarded-For is read

	mu        sync.Mutex
	ips       map[netip.Addr]*ipState
	lastSweep time.Time
	// users counts each user's connections (and handshakes past the token);
	// a user with none has no entry, so the map is bounded by connections.
	users map[protocol.User]int
}

// originRule is one AllowedOrigins entry: scheme://host[:port], where host
// may start with "*." to allow every subdomain (not the domain itself).
type originRule struct {
	scheme, host, port string
	wildcard           bool // host is the suffix after "*"
}

func parseOrigins(list []string) ([]originRule, error) {
	var out []originRule
	for _, o := range list {
		if o == "*" {
			return nil, nil
		}
		u, err := url.Parse(strings.ToLower(strings.TrimSpace(o)))
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
			return nil, fmt.Errorf("cannot use allowed origin %q: want scheme://host[:port], e.g. https://live.example.com or https://*.example.com", o)
		}
		r := originRule{scheme: u.Scheme, host: u.Hostname(), port: u.Port()}
		if h, ok := strings.CutPrefix(r.host, "*."); ok {
			if h == "" || strings.Contains(h, "*") {
				return nil, fmt.Errorf("cannot use allowed origin %q: a wildcard is only *.domain", o)
			}
			r.wildcard, r.host = true, "."+h
		} else if strings.Contains(r.host, "*") {
			return nil, fmt.Errorf("cannot use allowed origin %q: a wildcard is only *.domain", o)
		}
		out = append(out, r)
	}
	return out, nil
}

// originAllowed reports whether a handshake with this Origin header value may
// proceed. No Origin at all is a client that is not a browser (the Go client,
// the load generator, a native app): browsers always send one on WebSocket
// handshakes, and the allow-list exists to stop other sites' pages from
// riding a viewer's browser; it cannot stop a non-browser, which could send
// any Origin anyway.
func (e *edge) originAllowed(origin string) bool {
	if len(e.origins) == 0 || origin == "" {
		return true
	}
	u, err := url.Parse(strings.ToLower(origin))
	if err != nil || u.Host == "" || u.Path != "" {
		return false // includes "null", sent by sandboxed pages and file:
	}
	host, port := u.Hostname(), u.Port()
	for _, r := range e.origins {
		if r.scheme != u.Scheme || r.port != port {
			continue
		}
		if r.wildcard {
			if strings.HasSuffix(host, r.host) && len(host) > len(r.host) {
				return true
			}
		} else if host == r.host {
			return true
		}
	}
	return false
}

func newEdge(cfg *Config) (*edge, error) {
	origins, err := parseOrigins(cfg.AllowedOrigins)
	if err != nil {
		return nil, fmt.Errorf("cannot create gateway: %w", err)
	}
	proxies, err := ParseTrustedProxies(cfg.TrustedProxies)
	if err != nil {
		return nil, fmt.Errorf("cannot create gateway: %w", err)
	}
	e := &edge{origins: origins, perIP: cfg.MaxConnsPerIP, burst: cfg.HandshakeBurst, perUser: cfg.MaxConnsPerUser,
		proxies: proxies, ips: make(map[netip.Addr]*ipState), users: make(map[protocol.User]int)}
	e.rate = rate.Limit(cfg.HandshakeRate)
	if cfg.HandshakeRate < 0 {
		e.rate = rate.Inf
	}
	return e, nil
}

// peerAddr is the TCP peer of a request served through net/http.
func peerAddr(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// ParseTrustedProxies parses a trusted-proxy list: CIDR prefixes
// (10.0.0.0/8, fd00::/8) or single addresses (192.0.2.7).
func ParseTrustedProxies(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range list {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("cannot use trusted proxy %q: want an address or a CIDR prefix such as 10.0.0.0/8", s)
		}
		a = a.Unmap()
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

func (e *edge) trusted(a netip.Addr) bool {
	for _, p := range e.proxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// clientAddr is the address the per-address limits count. It is the TCP
// peer, unless the peer is a trusted proxy: then it is the rightmost hop of
// X-Forwarded-For (every value, comma-joined, in xff) that is not a trusted
// proxy itself. Hops to the left of that one are the client's to write and
// are never read. A hop that does not parse ends the walk on the last
// trusted address: a proxy that writes garbage has its clients counted
// together, never apart. Any client may send X-Forwarded-For; from a peer
// that is not a trusted proxy it is ignored.
func (e *edge) clientAddr(peer netip.Addr, xff string) netip.Addr {
	if xff == "" || !peer.IsValid() || !e.trusted(peer) {
		return peer
	}
	addr := peer
	for xff != "" {
		var hop string
		if i := strings.LastIndexByte(xff, ','); i >= 0 {
			hop, xff = xff[i+1:], xff[:i]
		} else {
			hop, xff = xff, ""
		}
		a, err := netip.ParseAddr(strings.TrimSpace(hop))
		if err != nil {
			return addr
		}
		addr = a.Unmap()
		if !e.trusted(addr) {
			return addr
		}
	}
	return addr // every hop is a trusted proxy: the leftmost
}

// exempt reports whether handshakes from ip are neither limited nor
// counted: an address that is not valid (not a TCP peer), or every address
// when no limit is set. Loopback is not exempt: a proxy on the same host is
// named in Config.TrustedProxies instead. admit and release must agree on
// it, or a slot taken would never be given back.
func (e *edge) exempt(ip netip.Addr) bool {
	return !ip.IsValid() || (e.perIP < 0 && e.rate == rate.Inf)
}

// admit runs the per-address checks for a handshake from ip. On success
// the handshake holds one of ip's connection slots until release(ip).
func (e *edge) admit(ip netip.Addr, now time.Time) *protocol.Error {
	if e.exempt(ip) {
		return nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	st := e.ips[ip]
	if st == nil {
		if len(e.ips) >= maxTrackedIPs || now.Sub(e.lastSweep) > sweepInterval {
			e.sweepLocked(now)
		}
		if len(e.ips) >= maxTrackedIPs {
			return protocol.Errorf(http.StatusServiceUnavailable, protocol.CodeUnavailable, "",
				"gateway is busy with too many addresses; ask dispatch for another").WithRetry(1000)
		}
		st = &ipState{lim: rate.NewLimiter(e.rate, e.burst)}
		e.ips[ip] = st
	}
	st.last = now
	if !st.lim.AllowN(now, 1) {
		wait := time.Second
		if e.rate > 0 {
			wait = time.Duration(math.Ceil(float64(time.Second) / float64(e.rate)))
		}
		return protocol.Errorf(http.StatusTooManyRequests, CodeHandshakeRateLimited, "",
			fmt.Sprintf("too many connection attempts from your address (at most %g per second); retry later", float64(e.rate))).
			WithRetry(max(1000, wait.Milliseconds()))
	}
	if e.perIP >= 0 && st.conns >= e.perIP {
		return protocol.Errorf(http.StatusTooManyRequests, CodeTooManyConnections, "",
			fmt.Sprintf("your address holds %d connections to this gateway, the most allowed; close one first", e.perIP)).WithRetry(5000)
	}
	st.conns++
	return nil
}

// release gives back a connection slot taken by admit.
func (e *edge) release(ip netip.Addr) {
	if e.exempt(ip) {
		return
	}
	e.mu.Lock()
	if st := e.ips[ip]; st != nil && st.conns > 0 {
		st.conns--
	}
	e.mu.Unlock()
}

// admitUser takes one of user's connection slots, or refuses the handshake
// when the user holds Config.MaxConnsPerUser already. The count is this
// gateway's: a user may hold that many on each gateway of a fleet.
func (e *edge) admitUser(user protocol.User) *protocol.Error {
	if e.perUser < 0 || user == "" {
		return nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.users[user] >= e.perUser {
		return protocol.Errorf(http.StatusTooManyRequests, CodeTooManyUserConnections, "",
			fmt.Sprintf("you hold %d connections to this gateway, the most one user may; close one first", e.perUser)).WithRetry(5000)
	}
	e.users[user]++
	return nil
}

// releaseUser gives back a slot taken by admitUser.
func (e *edge) releaseUser(user protocol.User) {
	if e.perUser < 0 || user == "" {
		return
	}
	e.mu.Lock()
	if n := e.users[user]; n <= 1 {
		delete(e.users, user)
	} else {
		e.users[user] = n - 1
	}
	e.mu.Unlock()
}

// userConns is how many slots user holds (tests).
func (e *edge) userConns(user protocol.User) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.users[user]
}

// sweepLocked forgets addresses that hold no connection and were idle for
// idleAfter. Called on a new address at most every sweepInterval (or when
// the table is full), so its cost is bounded by the rate of new addresses.
func (e *edge) sweepLocked(now time.Time) {
	e.lastSweep = now
	for ip, st := range e.ips {
		if st.conns == 0 && now.Sub(st.last) >= idleAfter {
			delete(e.ips, ip)
		}
	}
}

// tracked is the number of addresses in the table (tests).
func (e *edge) tracked() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.ips)
}

// ConfigureHTTP applies the gateway's handshake limits to the HTTP server
// that serves Handler: ReadHeaderTimeout (slow handshakes, "slowloris"),
// MaxHeaderBytes, and an ErrorLog at debug level. A server without it still
// works, with net/http's defaults (no header timeout at all). Call before
// the server starts.
func (s *Server) ConfigureHTTP(hs *http.Server) {
	hs.ReadHeaderTimeout = s.cfg.HeaderTimeout
	hs.MaxHeaderBytes = s.cfg.MaxHeaderBytes
	if hs.ErrorLog == nil {
		hs.ErrorLog = httpErrorLog(s.log)
	}
}

// httpErrorLog is the ErrorLog of an HTTP server: net/http writes only
// connection-level trouble there (TLS handshakes, panics, hijack errors),
// never request URLs, so tokens in ?token= cannot reach it.
func httpErrorLog(l *slog.Logger) *log.Logger {
	return slog.NewLogLogger(l.Handler(), slog.LevelDebug)
}
