package gateway

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http/httptest"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/liveroom/liveroom/internal/bus"
	"github.com/liveroom/liveroom/internal/protocol"
	"github.com/liveroom/liveroom/internal/testutil"
)

// env is one NATS server with its stream, plus helpers to start gateways and
// publish as the uplink would.
type env struct {
	t   *testing.T
	srv *bus.Embedded
	url string
	nc  *nats.Conn
	js  jetstream.JetStream
	// viaHTTP starts gateways without Server.Listener: upgrades go through
	// net/http and Handler (the hijack path).
	viaHTTP bool
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e, nc, js := testutil.StartBackbone(t)
	return &env{t: t, srv: e, url: e.ClientURL(), nc: nc, js: js}
}

// gw is a gateway under test on its own NATS connection and HTTP server.
type gw struct {
	*Server
	nc   *nats.Conn
	http *httptest.Server
	ws   string
}

func (e *env) gateway(mod func(*Config)) *gw {
	t := e.t
	t.Helper()
	// The gateway authenticates as a gateway: the tests then prove that
	// its NATS permissions (bus.Permissions) cover what it does.
	nc, err := bus.Connect(testutil.CredURL(t, e.url, bus.RoleGateway, ""), "gw", testutil.Logger())
	if err != nil {
		t.Fatal(err)
	}
	js, _ := jetstream.New(nc)
	hs := httptest.NewUnstartedServer(nil)
	cfg := Config{NC: nc, JS: js, Verifier: testutil.Verifier(t), Logger: testutil.Logger(),
		PublicURL: "ws://" + hs.Listener.Addr().String() + "/v1/ws"}
	if mod != nil {
		mod(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	hs.Config.Handler = s.Handler()
	s.ConfigureHTTP(hs.Config)
	if !e.viaHTTP {
		// As serve and the gateway role run it: upgrades are taken off the
		// listener, everything else goes to net/http.
		hs.Listener = s.Listener(hs.Listener)
	}
	hs.Start()
	g := &gw{Server: s, nc: nc, http: hs, ws: cfg.PublicURL}
	t.Cleanup(func() {
		hs.Close()
		_ = s.Close()
		nc.Close()
	})
	return g
}

// viewer is a raw WebSocket client. read skips heartbeat frames unless
// heartbeats is set.
type viewer struct {
	t          *testing.T
	conn       net.Conn
	rd         *bufio.Reader
	heartbeats bool
}

func (g *gw) dial(t *testing.T, room, user, query string) *viewer {
	t.Helper()
	v, err := g.tryDial(room, testutil.Token(t, user, protocol.RoleViewer), query)
	if err != nil {
		t.Fatalf("dial %s: %v", room, err)
	}
	return v
}

func (g *gw) tryDial(room, token, query string) (*viewer, error) {
	return g.tryDialWith(ws.Dialer{}, room, token, query)
}

// dialSmallBuffer dials with a 4 KiB receive buffer, so that a viewer that
// stops reading fills up quickly.
func (g *gw) dialSmallBuffer(t *testing.T, room, user string) *viewer {
	t.Helper()
	d := ws.Dialer{NetDial: func(ctx context.Context, network, addr string) (net.Conn, error) {
		nd := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
			var serr error
			err := c.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
			return errors.Join(err, serr)
		}}
		return nd.DialContext(ctx, network, addr)
	}}
	v, err := g.tryDialWith(d, room, testutil.Token(t, user, protocol.RoleViewer), "")
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func (g *gw) tryDialWith(d ws.Dialer, room, token, query string) (*viewer, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	u := g.ws + "?room=" + room + "&token=" + token + query
	conn, br, _, err := d.Dial(ctx, u)
	if err != nil {
		return nil, err
	}
	if br == nil {
		br = bufio.NewReader(conn)
	}
	v := &viewer{conn: conn, rd: br}
	return v, nil
}

type rw struct {
	*bufio.Reader
	net.Conn
}

func (r rw) Read(p []byte) (int, error) { return r.Reader.Read(p) }

// next reads the next text frame (answering pings) as a generic object.
func (v *viewer) next(t *testing.T, timeout time.Duration) (string, json.RawMessage) {
	t.Helper()
	typ, raw, err := v.read(timeout)
	if err != nil {
		t.Fatalf("read frame: %v", err)
	}
	return typ, raw
}

func (v *viewer) read(timeout time.Duration) (string, json.RawMessage, error) {
	_ = v.conn.SetReadDeadline(time.Now().Add(timeout))
	for {
		b, op, err := wsutil.ReadServerData(rw{v.rd, v.conn})
		if err != nil {
			return "", nil, err
		}
		if op != ws.OpText {
			continue
		}
		var probe struct {
			Type string `json:"type"`
		}
		if err := json.Unmarshal(b, &probe); err != nil {
			return "", nil, err
		}
		if probe.Type == protocol.FrameHeartbeat && !v.heartbeats {
			continue
		}
		return probe.Type, b, nil
	}
}

func (v *viewer) welcome(t *testing.T) protocol.Welcome {
	t.Helper()
	typ, raw := v.next(t, 10*time.Second)
	if typ != protocol.FrameWelcome {
		t.Fatalf("first frame is %q, want welcome: %s", typ, raw)
	}
	var w protocol.Welcome
	if err := json.Unmarshal(raw, &w); err != nil {
		t.Fatal(err)
	}
	return w
}

// batch reads frames until a batch arrives.
func (v *viewer) batch(t *testing.T, timeout time.Duration) protocol.Batch {
	t.Helper()
	for {
		typ, raw := v.next(t, timeout)
		if typ != protocol.FrameBatch {
			continue
		}
		var b protocol.Batch
		if err := json.Unmarshal(raw, &b); err != nil {
			t.Fatal(err)
		}
		return b
	}
}

// collect reads batches until want returns true or timeout passes; it
// returns every message and the number of batch frames.
func (v *viewer) collect(t *testing.T, timeout time.Duration, done func([]protocol.Message) bool) ([]protocol.Message, int) {
	t.Helper()
	var msgs []protocol.Message
	frames := 0
	deadline := time.Now().Add(timeout)
	for !done(msgs) {
		left := time.Until(deadline)
		if left <= 0 {
			t.Fatalf("timed out with %d messages in %d frames", len(msgs), frames)
		}
		typ, raw, err := v.read(left)
		if err != nil {
			t.Fatalf("read after %d messages: %v", len(msgs), err)
		}
		if typ != protocol.FrameBatch {
			continue
		}
		var b protocol.Batch
		if err := json.Unmarshal(raw, &b); err != nil {
			t.Fatal(err)
		}
		frames++
		msgs = append(msgs, b.Msgs...)
	}
	return msgs, frames
}

func (v *viewer) close() { _ = v.conn.Close() }

var msgSeq int

// danmaku publishes a live message as the uplink does.
func (e *env) danmaku(room, text string, prio bool) protocol.Message {
	e.t.Helper()
	msgSeq++
	m := protocol.Message{ID: "d" + strconv.Itoa(msgSeq), Type: protocol.TypeDanmaku, Room: room, User: "u1", Name: "U1", TS: time.Now().UnixMilli(), Text: text}
	nm := nats.NewMsg(bus.LiveSubject(protocol.Room(room)))
	nm.Data = protocol.Encode(m)
	if prio {
		nm.Header.Set(bus.HeaderPrio, "1")
	}
	if err := e.nc.PublishMsg(nm); err != nil {
		e.t.Fatal(err)
	}
	return m
}

// like publishes a like aggregate as the uplink's like flush does: on the
// live subject, with no header.
func (e *env) like(room string, count, total int64) protocol.Message {
	e.t.Helper()
	msgSeq++
	m := protocol.Message{ID: "l" + strconv.Itoa(msgSeq), Type: protocol.TypeLike, Room: room, TS: time.Now().UnixMilli(), Count: count, Total: total}
	if err := e.nc.Publish(bus.LiveSubject(protocol.Room(room)), protocol.Encode(m)); err != nil {
		e.t.Fatal(err)
	}
	return m
}

// gift stores a reliable message as the uplink does and returns its seq.
func (e *env) gift(room, id string) uint64 {
	e.t.Helper()
	m := protocol.Message{ID: id, Type: protocol.TypeGift, Room: room, User: "u1", TS: time.Now().UnixMilli(), Gift: "rocket", Count: 1}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ack, err := e.js.Publish(ctx, bus.StoreSubject(protocol.Room(room)), protocol.Encode(m), jetstream.WithMsgID(id))
	if err != nil {
		e.t.Fatal(err)
	}
	return ack.Sequence
}

// nextSeq returns the stream sequence the next stored message will get
// (tests that store one message at a time).
func (e *env) nextSeq() uint64 {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := e.js.Stream(ctx, bus.ReliableStream)
	if err != nil {
		e.t.Fatal(err)
	}
	return st.CachedInfo().State.LastSeq + 1
}

func countType(msgs []protocol.Message, typ string) int {
	n := 0
	for _, m := range msgs {
		if m.Type == typ {
			n++
		}
	}
	return n
}
