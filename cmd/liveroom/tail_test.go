package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"go.uber.org/goleak"

	"github.com/liveroom/liveroom/internal/app"
	"github.com/liveroom/liveroom/internal/auth"
	"github.com/liveroom/liveroom/internal/protocol"
	"github.com/liveroom/liveroom/internal/testutil"
)

// tailServer serves dispatch and one scripted gateway on one address.
// Dispatch first asks to wait (every gateway full), then lists the gateway.
// The first connection is asked to move (a drain); the second stays.
type tailServer struct {
	srv   *httptest.Server
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns []net.Conn
	since []string
	asked int // dispatch requests
}

func newTailServer(t *testing.T) *tailServer {
	t.Helper()
	v := testutil.Verifier(t)
	s := &tailServer{}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/dispatch", func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.asked++
		first := s.asked == 1
		s.mu.Unlock()
		if first {
			protocol.WriteJSON(w, 200, map[string]any{"gateways": []any{}, "retry_after_ms": 20,
				"reconnect": map[string]any{"base_ms": 5, "max_ms": 10, "jitter": 0.5}})
			return
		}
		protocol.WriteJSON(w, 200, map[string]any{
			"gateways":  []map[string]any{{"id": "gw-t", "url": "ws://" + r.Host + "/v1/ws", "load": 0.1}},
			"reconnect": map[string]any{"base_ms": 5, "max_ms": 10, "jitter": 0.5},
		})
	})
	mux.HandleFunc("GET /v1/ws", func(w http.ResponseWriter, r *http.Request) {
		s.wg.Add(1)
		defer s.wg.Done()
		who, err := v.FromUpgrade(r)
		if err != nil {
			protocol.WriteError(w, err)
			return
		}
		conn, _, _, err := ws.UpgradeHTTP(r, w)
		if err != nil {
			return
		}
		defer conn.Close()
		s.mu.Lock()
		n := len(s.conns)
		s.conns = append(s.conns, conn)
		s.since = append(s.since, r.URL.Query().Get("since"))
		s.mu.Unlock()
		send := func(v any) { _ = wsutil.WriteServerText(conn, protocol.Encode(v)) }
		ts := time.Date(2026, 3, 1, 20, 15, 30, 250_000_000, time.Local).UnixMilli()
		if n == 0 {
			send(protocol.Welcome{Type: "welcome", Room: "r1", Seq: 4, Online: 12, Likes: 100, Gateway: "gw-t", User: string(who.User), History: 2})
			send(protocol.History{Type: "history", Room: "r1", Msgs: []protocol.Message{
				{ID: "d0", Type: "danmaku", User: "ann", Name: "Ann", TS: ts, Text: "earlier"},
				{ID: "g3", Type: "gift", Seq: 3, User: "ann", Name: "Ann", TS: ts, Gift: "rose", Count: 1},
			}})
			send(protocol.Batch{Type: "batch", Room: "r1", Msgs: []protocol.Message{
				{ID: "d1", Type: "danmaku", User: "bob", Name: "Bob", TS: ts, Text: "hi\x1b[2Jthere\nfake line"},
				{ID: "g5", Type: "gift", Seq: 5, User: "bob", Name: "Bob", TS: ts, Gift: "rocket", Count: 3},
				{ID: "l1", Type: "like", TS: ts, Count: 4, Total: 104},
				{ID: "c1", Type: "count", TS: ts, Online: 13},
				{ID: "n6", Type: "notice", Seq: 6, TS: ts, Text: "bob was muted"},
			}})
			send(protocol.Reconnect{Type: "reconnect", AfterMS: 10})
		} else {
			send(protocol.Welcome{Type: "welcome", Room: "r1", Seq: 6, Online: 12, Gateway: "gw-t", User: string(who.User)})
			send(protocol.Batch{Type: "batch", Room: "r1", Msgs: []protocol.Message{{ID: "d2", Type: "danmaku", User: "bob", TS: ts, Text: "after"}}})
		}
		for {
			if _, _, err := wsutil.ReadClientData(conn); err != nil {
				return
			}
		}
	})
	s.srv = httptest.NewServer(mux)
	t.Cleanup(func() {
		s.srv.Close()
		s.mu.Lock()
		for _, c := range s.conns {
			_ = c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return s
}

// tail runs runTail until stdout contains until, then cancels it.
func tail(t *testing.T, args []string, until string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errOut testutil.SyncBuffer
	done := make(chan error, 1)
	go func() { done <- runTail(ctx, args, &out, &errOut) }()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(out.String(), until) {
		select {
		case err := <-done:
			t.Fatalf("tail returned early: %v\nstdout:\n%s\nstderr:\n%s", err, out.String(), errOut.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q in output:\n%s\nstderr:\n%s", until, out.String(), errOut.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("tail: %v", err)
	}
	return out.String()
}

func TestRunTail(t *testing.T) {
	// Registered first, so it runs after the server's cleanup: the tail's
	// Conn must be gone once runTail has returned.
	before := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, before) })
	t.Setenv(envToken, "")
	unsetEnv(t, envSecret)
	s := newTailServer(t)
	out := tail(t, []string{"--url", s.srv.URL, "--room", "r1", "--secret", testutil.Secret, "--user", "watcher"}, "after")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	want := []string{
		"# joining… every gateway is full and more are starting; asking again in 20ms (1)",
		"# joined room r1 via gw-t as watcher: seq=4 online=12 likes=100 replayed=0 history=2",
		"20:15:30.250 danmaku Ann: earlier  [history]",
		"20:15:30.250 gift    Ann: rose ×1  [seq 3]  [history]",
		"20:15:30.250 danmaku Bob: hi�[2Jthere�fake line",
		"20:15:30.250 gift    Bob: rocket ×3  [seq 5]",
		"20:15:30.250 like    +4, total 104",
		"20:15:30.250 count   online 13",
		"20:15:30.250 notice  bob was muted  [seq 6]",
		"# reconnecting in 0s (attempt 1): liveroom client: gateway is draining",
		"# reconnected room r1 via gw-t as watcher: seq=6 online=12 likes=0 replayed=0",
		"20:15:30.250 danmaku bob: after",
	}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Errorf("output:\n%s\nwant:\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.since) != 2 || s.since[0] != "" || s.since[1] != "6" {
		t.Errorf("since per connection %q, want [\"\" \"6\"]", s.since)
	}
}

func TestRunTailJSON(t *testing.T) {
	t.Setenv(envToken, testutil.Token(t, "watcher", "viewer"))
	s := newTailServer(t)
	out := tail(t, []string{"--url", s.srv.URL, "--room", "r1", "--json"}, `"after"`)
	var types []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var obj struct {
			Type string `json:"type"`
			Seq  uint64 `json:"seq"`
		}
		if err := json.Unmarshal([]byte(line), &obj); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		types = append(types, obj.Type)
	}
	want := "waiting welcome history danmaku gift like count notice reconnecting welcome danmaku"
	if got := strings.Join(types, " "); got != want {
		t.Errorf("types %q, want %q", got, want)
	}
}

