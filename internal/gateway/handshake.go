package gateway

import (
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/liveroom/liveroom/internal/auth"
	"github.com/liveroom/liveroom/internal/bus"
	"github.com/liveroom/liveroom/internal/netfd"
	"github.com/liveroom/liveroom/internal/protocol"
)

// The WebSocket handshake, read and answered by the gateway itself.
//
// net/http gives every request a 4 KiB bufio reader and a 4 KiB writer, and
// a hijacked connection's are never pooled again (the hijack adds a third):
// about 12 KiB of garbage per upgrade, which `serve`'s GC target of 400
// (set for its send path) leaves in the heap of the process holding the
// connections. Server.Listener therefore sits in front of the HTTP server
// on the shared address: it reads the first bytes of each new connection; a
// GET /v1/ws is handshaken here, with a pooled buffer returned as soon as
// the request head is parsed; anything else goes on to net/http with the
// bytes already read. Handler still serves /v1/ws through net/http (a
// hijack) for a server that does not use Listener, and for an upgrade on a
// kept-alive connection that began with another request.
//
// Either way the checks and the answer are the same (upgradeReq,
// admitUpgrade, the 101), and the socket then leaves Go's netpoller for the
// gateway's own (attach).

// upgradeReq is what the gateway reads of a handshake.
type upgradeReq struct {
	http11     bool   // HTTP/1.1 or later
	query      string // the request target's raw query
	upgrade    string // every Upgrade value, comma-joined
	connection string // every Connection value, comma-joined
	key        string // Sec-WebSocket-Key
	version    string // Sec-WebSocket-Version
	extensions string // every Sec-WebSocket-Extensions value, comma-joined
	origin     string
	origins    int    // how many Origin headers came (more than one is refused)
	forwarded  string // every X-Forwarded-For value, comma-joined
	auth       string // Authorization
	peer       netip.Addr
}

// admitted is an accepted handshake. It holds a slot of its client address
// and one of its user (edge.go) until the connection is registered (which
// then holds them until removeConn) or the handshake fails (release).
type admitted struct {
	room     protocol.Room
	since    uint64
	hasSince bool
	who      auth.Identity
	deflate  bool
	ip       netip.Addr
	user     protocol.User // set once the user's slot is taken
}

// release gives back the slots a handshake took, when it fails before its
// connection is registered.
func (s *Server) release(a admitted) {
	s.edge.release(a.ip)
	s.edge.releaseUser(a.user)
}

var errStarting = protocol.Errorf(http.StatusServiceUnavailable, protocol.CodeUnavailable, "", "gateway is not ready").WithRetry(1000)

