package uplink

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"go.uber.org/goleak"

	"github.com/liveroom/liveroom/internal/bus"
	"github.com/liveroom/liveroom/internal/protocol"
	"github.com/liveroom/liveroom/internal/testutil"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// env is one embedded NATS server with the streams created, plus a watcher
// connection tests subscribe with.
type env struct {
	t     testing.TB
	nats  *bus.Embedded
	watch *nats.Conn
	js    jetstream.JetStream // on the watch connection
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{t: t}
	e.nats, e.watch, e.js = testutil.StartBackbone(t)
	return e
}

func (e *env) connect() *nats.Conn {
	e.t.Helper()
	// The uplink authenticates as an uplink: the tests then prove that its
	// NATS permissions (bus.Permissions) cover what it does.
	nc, err := nats.Connect(testutil.NATSURL(e.t, e.nats, bus.RoleUplink, ""), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(nc.Close)
	return nc
}

// uplink is one running Server behind a real HTTP server.
type uplink struct {
	t      testing.TB
	srv    *Server
	nc     *nats.Conn // the uplink's own connection
	url    string
	client *http.Client
	stop   func() // cancels Run and waits for it; idempotent
}

// start runs a Server on its own NATS connection. mod adjusts the config.
func (e *env) start(mod func(*Config)) *uplink {
	t := e.t
	t.Helper()
	nc := e.connect()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{NC: nc, JS: js, Verifier: testutil.Verifier(t), Logger: testutil.Logger(), ClientGifts: true}
	if mod != nil {
		mod(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(s.Handler())
	tr := &http.Transport{}
	u := &uplink{t: t, srv: s, nc: nc, url: hs.URL, client: &http.Client{Transport: tr, Timeout: 30 * time.Second}}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	var once sync.Once
	u.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	// Cleanups run last-in first-out: stop HTTP first, then Run, then NATS.
	t.Cleanup(u.stop)
	t.Cleanup(func() {
		hs.Close()
		tr.CloseIdleConnections()
	})
	return u
}

// answer is a decoded HTTP answer.
type answer struct {
	status int
	header http.Header
	raw    string
	ID     string             `json:"id"`
	Seq    uint64             `json:"seq"`
	Error  protocol.ErrorBody `json:"error"`
}

// request is one send; zero fields mean a viewer's valid danmaku to room r1.
type request struct {
	method  string
	room    string // raw path segment, already escaped as wanted
	token   string // "" means none
	auth    string // a whole Authorization header, overrides token
	body    string
	headers map[string]string
}

func (u *uplink) do(req request) answer {
	u.t.Helper()
	if req.method == "" {
		req.method = http.MethodPost
	}
	url := u.url + "/v1/rooms/" + req.room + "/messages"
	hr, err := http.NewRequest(req.method, url, strings.NewReader(req.body))
	if err != nil {
		u.t.Fatalf("new request %s: %v", url, err)
	}
	switch {
	case req.auth != "":
		hr.Header.Set("Authorization", req.auth)
	case req.token != "":
		hr.Header.Set("Authorization", "Bearer "+req.token)
	}
	for k, v := range req.headers {
		hr.Header.Set(k, v)
	}
	hr.Header.Set("Content-Type", "application/json")
	resp, err := u.client.Do(hr)
	if err != nil {
		u.t.Fatalf("%s %s: %v", req.method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		u.t.Fatal(err)
	}
	a := answer{status: resp.StatusCode, header: resp.Header, raw: string(b)}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		u.t.Fatalf("%s %s: Content-Type %q, body %q", req.method, url, ct, b)
	}
	if err := json.Unmarshal(b, &a); err != nil {
		u.t.Fatalf("%s %s: answer %q is not JSON: %v", req.method, url, b, err)
	}
	testutil.NoGoInternals(u.t, req.method+" "+url, a.raw)
	return a
}

// post sends body to room as user (a viewer unless role says otherwise).
func (u *uplink) post(room, user, role, body string, headers map[string]string) answer {
	u.t.Helper()
	if role == "" {
		role = protocol.RoleViewer
	}
	return u.do(request{room: room, token: testutil.Token(u.t, user, role), body: body, headers: headers})
}

func gift(name string, count int) string {
	b, _ := json.Marshal(map[string]any{"type": "gift", "gift": name, "count": count})
	return string(b)
}

func danmaku(text string) string {
	b, _ := json.Marshal(map[string]any{"type": "danmaku", "text": text})
	return string(b)
}

func like(count int) string {
	b, _ := json.Marshal(map[string]any{"type": "like", "count": count})
	return string(b)
}

func key(k string) map[string]string { return map[string]string{HeaderIdempotencyKey: k} }

// subscribe subscribes the watch connection to subj and makes sure the
// server knows of the subscription before returning.
func (e *env) subscribe(subj string) *nats.Subscription {
	e.t.Helper()
	sub, err := e.watch.SubscribeSync(subj)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := e.watch.Flush(); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = sub.Unsubscribe() })
	return sub
}

// barrier publishes a sentinel on the uplink's own connection and returns
// every message sub received before it. NATS keeps the order of one
// connection's publishes, so anything the uplink published before the
// barrier is in the result: an empty result proves nothing was published.
// The sentinel goes to sub's own subject, or to test.barrier.* when sub is a
// wildcard (which must then match it).
func (e *env) barrier(u *uplink, sub *nats.Subscription) []*nats.Msg {
	e.t.Helper()
	token := nuid.Next()
	subj := sub.Subject
	if strings.ContainsAny(subj, "*>") {
		// A subject the uplink may publish (its NATS permissions are
		// real here) and every wildcard of these tests matches.
		subj = bus.LiveSubject(protocol.Room("barrier_" + token))
	}
	m := nats.NewMsg(subj)
	m.Header.Set("Test-Barrier", token)
	if err := u.nc.PublishMsg(m); err != nil {
		e.t.Fatal(err)
	}
	if err := u.nc.Flush(); err != nil {
		e.t.Fatal(err)
	}
	var got []*nats.Msg
	for {
		m, err := sub.NextMsg(10 * time.Second)
		if err != nil {
			e.t.Fatalf("barrier on %s never arrived: %v", subj, err)
		}
		if m.Header.Get("Test-Barrier") == token {
			return got
		}
		got = append(got, m)
	}
}

func decodeMsg(t *testing.T, m *nats.Msg) protocol.Message {
	t.Helper()
	var pm protocol.Message
	dec := json.NewDecoder(bytes.NewReader(m.Data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&pm); err != nil {
		t.Fatalf("message on %s is not a protocol.Message: %v: %s", m.Subject, err, m.Data)
	}
	return pm
}

func (e *env) kvTotal(room protocol.Room) int64 {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	kv, err := e.js.KeyValue(ctx, bus.RoomStateKV)
	if err != nil {
		e.t.Fatal(err)
	}
	v, err := kv.Get(ctx, bus.LikesKey(room))
	if err != nil {
		e.t.Fatalf("get likes of %s: %v", room, err)
	}
	var n int64
	if err := json.Unmarshal(v.Value(), &n); err != nil {
		e.t.Fatalf("likes value %q: %v", v.Value(), err)
	}
	return n
}