func TestRunTailErrors(t *testing.T) {
	t.Setenv(envToken, "")
	unsetEnv(t, envSecret)
	s := newTailServer(t)
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{name: "no room", args: []string{"--url", s.srv.URL, "--token", "x"}, wantErr: "--room"},
		{name: "rejected token", args: []string{"--url", s.srv.URL, "--room", "r1", "--token", "bad"}, wantErr: "unauthorized"},
		{name: "no dev mode", args: []string{"--url", s.srv.URL, "--room", "r1"}, wantErr: "dev token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			err := runTail(context.Background(), tt.args, &out, &errOut)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want it to mention %q", err, tt.wantErr)
			}
		})
	}
}

// devServer is a dev-mode server in miniature: a dev token endpoint,
// dispatch and a gateway that verify with the current secret. restart
// changes the secret and drops every viewer, as restarting a dev-mode serve
// does; reliable messages keep their sequence across it.
type devServer struct {
	srv *httptest.Server
	wg  sync.WaitGroup

	mu     sync.Mutex
	secret string
	conns  []net.Conn
	since  []string
	users  []string
}

func newDevServer(t *testing.T) *devServer {
	t.Helper()
	d := &devServer{secret: testutil.Secret}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/dev/token", func(w http.ResponseWriter, r *http.Request) {
		d.mu.Lock()
		secret := d.secret
		d.mu.Unlock()
		signer, err := auth.NewSigner([]byte(secret))
		if err != nil {
			t.Error(err)
			return
		}
		app.DevTokenHandler(signer, false).ServeHTTP(w, r)
	})
	mux.HandleFunc("GET /v1/dispatch", func(w http.ResponseWriter, r *http.Request) {
		protocol.WriteJSON(w, 200, map[string]any{
			"gateways":  []map[string]any{{"id": "gw-d", "url": "ws://" + r.Host + "/v1/ws", "load": 0.1}},
			"reconnect": map[string]any{"base_ms": 5, "max_ms": 20, "jitter": 0.5},
		})
	})
	mux.HandleFunc("GET /v1/ws", func(w http.ResponseWriter, r *http.Request) {
		d.wg.Add(1)
		defer d.wg.Done()
		d.mu.Lock()
		v, err := auth.New(auth.Config{HS256Secret: []byte(d.secret)})
		d.mu.Unlock()
		if err != nil {
			t.Error(err)
			return
		}
		who, perr := v.FromUpgrade(r)
		if perr != nil {
			protocol.WriteError(w, perr)
			return
		}
		conn, _, _, err := ws.UpgradeHTTP(r, w)
		if err != nil {
			return
		}
		defer conn.Close()
		d.mu.Lock()
		n := len(d.conns)
		d.conns = append(d.conns, conn)
		d.since = append(d.since, r.URL.Query().Get("since"))
		d.users = append(d.users, string(who.User))
		d.mu.Unlock()
		send := func(v any) { _ = wsutil.WriteServerText(conn, protocol.Encode(v)) }
		ts := time.Date(2026, 3, 1, 20, 15, 30, 0, time.Local).UnixMilli()
		if n == 0 {
			send(protocol.Welcome{Type: "welcome", Room: "r1", Seq: 4, Gateway: "gw-d", User: string(who.User)})
			send(protocol.Batch{Type: "batch", Room: "r1", Msgs: []protocol.Message{{ID: "g5", Type: "gift", Seq: 5, User: "bob", TS: ts, Gift: "rose", Count: 1}}})
		} else {
			send(protocol.Welcome{Type: "welcome", Room: "r1", Seq: 6, Gateway: "gw-d", User: string(who.User), Replayed: 1})
			send(protocol.Batch{Type: "batch", Room: "r1", Msgs: []protocol.Message{{ID: "g6", Type: "gift", Seq: 6, User: "bob", TS: ts, Gift: "castle", Count: 1}}})
		}
		for {
			if _, _, err := wsutil.ReadClientData(conn); err != nil {
				return
			}
		}
	})
	d.srv = httptest.NewServer(mux)
	t.Cleanup(func() {
		d.srv.Close()
		d.dropAll()
		d.wg.Wait()
	})
	return d
}

