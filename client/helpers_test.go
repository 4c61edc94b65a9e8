package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsflate"
	"github.com/gobwas/ws/wsutil"

	"github.com/liveroom/liveroom/internal/protocol"
)

// fakeGateway is a scripted WebSocket server. Every connection is numbered
// from 0 and handed to script; refuse, when it returns a status, answers the
// upgrade request with a JSON error instead.
type fakeGateway struct {
	t      *testing.T
	srv    *httptest.Server
	id     string
	script func(n int, q url.Values, c *serverConn)
	refuse func(n int, q url.Values) (status int, code string)
	// deflate makes it accept permessage-deflate (no context takeover).
	deflate bool

	mu      sync.Mutex
	queries []url.Values // of every request, refused or not
	conns   []net.Conn
	wg      sync.WaitGroup
}

func newFakeGateway(t *testing.T, id string, script func(n int, q url.Values, c *serverConn)) *fakeGateway {
	t.Helper()
	g := &fakeGateway{t: t, id: id, script: script}
	g.srv = httptest.NewServer(http.HandlerFunc(g.serve))
	t.Cleanup(g.close)
	return g
}

// URL is the gateway's ws:// endpoint.
func (g *fakeGateway) URL() string { return "ws" + g.srv.URL[len("http"):] + "/v1/ws" }

func (g *fakeGateway) serve(w http.ResponseWriter, r *http.Request) {
	// Added before the request can be hijacked: httptest.Server.Close does
	// not wait for hijacked connections, close() waits for wg.
	g.wg.Add(1)
	handedOff := false
	defer func() {
		if !handedOff {
			g.wg.Done()
		}
	}()
	q := r.URL.Query()
	g.mu.Lock()
	n := len(g.queries)
	g.queries = append(g.queries, q)
	g.mu.Unlock()
	if g.refuse != nil {
		if status, code := g.refuse(n, q); status != 0 {
			protocol.WriteError(w, protocol.Errorf(status, code, "", "refused by test").WithRetry(10))
			return
		}
	}
	u := ws.HTTPUpgrader{}
	var ext wsflate.Extension
	if g.deflate {
		ext.Parameters = wsflate.DefaultParameters
		u.Negotiate = ext.Negotiate
	}
	conn, _, _, err := u.Upgrade(r, w)
	if err != nil {
		g.t.Errorf("upgrade: %v", err)
		return
	}
	g.mu.Lock()
	g.conns = append(g.conns, conn)
	g.mu.Unlock()
	handedOff = true
	go func() {
		defer g.wg.Done()
		defer conn.Close()
		g.script(n, q, &serverConn{t: g.t, conn: conn})
	}()
}

func (g *fakeGateway) close() {
	g.srv.Close()
	g.mu.Lock()
	for _, c := range g.conns {
		_ = c.Close()
	}
	g.mu.Unlock()
	g.wg.Wait()
}

// Queries returns the query of every request so far.
func (g *fakeGateway) Queries() []url.Values {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]url.Values(nil), g.queries...)
}

// serverConn writes frames from the server side of a test connection.
type serverConn struct {
	t    *testing.T
	conn net.Conn
}

func (c *serverConn) send(v any) {
	var b []byte
	switch v := v.(type) {
	case string:
		b = []byte(v)
	case []byte:
		b = v
	default:
		b = protocol.Encode(v)
	}
	// Errors are expected when the client has gone; the test's assertions
	// are on what the client received.
	_ = wsutil.WriteServerText(c.conn, b)
}

func (c *serverConn) welcome(room string, seq uint64, replayed int) {
	c.send(protocol.Welcome{Type: protocol.FrameWelcome, Room: room, Seq: seq, Online: 3, Likes: 7, Gateway: "", User: "alice", Replayed: replayed})
}

func (c *serverConn) batch(room string, msgs ...Message) {
	c.send(protocol.Batch{Type: protocol.FrameBatch, Room: room, Msgs: msgs})
}

// sendCompressed writes payload as one compressed text message.
func (c *serverConn) sendCompressed(payload []byte) {
	f, err := wsflate.CompressFrame(ws.NewTextFrame(payload))
	if err != nil {
		c.t.Errorf("compress: %v", err)
		return
	}
	_ = ws.WriteFrame(c.conn, f)
}