// admitUpgrade runs every check a handshake must pass, cheapest and most
// protective first: the edge (origin, rate, connections of the address),
// the request, the token, moderation, the gateway's state.
func (s *Server) admitUpgrade(q *upgradeReq) (a admitted, perr *protocol.Error) {
	defer func() {
		if perr != nil {
			s.stats.Rejected.Add(1)
		}
	}()
	if q.origins > 1 {
		// Which one would a check read? A browser sends one; two are a
		// client trying to slip one past the allow-list.
		return a, protocol.Errorf(http.StatusBadRequest, CodeDuplicateOrigin, "",
			"a handshake carries at most one Origin header")
	}
	if !s.edge.originAllowed(q.origin) {
		return a, protocol.Errorf(http.StatusForbidden, CodeOriginNotAllowed, "",
			"this gateway does not accept connections from pages of that origin")
	}
	ip := s.edge.clientAddr(q.peer, q.forwarded)
	if perr := s.edge.admit(ip, time.Now()); perr != nil {
		s.log.Debug("handshake refused at the edge", "peer", q.peer, "client", ip, "code", perr.Body.Code)
		return a, perr
	}
	// From here the handshake holds a slot of its address (and, once the
	// token is known, one of its user).
	defer func() {
		if perr != nil {
			s.release(a)
		}
	}()
	a.ip = ip
	room, _ := queryValue(q.query, "room")
	id, err := protocol.ParseRoom(room)
	if err != nil {
		return a, protocol.Errorf(http.StatusBadRequest, protocol.CodeInvalidRoom, "room", err.Error())
	}
	a.room = id
	if v, _ := queryValue(q.query, "since"); v != "" {
		a.since, err = strconv.ParseUint(v, 10, 64)
		if err != nil {
			return a, protocol.Errorf(http.StatusBadRequest, protocol.CodeInvalidField, "since", "since must be a non-negative integer sequence")
		}
		a.hasSince = true
	}
	if !hasToken(q.upgrade, "websocket") || !hasToken(q.connection, "upgrade") {
		return a, protocol.Errorf(http.StatusBadRequest, protocol.CodeBadRequest, "", "this endpoint speaks WebSocket only (Upgrade: websocket)")
	}
	if !q.http11 {
		return a, protocol.Errorf(http.StatusBadRequest, protocol.CodeBadRequest, "", "a WebSocket handshake needs HTTP/1.1")
	}
	token, _ := queryValue(q.query, "token")
	if a.who, err = s.cfg.Verifier.FromHandshake(q.auth, token); err != nil {
		var pe *protocol.Error
		if errors.As(err, &pe) {
			return a, pe
		}
		return a, protocol.Errorf(http.StatusUnauthorized, protocol.CodeUnauthorized, "", "token rejected")
	}
	if perr := s.admitJoin(id, a.who); perr != nil {
		return a, perr
	}
	if perr := s.edge.admitUser(a.who.User); perr != nil {
		s.log.Debug("handshake refused: user connection cap", "user", a.who.User, "code", perr.Body.Code)
		return a, perr
	}
	a.user = a.who.User
	switch {
	case !s.running.Load() || s.closing.Load():
		return a, errStarting
	case s.state.Load() == bus.StateDraining:
		return a, protocol.Errorf(http.StatusServiceUnavailable, protocol.CodeDraining, "", "gateway is draining; ask dispatch for another").WithRetry(1000)
	case s.stats.Conns.Load() >= int64(s.cfg.MaxConns):
		return a, protocol.Errorf(http.StatusServiceUnavailable, protocol.CodeUnavailable, "", "gateway is full; ask dispatch for another").WithRetry(1000)
	case !s.cfg.NC.IsConnected() && !s.canAdmitFromMemory(id, a.since, a.hasSince):
		// NATS is in trouble: a room this gateway hosts is served from
		// memory, but starting one, or catching one up to since, needs
		// NATS. Say so before the upgrade, so the client tries the next
		// gateway at once.
		return a, protocol.Errorf(http.StatusServiceUnavailable, protocol.CodeUnavailable, "",
			"gateway cannot reach NATS right now; try another gateway").WithRetry(500)
	}
	if q.version != "13" {
		return a, protocol.Errorf(http.StatusUpgradeRequired, protocol.CodeBadRequest, "", "this gateway speaks WebSocket version 13 (Sec-WebSocket-Version: 13)")
	}
	if k, err := base64.StdEncoding.DecodeString(q.key); err != nil || len(k) != 16 {
		return a, protocol.Errorf(http.StatusBadRequest, protocol.CodeBadRequest, "", "Sec-WebSocket-Key must be 16 bytes in base64")
	}
	a.deflate = !s.cfg.NoCompress && negotiateDeflate(q.extensions)
	return a, nil
}

// queryValue returns the first value of key in a raw query, unescaped,
// as url.Values.Get would, without building the map.
func queryValue(query, key string) (string, bool) {
	for query != "" {
		var kv string
		kv, query, _ = strings.Cut(query, "&")
		k, v, _ := strings.Cut(kv, "=")
		if strings.Contains(k, ";") {
			continue // url.ParseQuery refuses such a pair
		}
		if k != key {
			if uk, err := url.QueryUnescape(k); err != nil || uk != key {
				continue
			}
		}
		uv, err := url.QueryUnescape(v)
		if err != nil {
			continue
		}
		return uv, true
	}
	return "", false
}

// hasToken reports whether a comma-separated header value holds token,
// case-insensitively ("keep-alive, Upgrade").
func hasToken(v, token string) bool {
	for v != "" {
		var part string
		part, v, _ = strings.Cut(v, ",")
		if strings.EqualFold(strings.TrimSpace(part), token) {
			return true
		}
	}
	return false
}