func (d *devServer) restart(secret string) {
	d.mu.Lock()
	d.secret = secret
	d.mu.Unlock()
	d.dropAll()
}

func (d *devServer) dropAll() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, c := range d.conns {
		_ = c.Close()
	}
}

// TestRunTailRenewsDevToken: when a dev-mode server restarts with a new
// secret, tail gets a new dev token for the same user and resumes after the
// last sequence it printed, so the gift sent meanwhile is not lost.
func TestRunTailRenewsDevToken(t *testing.T) {
	t.Setenv(envToken, "")
	unsetEnv(t, envSecret)
	d := newDevServer(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errOut testutil.SyncBuffer
	done := make(chan error, 1)
	go func() {
		done <- runTail(ctx, []string{"--url", d.srv.URL, "--room", "r1", "--user", "watcher"}, &out, &errOut)
	}()
	testutil.Eventually(t, 10*time.Second, "the first gift", func() bool { return strings.Contains(out.String(), "[seq 5]") })
	d.restart("another-dev-secret-0123456789")
	testutil.Eventually(t, 10*time.Second, "the gift after the restart", func() bool { return strings.Contains(out.String(), "[seq 6]") })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("tail: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "# the server refused the dev token (a dev-mode server restarted?): getting a new one, resuming after seq 5") {
		t.Errorf("no note of the renewal:\n%s", out.String())
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if n := len(d.since); n != 2 || d.since[0] != "" || d.since[1] != "5" || d.users[0] != "watcher" || d.users[1] != "watcher" {
		t.Errorf("connections since=%q users=%q, want a first one and one resuming after 5, both as watcher", d.since, d.users)
	}
}

// TestRunTailKeepsARejectedGivenToken: a token given with --token is not
// replaced when refused: tail stops and says why.
func TestRunTailKeepsARejectedGivenToken(t *testing.T) {
	unsetEnv(t, envSecret)
	d := newDevServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out, errOut testutil.SyncBuffer
	done := make(chan error, 1)
	go func() {
		done <- runTail(ctx, []string{"--url", d.srv.URL, "--room", "r1", "--token", testutil.Token(t, "watcher", "viewer")}, &out, &errOut)
	}()
	testutil.Eventually(t, 10*time.Second, "the first gift", func() bool { return strings.Contains(out.String(), "[seq 5]") })
	d.restart("another-dev-secret-0123456789")
	err := <-done
	if err == nil || !strings.Contains(err.Error(), "unauthorized") {
		t.Fatalf("err = %v, want the 401", err)
	}
}

// TestToolsSayTheServerIsUnreachable: with nothing listening, tail and send
// say where they looked and how to start or point at a server, rather than
// blaming tokens.
func TestToolsSayTheServerIsUnreachable(t *testing.T) {
	t.Setenv(envToken, "")
	unsetEnv(t, envSecret)
	url := "http://" + testutil.Addr(testutil.FreePort(t))
	for _, tc := range []struct {
		name string
		run  func(context.Context, []string, io.Writer, io.Writer) error
		args []string
	}{
		{"tail, dev token", runTail, []string{"--url", url, "--room", "r1"}},
		{"tail, given token", runTail, []string{"--url", url, "--room", "r1", "--token", "t"}},
		{"send, dev token", runSend, []string{"--url", url, "--room", "r1", "danmaku", "hi"}},
		{"send, given token", runSend, []string{"--url", url, "--room", "r1", "--token", "t", "like"}},
		{"live", runLive, []string{"--url", url, "--room", "r1", "list"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			err := tc.run(context.Background(), tc.args, &out, &errOut)
			if err == nil {
				t.Fatal("no error")
			}
			msg := err.Error()
			for _, want := range []string{"cannot reach liveroom at " + url, "connection refused", "liveroom serve", "--url"} {
				if !strings.Contains(msg, want) {
					t.Errorf("error %q does not say %q", msg, want)
				}
			}
			if strings.Contains(msg, "token") {
				t.Errorf("error %q blames tokens", msg)
			}
		})
	}
}