// waitClosed reads (and answers) client frames until the client goes away.
func (c *serverConn) waitClosed() {
	for {
		if _, _, err := wsutil.ReadClientData(c.conn); err != nil {
			return
		}
	}
}

// fakeDispatch serves GET /v1/dispatch with the gateways returned by list.
type fakeDispatch struct {
	srv  *httptest.Server
	list func(call int) []Gateway
	// wait, when set and above zero for a call, makes it a wait answer.
	wait func(call int) int64

	mu      sync.Mutex
	calls   int
	rooms   []string
	queries []url.Values
}

func newFakeDispatch(t *testing.T, list func(call int) []Gateway) *fakeDispatch {
	t.Helper()
	d := &fakeDispatch{list: list}
	d.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/dispatch" || r.Method != http.MethodGet {
			protocol.WriteError(w, protocol.Errorf(http.StatusNotFound, protocol.CodeNotFound, "", "no such endpoint"))
			return
		}
		d.mu.Lock()
		call := d.calls
		d.calls++
		d.rooms = append(d.rooms, r.URL.Query().Get("room"))
		d.queries = append(d.queries, r.URL.Query())
		d.mu.Unlock()
		if d.wait != nil {
			if ms := d.wait(call); ms > 0 {
				protocol.WriteJSON(w, http.StatusOK, DispatchAnswer{Gateways: []Gateway{}, RetryAfterMS: ms,
					Reconnect: ReconnectPolicy{BaseMS: 5, MaxMS: 20, Jitter: 0.5}})
				return
			}
		}
		protocol.WriteJSON(w, http.StatusOK, DispatchAnswer{
			Gateways:  d.list(call),
			Reconnect: ReconnectPolicy{BaseMS: 5, MaxMS: 20, Jitter: 0.5},
		})
	}))
	t.Cleanup(d.srv.Close)
	return d
}

// Queries returns the query of every request so far.
func (d *fakeDispatch) Queries() []url.Values {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]url.Values(nil), d.queries...)
}

func (d *fakeDispatch) Calls() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.calls
}

// nextEvent returns the next event or fails the test after a deadline.
func nextEvent(t *testing.T, c *Conn) Event {
	t.Helper()
	select {
	case ev, ok := <-c.Events():
		if !ok {
			t.Fatalf("event channel closed")
		}
		return ev
	case <-time.After(5 * time.Second):
		t.Fatalf("no event within 5s")
	}
	return Event{}
}

// expectEvents reads len(want) events and checks them against want (as
// describe renders them); it returns them.
func expectEvents(t *testing.T, c *Conn, want []string) []Event {
	t.Helper()
	var evs []Event
	var got []string
	for range want {
		ev := nextEvent(t, c)
		evs = append(evs, ev)
		got = append(got, describe(ev))
	}
	if !slices.Equal(got, want) {
		t.Fatalf("events:\n got %s\nwant %s", strings.Join(got, ", "), strings.Join(want, ", "))
	}
	return evs
}

// describe renders an event compactly for comparisons.
func describe(ev Event) string {
	switch ev.Kind {
	case EventMessage:
		if ev.Msg.Seq > 0 {
			return fmt.Sprintf("msg %s %s#%d", ev.Msg.Type, ev.Msg.ID, ev.Msg.Seq)
		}
		return fmt.Sprintf("msg %s %s", ev.Msg.Type, ev.Msg.ID)
	case EventWelcome, EventReconnected:
		return fmt.Sprintf("%s seq=%d", ev.Kind, ev.Welcome.Seq)
	case EventReconnecting, EventClosed:
		return ev.Kind.String()
	case EventHistory:
		ids := make([]string, len(ev.History))
		for i, m := range ev.History {
			ids[i] = m.ID
		}
		return "history " + strings.Join(ids, " ")
	}
	return ev.Kind.String()
}

func gift(id string, seq uint64) Message {
	return Message{ID: id, Type: protocol.TypeGift, Seq: seq, User: "bob", Gift: "rocket", Count: 1, TS: 1}
}

func danmaku(id string) Message {
	return Message{ID: id, Type: protocol.TypeDanmaku, User: "bob", Text: "hi " + id, TS: 1}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}