// websocketGUID is RFC 6455's magic string.
const websocketGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// appendSwitching appends the 101 answer to a handshake.
func appendSwitching(dst []byte, key string, deflate bool) []byte {
	dst = append(dst, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "...)
	h := sha1.New()
	h.Write([]byte(key))
	h.Write([]byte(websocketGUID))
	var sum [sha1.Size]byte
	dst = base64.StdEncoding.AppendEncode(dst, h.Sum(sum[:0]))
	if deflate {
		dst = append(dst, "\r\nSec-WebSocket-Extensions: "+deflateResponse...)
	}
	return append(dst, "\r\n\r\n"...)
}

// writeUpgradeError answers a refused handshake through net/http.
func writeUpgradeError(w http.ResponseWriter, perr *protocol.Error) {
	if perr.Status == http.StatusUpgradeRequired {
		w.Header().Set("Sec-WebSocket-Version", "13")
	}
	protocol.WriteError(w, perr)
}

// rawResponse collects an HTTP answer written through the http.ResponseWriter
// interface, for a connection the gateway answers itself.
type rawResponse struct {
	h      http.Header
	status int
	body   bytes.Buffer
}

func (r *rawResponse) Header() http.Header {
	if r.h == nil {
		r.h = http.Header{}
	}
	return r.h
}
func (r *rawResponse) WriteHeader(status int)      { r.status = status }
func (r *rawResponse) Write(b []byte) (int, error) { return r.body.Write(b) }

// bytes is the whole answer; the connection closes after it.
func (r *rawResponse) bytes() []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "HTTP/1.1 %d %s\r\n", r.status, http.StatusText(r.status))
	h := r.Header()
	h.Set("Content-Length", strconv.Itoa(r.body.Len()))
	h.Set("Connection", "close")
	_ = h.Write(&b)
	b.WriteString("\r\n")
	b.Write(r.body.Bytes())
	return b.Bytes()
}

// rejectRaw answers a refused handshake on nc and closes it.
func (s *Server) rejectRaw(nc net.Conn, perr *protocol.Error) {
	var r rawResponse
	writeUpgradeError(&r, perr)
	_ = nc.SetWriteDeadline(time.Now().Add(s.cfg.HeaderTimeout))
	_, _ = nc.Write(r.bytes())
	_ = nc.Close()
}

// serveWS serves GET /v1/ws through net/http.
func (s *Server) serveWS(w http.ResponseWriter, r *http.Request) {
	if !s.beginHandshake(nil) {
		writeUpgradeError(w, errStarting)
		return
	}
	defer s.hsWG.Done()
	h := r.Header
	q := upgradeReq{
		http11: r.ProtoAtLeast(1, 1), query: r.URL.RawQuery,
		upgrade: strings.Join(h.Values("Upgrade"), ","), connection: strings.Join(h.Values("Connection"), ","),
		key: h.Get("Sec-WebSocket-Key"), version: h.Get("Sec-WebSocket-Version"),
		extensions: strings.Join(h.Values("Sec-WebSocket-Extensions"), ","),
		origin:     h.Get("Origin"), origins: len(h.Values("Origin")),
		forwarded: strings.Join(h.Values("X-Forwarded-For"), ","),
		auth:      h.Get("Authorization"), peer: peerAddr(r),
	}
	a, perr := s.admitUpgrade(&q)
	if perr != nil {
		writeUpgradeError(w, perr)
		return
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		s.release(a)
		writeUpgradeError(w, protocol.Errorf(http.StatusInternalServerError, protocol.CodeInternal, "", "cannot take over the connection"))
		return
	}
	nc, brw, err := hj.Hijack()
	if err != nil {
		s.release(a)
		return
	}
	var early []byte
	if n := brw.Reader.Buffered(); n > 0 {
		// The client sent frames right behind its handshake.
		early, _ = brw.Reader.Peek(n)
	}
	if pc, ok := nc.(*prefixConn); ok {
		// A kept-alive connection that came through Listener: what it
		// had read ahead follows what net/http buffered.
		early = append(append([]byte(nil), early...), pc.pre...)
		nc = pc.Conn
	}
	_ = nc.SetDeadline(time.Time{})
	s.upgraded(nc, q.key, a, early)
}

