package gateway

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/golang-jwt/jwt/v5"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/liveroom/liveroom/internal/auth"
	"github.com/liveroom/liveroom/internal/bus"
	"github.com/liveroom/liveroom/internal/protocol"
	"github.com/liveroom/liveroom/internal/testutil"
)

// rawHS is a handshake sent by hand from a chosen local address, so that a
// test can be a distinct peer (127.0.0.N) and read the HTTP answer's body.
type rawHS struct {
	status int
	code   string
	header http.Header
	conn   net.Conn      // open when status is 101
	rd     *bufio.Reader // reads frames after a 101
}

// handshake opens a WebSocket handshake to g from local with query (after
// "?") and extra headers. It fails the test only on transport errors.
func (g *gw) handshake(t *testing.T, local, query string, hdr map[string]string) rawHS {
	t.Helper()
	addr := g.http.Listener.Addr().String()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		t.Fatalf("dial from %s: %v", local, err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "GET /v1/ws?%s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n", query, addr)
	for k, v := range hdr {
		fmt.Fprintf(&b, "%s: %s\r\n", k, v)
	}
	b.WriteString("\r\n")
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, b.String()); err != nil {
		t.Fatal(err)
	}
	rd := bufio.NewReader(c)
	resp, err := http.ReadResponse(rd, nil)
	if err != nil {
		t.Fatalf("handshake from %s: %v", local, err)
	}
	h := rawHS{status: resp.StatusCode, header: resp.Header}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		_ = c.SetDeadline(time.Time{})
		h.conn, h.rd = c, rd
		return h
	}
	var body struct {
		Error protocol.ErrorBody `json:"error"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&body)
	h.code = body.Error.Code
	_ = c.Close()
	return h
}

// expectClose reads h until a close frame and checks its status.
func expectClose(t *testing.T, h rawHS, want ws.StatusCode) {
	t.Helper()
	_ = h.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		f, err := ws.ReadFrame(h.rd)
		if err != nil {
			t.Fatalf("connection ended without a close frame: %v", err)
		}
		if f.Header.OpCode == ws.OpClose {
			code, _ := ws.ParseCloseFrameData(f.Payload)
			if code != want {
				t.Fatalf("close status %d, want %d", code, want)
			}
			return
		}
	}
}

// honest is a viewer reading in the background and recording every gift id.
type honest struct {
	v    *viewer
	mu   sync.Mutex
	ids  map[string]int
	err  error
	done chan struct{}
}

func startHonest(t *testing.T, g *gw, room, user string) *honest {
	h := &honest{v: g.dial(t, room, user, ""), ids: map[string]int{}, done: make(chan struct{})}
	h.v.welcome(t)
	go func() {
		defer close(h.done)
		for {
			typ, raw, err := h.v.read(time.Minute)
			if err != nil {
				h.mu.Lock()
				h.err = err
				h.mu.Unlock()
				return
			}
			if typ != protocol.FrameBatch {
				continue
			}
			var b protocol.Batch
			if err := json.Unmarshal(raw, &b); err != nil {
				continue
			}
			h.mu.Lock()
			for _, m := range b.Msgs {
				if m.Type == protocol.TypeGift {
					h.ids[m.ID]++
				}
			}
			h.mu.Unlock()
		}
	}()
	t.Cleanup(func() { h.v.close(); <-h.done })
	return h
}

// missing returns the ids not yet received and any received twice, and the
// read error if the connection failed.
func (h *honest) missing(ids []string) (miss, dup []string, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, id := range ids {
		switch h.ids[id] {
		case 0:
			miss = append(miss, id)
		case 1:
		default:
			dup = append(dup, id)
		}
	}
	return miss, dup, h.err
}

// stream publishes gifts to room every 20ms until stop is closed and returns
// their ids.
func stream(js jetstream.JetStream, room, prefix string, stop <-chan struct{}) ([]string, error) {
	var ids []string
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for i := 0; ; i++ {
		id := prefix + "-" + strconv.Itoa(i)
		m := protocol.Message{ID: id, Type: protocol.TypeGift, Room: room, User: "sender", TS: time.Now().UnixMilli(), Gift: "rocket", Count: 1}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := js.Publish(ctx, bus.StoreSubject(protocol.Room(room)), protocol.Encode(m), jetstream.WithMsgID(id))
		cancel()
		if err != nil {
			return ids, err
		}
		ids = append(ids, id)
		select {
		case <-stop:
			return ids, nil
		case <-tick.C:
		}
	}
}

func rsaPublicPEM(t *testing.T) ([]byte, *rsa.PrivateKey) {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), k
}

func signed(t *testing.T, m jwt.SigningMethod, key any, c jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(m, c).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestHostileInput runs each attack against a gateway while honest viewers
// of the same room receive a steady stream of gifts. Every attack comes from
// its own loopback address (127.0.0.N) with the loopback exemption off, and
// must get its own error; the honest viewers (127.0.0.1) must receive every
// gift sent during it, once.
func TestHostileInput(t *testing.T) {
	pubPEM, rsaKey := rsaPublicPEM(t)
	v, err := auth.New(auth.Config{HS256Secret: []byte(testutil.Secret), PublicKeysPEM: pubPEM, Leeway: -1})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t)
	const perIP, burst = 5, 20
	g := e.gateway(func(c *Config) {
		c.Verifier = v
		c.AllowedOrigins = []string{"https://live.example.com", "https://*.fans.example"}
		c.MaxConnsPerIP = perIP
		c.HandshakeRate, c.HandshakeBurst = 5, burst
		c.HeaderTimeout = time.Second
		c.ReadLimit = 4096
	})
	const room = "hostile"
	var viewers []*honest
	for i := range 3 {
		viewers = append(viewers, startHonest(t, g, room, "honest"+strconv.Itoa(i)))
	}
	exp := time.Now().Add(time.Hour).Unix()
	tok := func(user string) string { return testutil.Token(t, user, protocol.RoleViewer) }
	q := func(token string) string { return "room=" + room + "&token=" + token }

	// expectReject checks a refused handshake's status and code.
	expectReject := func(t *testing.T, h rawHS, status int, code string) {
		t.Helper()
		if h.status != status || h.code != code {
			t.Fatalf("got %d %q, want %d %q", h.status, h.code, status, code)
		}
		if h.conn != nil {
			_ = h.conn.Close()
		}
	}
	cases := []struct {
		name   string
		attack func(t *testing.T, from string)
	}{
		{"forged signature", func(t *testing.T, from string) {
			forged := signed(t, jwt.SigningMethodHS256, []byte("not-the-platform-secret-0123456789"), jwt.MapClaims{"sub": "mallory", "exp": exp, "role": "admin"})
			expectReject(t, g.handshake(t, from, q(forged), nil), 401, protocol.CodeUnauthorized)
		}},
		{"expired token", func(t *testing.T, from string) {
			old := signed(t, jwt.SigningMethodHS256, []byte(testutil.Secret), jwt.MapClaims{"sub": "mallory", "exp": time.Now().Add(-time.Minute).Unix()})
			expectReject(t, g.handshake(t, from, q(old), nil), 401, protocol.CodeUnauthorized)
		}},
		{"alg none", func(t *testing.T, from string) {
			none := signed(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, jwt.MapClaims{"sub": "mallory", "exp": exp, "role": "admin"})
			expectReject(t, g.handshake(t, from, q(none), nil), 401, protocol.CodeUnauthorized)
		}},
		{"hs256 signed with the rsa public key", func(t *testing.T, from string) {
			confused := signed(t, jwt.SigningMethodHS256, pubPEM, jwt.MapClaims{"sub": "mallory", "exp": exp, "role": "admin"})
			expectReject(t, g.handshake(t, from, q(confused), nil), 401, protocol.CodeUnauthorized)
			// The same claims signed with the real private key pass: the
			// refusal above is the key confusion, not the claims.
			real := signed(t, jwt.SigningMethodRS256, rsaKey, jwt.MapClaims{"sub": "mallory", "exp": exp})
			h := g.handshake(t, from, q(real), nil)
			if h.status != http.StatusSwitchingProtocols {
				t.Fatalf("RS256 token: %d %q", h.status, h.code)
			}
			_ = h.conn.Close()
		}},
		{"no token", func(t *testing.T, from string) {
			expectReject(t, g.handshake(t, from, "room="+room, nil), 401, protocol.CodeUnauthorized)
		}},
		{"disallowed origin", func(t *testing.T, from string) {
			expectReject(t, g.handshake(t, from, q(tok("m1")), map[string]string{"Origin": "https://evil.example"}), 403, CodeOriginNotAllowed)
			expectReject(t, g.handshake(t, from, q(tok("m1")), map[string]string{"Origin": "null"}), 403, CodeOriginNotAllowed)
			expectReject(t, g.handshake(t, from, q(tok("m1")), map[string]string{"Origin": "https://fans.example"}), 403, CodeOriginNotAllowed)
			for _, ok := range []string{"https://live.example.com", "https://a.fans.example"} {
				h := g.handshake(t, from, q(tok("m1")), map[string]string{"Origin": ok})
				if h.status != http.StatusSwitchingProtocols {
					t.Fatalf("origin %s: %d %q", ok, h.status, h.code)
				}
				_ = h.conn.Close()
			}
		}},
		{"oversize frame", func(t *testing.T, from string) {
			h := g.handshake(t, from, q(tok("big")), nil)
			if h.status != http.StatusSwitchingProtocols {
				t.Fatalf("handshake: %d %q", h.status, h.code)
			}
			defer h.conn.Close()
			payload := bytes.Repeat([]byte("x"), 8192)
			if err := wsutil.WriteClientMessage(h.conn, ws.OpText, payload); err != nil {
				t.Fatal(err)
			}
			expectClose(t, h, ws.StatusMessageTooBig)
		}},
		{"oversize message in small fragments", func(t *testing.T, from string) {
			// 1 MiB as 4 KiB fragments: each fragment is within the limit,
			// the message is not. The gateway must stop it at the limit,
			// not read the mebibyte.
			h := g.handshake(t, from, q(tok("frag")), nil)
			if h.status != http.StatusSwitchingProtocols {
				t.Fatalf("handshake: %d %q", h.status, h.code)
			}
			defer h.conn.Close()
			wrote := make(chan int, 1)
			go func() {
				sent := 0
				frag := bytes.Repeat([]byte("x"), 4096)
				for i := 0; i < 256; i++ {
					op := ws.OpContinuation
					if i == 0 {
						op = ws.OpText
					}
					if ws.WriteFrame(h.conn, ws.MaskFrameInPlace(ws.NewFrame(op, i == 255, append([]byte(nil), frag...)))) != nil {
						break
					}
					sent += len(frag)
				}
				wrote <- sent
			}()
			expectClose(t, h, ws.StatusMessageTooBig)
			_ = h.conn.Close()
			if sent := <-wrote; sent == 1<<20 {
				t.Log("the client wrote the whole message before the close arrived (kernel buffers); the close code is what counts")
			}
		}},
		{"connection flood from one address", func(t *testing.T, from string) {
			var held []net.Conn
			defer func() {
				for _, c := range held {
					_ = c.Close()
				}
			}()
			for i := range perIP {
				h := g.handshake(t, from, q(tok("flood"+strconv.Itoa(i))), nil)
				if h.status != http.StatusSwitchingProtocols {
					t.Fatalf("connection %d of %d: %d %q", i+1, perIP, h.status, h.code)
				}
				held = append(held, h.conn)
			}
			for range 5 {
				h := g.handshake(t, from, q(tok("flood-more")), nil)
				expectReject(t, h, http.StatusTooManyRequests, CodeTooManyConnections)
				if h.header.Get("Retry-After") == "" {
					t.Fatal("429 without Retry-After")
				}
			}
			// Closing one frees its slot.
			_ = held[0].Close()
			held = held[1:]
			testutil.Eventually(t, 5*time.Second, "a slot is free again", func() bool {
				h := g.handshake(t, from, q(tok("flood-again")), nil)
				if h.conn != nil {
					held = append(held, h.conn)
				}
				return h.status == http.StatusSwitchingProtocols
			})
		}},
		{"handshake rate flood", func(t *testing.T, from string) {
			limited := 0
			for i := range burst + 10 {
				h := g.handshake(t, from, "room="+room, nil) // no token: cheap to refuse, yet counted
				switch {
				case h.status == http.StatusTooManyRequests && h.code == CodeHandshakeRateLimited:
					if h.header.Get("Retry-After") == "" {
						t.Fatal("429 without Retry-After")
					}
					limited++
				case h.status == http.StatusUnauthorized && (limited == 0 || i >= burst):
					// within the burst, or a token refilled at 5/s
				default:
					t.Fatalf("handshake %d: %d %q", i, h.status, h.code)
				}
			}
			if limited < 5 {
				t.Fatalf("%d of %d handshakes rate limited, want at least 5", limited, burst+10)
			}
		}},
		{"slowloris handshake", func(t *testing.T, from string) {
			addr := g.http.Listener.Addr().String()
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
			c, err := d.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			req := "GET /v1/ws?" + q(tok("slow")) + " HTTP/1.1\r\nHost: " + addr + "\r\nUpgrade: websocket\r\n"
			start := time.Now()
			wrote := make(chan error, 1)
			go func() {
				for i := range len(req) {
					if _, err := c.Write([]byte{req[i]}); err != nil {
						wrote <- err
						return
					}
					time.Sleep(100 * time.Millisecond)
				}
				wrote <- nil
			}()
			_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
			_, _ = io.Copy(io.Discard, c) // returns when the server closes
			took := time.Since(start)
			_ = c.Close()
			if err := <-wrote; err == nil {
				t.Fatal("the whole slow request was written: the server never cut it off")
			}
			if took > 5*time.Second {
				t.Fatalf("cut off after %v, want about the 1s header timeout", took)
			}
		}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			from := "127.0.0." + strconv.Itoa(10+i)
			stop := make(chan struct{})
			type result struct {
				ids []string
				err error
			}
			res := make(chan result, 1)
			go func() {
				ids, err := stream(e.js, room, "g"+strconv.Itoa(i), stop)
				res <- result{ids, err}
			}()
			func() {
				defer close(stop)
				time.Sleep(100 * time.Millisecond) // the stream is flowing when the attack starts
				tc.attack(t, from)
				time.Sleep(100 * time.Millisecond) // and still after it
			}()
			r := <-res
			if r.err != nil {
				t.Fatalf("publish: %v", r.err)
			}
			if len(r.ids) < 3 {
				t.Fatalf("only %d gifts sent during the attack", len(r.ids))
			}
			for j, h := range viewers {
				var miss, dup []string
				var err error
				deadline := time.Now().Add(10 * time.Second)
				for {
					miss, dup, err = h.missing(r.ids)
					if len(miss) == 0 || err != nil || time.Now().After(deadline) {
						break
					}
					time.Sleep(10 * time.Millisecond)
				}
				if err != nil || len(miss) > 0 || len(dup) > 0 {
					t.Fatalf("honest viewer %d: %d of %d gifts missing %v, duplicated %v, read error %v", j, len(miss), len(r.ids), miss, dup, err)
				}
			}
		})
	}
	if n := g.Stats().Conns.Load(); n != 3 {
		t.Errorf("%d connections left, want the 3 honest viewers", n)
	}
}

// TestNoTokenInLogs captures the gateway's log and its HTTP server's error
// log at debug level during accepted and rejected handshakes carrying
// tokens (?token= puts them in the URL) and checks no token appears.
func TestNoTokenInLogs(t *testing.T) {
	var buf testutil.SyncBuffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	e := newEnv(t)
	g := e.gateway(func(c *Config) {
		c.Logger = log
		c.AllowedOrigins = []string{"https://live.example.com"}
		c.MaxConnsPerIP = 1
	})
	good := testutil.Token(t, "alice", protocol.RoleViewer)
	second := testutil.Token(t, "alice2", protocol.RoleViewer)
	expired := signed(t, jwt.SigningMethodHS256, []byte(testutil.Secret), jwt.MapClaims{"sub": "bob", "exp": time.Now().Add(-time.Hour).Unix()})
	forged := signed(t, jwt.SigningMethodHS256, []byte("another-secret-0123456789abcdef"), jwt.MapClaims{"sub": "eve", "exp": time.Now().Add(time.Hour).Unix()})
	origin := signed(t, jwt.SigningMethodHS256, []byte(testutil.Secret), jwt.MapClaims{"sub": "carol", "exp": time.Now().Add(time.Hour).Unix()})

	h := g.handshake(t, "127.0.0.1", "room=logs&token="+good, nil)
	if h.status != http.StatusSwitchingProtocols {
		t.Fatalf("good token: %d %q", h.status, h.code)
	}
	for _, c := range []struct {
		from, token, code string
		hdr               map[string]string
	}{
		{"127.0.0.1", second, CodeTooManyConnections, nil},
		{"127.0.0.2", expired, protocol.CodeUnauthorized, nil},
		{"127.0.0.2", forged, protocol.CodeUnauthorized, nil},
		{"127.0.0.2", origin, CodeOriginNotAllowed, map[string]string{"Origin": "https://evil.example"}},
	} {
		r := g.handshake(t, c.from, "room=logs&token="+c.token, c.hdr)
		if r.code != c.code {
			t.Fatalf("got %d %q, want %q", r.status, r.code, c.code)
		}
	}
	// A bad request line and a frame that closes the good connection make
	// the server and the connection log too.
	if _, err := h.conn.Write([]byte("\x81\xff garbage")); err != nil {
		t.Fatal(err)
	}
	_ = h.conn.Close()
	testutil.Eventually(t, 5*time.Second, "connection gone", func() bool { return g.Stats().Conns.Load() == 0 })
	out := buf.String()
	if !strings.Contains(out, "handshake refused") {
		t.Fatalf("the refusals were not logged at all, so this test checks nothing:\n%s", out)
	}
	for _, tk := range []string{good, second, expired, forged, origin} {
		sig := tk[strings.LastIndexByte(tk, '.')+1:]
		if strings.Contains(out, tk) || strings.Contains(out, sig) {
			t.Fatalf("a token is in the log:\n%s", out)
		}
	}
}