// upgraded sends the 101 on nc and attaches the connection.
func (s *Server) upgraded(nc net.Conn, key string, a admitted, early []byte) {
	var buf [256]byte
	_ = nc.SetWriteDeadline(time.Now().Add(s.cfg.HeaderTimeout))
	if _, err := nc.Write(appendSwitching(buf[:0], key, a.deflate)); err != nil {
		s.release(a)
		_ = nc.Close()
		return
	}
	s.attach(nc, a, early)
}

// attach takes an upgraded connection out of Go's netpoller, registers it,
// joins its room and hands it to a poller. early holds client bytes read
// past the handshake.
func (s *Server) attach(nc net.Conn, a admitted, early []byte) {
	fd, err := netfd.Detach(nc)
	if err != nil {
		s.release(a)
		s.log.Warn("cannot take over an upgraded connection", "err", err)
		return
	}
	c := newConn(s, fd, a.who, a.deflate)
	if len(early) > 0 {
		c.partial = append([]byte(nil), early...)
	}
	c.id = s.connSeq.Add(1)
	s.admitMu.Lock()
	if s.closing.Load() {
		s.admitMu.Unlock()
		s.release(a)
		_, _ = netfd.Write(fd, closeFrameBytes(1001, ""))
		_ = unix.Close(fd)
		return
	}
	c.ip = a.ip
	s.connWG.Add(1)
	sh := s.hub.connShard(c)
	sh.mu.Lock()
	sh.conns[c] = struct{}{}
	sh.mu.Unlock()
	s.admitMu.Unlock()
	s.stats.Conns.Add(1)
	s.stats.ConnsTotal.Add(1)

	// A room start that cannot finish within about 5 s fails its joins with
	// a retry hint rather than keep the viewer waiting (starter.go).
	ctx, cancel := context.WithTimeout(s.hsCtx, 6*time.Second)
	err = s.join(ctx, c, a.room, a.since, a.hasSince)
	cancel()
	switch {
	case errors.Is(err, errCatchUpContinues):
		// Its last frames are queued; the poller writes them and closes.
	case err != nil:
		s.log.Warn("cannot join room", "room", a.room, "err", err)
		c.closeWith(protocol.CodeUnavailable, "cannot join the room now; retry")
		c.inputDone = true
		s.removeConn(c)
	default:
		if perr := s.admitJoin(a.room, a.who); perr != nil {
			// Banned or closed while joining: the watch looked for this
			// connection before it was a member.
			c.closeWith(perr.Body.Code, perr.Body.Message)
		}
		if len(c.partial) > 0 && !c.handle(nil) {
			c.inputDone = true
			s.removeConn(c)
		}
	}
	if !s.poll.register(c) {
		c.close(1001)
		s.reap(c)
	}
}

// beginHandshake counts a handshake in progress (and tracks nc, when given,
// so that Close can interrupt it); false once the gateway is closing.
func (s *Server) beginHandshake(nc net.Conn) bool {
	s.hsMu.Lock()
	defer s.hsMu.Unlock()
	if s.hsClosed {
		return false
	}
	s.hsWG.Add(1)
	if nc != nil {
		s.hsConns[nc] = struct{}{}
	}
	return true
}

func (s *Server) endHandshake(nc net.Conn) {
	s.hsMu.Lock()
	delete(s.hsConns, nc)
	s.hsMu.Unlock()
	s.hsWG.Done()
}

// stopHandshakes refuses new handshakes, interrupts those in progress and
// waits for them.
func (s *Server) stopHandshakes() {
	s.hsMu.Lock()
	s.hsClosed = true
	for nc := range s.hsConns {
		_ = nc.SetDeadline(time.Unix(1, 0))
	}
	s.hsMu.Unlock()
	s.hsCancel()
	s.hsWG.Wait()
}

// headBufs holds the buffers handshakes are read into.
var headBufs = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

// upgradePrefix starts every request line the gateway handshakes itself.
const upgradePrefix = "GET /v1/ws"

// classify reports whether b, the first bytes of a connection, start a GET
// /v1/ws (1), something else (0), or cannot tell yet (-1).
func classify(b []byte) int {
	n := min(len(b), len(upgradePrefix))
	if string(b[:n]) != upgradePrefix[:n] {
		return 0
	}
	if len(b) <= len(upgradePrefix) {
		return -1
	}
	if c := b[len(upgradePrefix)]; c == '?' || c == ' ' {
		return 1
	}
	return 0
}

// headEnd returns the length of the request head in b (through its empty
// line), or -1 if b does not hold all of it yet.
func headEnd(b []byte) int {
	for i := 0; ; {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			return -1
		}
		i += j + 1
		if i < len(b) && b[i] == '\n' {
			return i + 1
		}
		if i+1 < len(b) && b[i] == '\r' && b[i+1] == '\n' {
			return i + 2
		}
	}
}

// upgradeHeaders are the headers a handshake reads: of a list header every
// value, comma-joined; of the others the first.
var upgradeHeaders = [...]struct {
	name  string
	list  bool
	field func(*upgradeReq) *string
}{
	{"Upgrade", true, func(q *upgradeReq) *string { return &q.upgrade }},
	{"Connection", true, func(q *upgradeReq) *string { return &q.connection }},
	{"Sec-WebSocket-Extensions", true, func(q *upgradeReq) *string { return &q.extensions }},
	{"Sec-WebSocket-Key", false, func(q *upgradeReq) *string { return &q.key }},
	{"Sec-WebSocket-Version", false, func(q *upgradeReq) *string { return &q.version }},
	{"Origin", false, func(q *upgradeReq) *string { q.origins++; return &q.origin }},
	{"X-Forwarded-For", true, func(q *upgradeReq) *string { return &q.forwarded }},
	{"Authorization", false, func(q *upgradeReq) *string { return &q.auth }},
}

// parseHead parses the request head of a GET /v1/ws.
func parseHead(head []byte, q *upgradeReq) *protocol.Error {
	bad := func(msg string) *protocol.Error {
		return protocol.Errorf(http.StatusBadRequest, protocol.CodeBadRequest, "", msg)
	}
	line, rest := cutLine(head)
	method, r, ok1 := bytes.Cut(line, []byte{' '})
	target, proto, ok2 := bytes.Cut(r, []byte{' '})
	if !ok1 || !ok2 || string(method) != http.MethodGet || bytes.IndexByte(proto, ' ') >= 0 {
		return bad("malformed request line")
	}
	major, minor, ok := http.ParseHTTPVersion(string(proto))
	if !ok || major != 1 {
		return bad("malformed HTTP version")
	}
	q.http11 = minor >= 1
	if i := bytes.IndexByte(target, '?'); i >= 0 {
		q.query = string(target[i+1:])
	}
	host := false
	for len(rest) > 0 {
		line, rest = cutLine(rest)
		if len(line) == 0 {
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			return bad("folded header lines are not allowed")
		}
		name, value, ok := bytes.Cut(line, []byte{':'})
		if !ok || len(name) == 0 || bytes.ContainsAny(name, " \t") {
			return bad("malformed header line")
		}
		v := string(bytes.Trim(value, " \t"))
		if equalFold(name, "Host") {
			host = true
			continue
		}
		for _, h := range upgradeHeaders {
			if equalFold(name, h.name) {
				f := h.field(q)
				switch {
				case *f == "":
					*f = v
				case h.list:
					*f += "," + v
				}
				break
			}
		}
	}
	if q.http11 && !host {
		return bad("missing Host header")
	}
	return nil
}

func cutLine(b []byte) (line, rest []byte) {
	line, rest, _ = bytes.Cut(b, []byte{'\n'})
	return bytes.TrimSuffix(line, []byte{'\r'}), rest
}

func equalFold(b []byte, s string) bool { return len(b) == len(s) && strings.EqualFold(string(b), s) }

// addrOf is the IP address of a TCP peer.
func addrOf(a net.Addr) netip.Addr {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.AddrPort().Addr().Unmap()
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}
