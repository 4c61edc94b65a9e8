package app

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/liveroom/liveroom/client"
	"github.com/liveroom/liveroom/internal/protocol"
	"github.com/liveroom/liveroom/internal/testutil"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// The embedded NATS server and the HTTP client keep a few pooled
		// goroutines that end with the process.
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
	)
}

func startNode(t *testing.T, secret string) *Node {
	t.Helper()
	return startNodeWith(t, func(c *Config) { c.JWTSecret = secret })
}

// startNodeWith starts a node on random ports with the test secret, after
// tune changed its config.
func startNodeWith(t *testing.T, tune func(*Config)) *Node {
	t.Helper()
	cfg := Config{Addr: "127.0.0.1:0", DataDir: t.TempDir(), NATSPort: -1, JWTSecret: testutil.Secret, Logger: testutil.Logger()}
	// Most tests send gifts with users' tokens; the production policy
	// (gifts only through the server API) has its own test.
	cfg.Uplink.ClientGifts = true
	tune(&cfg)
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := n.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Close() })
	return n
}

// recorder collects a Conn's messages.
type recorder struct {
	mu   sync.Mutex
	msgs []protocol.Message
}

func (r *recorder) on(ev client.Event) {
	if ev.Kind == client.EventMessage {
		r.mu.Lock()
		r.msgs = append(r.msgs, ev.Msg)
		r.mu.Unlock()
	}
}

func (r *recorder) count(typ, text string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, m := range r.msgs {
		if m.Type == typ && (text == "" || m.Text == text || m.ID == text) {
			n++
		}
	}
	return n
}

func viewer(t *testing.T, n *Node, room, user string) *recorder {
	t.Helper()
	rec := &recorder{}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Connect(ctx, client.Config{BaseURL: n.URL(), Room: room, Token: testutil.Token(t, user, protocol.RoleViewer), OnEvent: rec.on})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return rec
}

func TestEndToEndRoomsDanmakuAndIdempotentGifts(t *testing.T) {
	n := startNode(t, testutil.Secret)
	a1, a2, b := viewer(t, n, "A", "a1"), viewer(t, n, "A", "a2"), viewer(t, n, "B", "b1")
	s := &client.Sender{BaseURL: n.URL(), Token: testutil.Token(t, "sender", protocol.RoleViewer)}
	ctx := context.Background()
	if _, err := s.Danmaku(ctx, "A", "hello room A"); err != nil {
		t.Fatal(err)
	}
	r1, err := s.Gift(ctx, "A", "rocket", 1, "key-1")
	if err != nil {
		t.Fatal(err)
	}
	r2, err := s.Gift(ctx, "A", "rocket", 1, "key-1")
	if err != nil {
		t.Fatal(err)
	}
	if r1.ID != r2.ID || r1.Seq != r2.Seq || r1.Seq == 0 {
		t.Fatalf("same Idempotency-Key answered %+v then %+v", r1, r2)
	}
	// A message to B after A's traffic: once B has it, A's traffic would
	// have reached B too, had it been routed there.
	if _, err := s.Danmaku(ctx, "B", "hello room B"); err != nil {
		t.Fatal(err)
	}
	for _, v := range []*recorder{a1, a2} {
		testutil.Eventually(t, 10*time.Second, "A viewers get the danmaku and the gift", func() bool {
			return v.count(protocol.TypeDanmaku, "hello room A") == 1 && v.count(protocol.TypeGift, r1.ID) == 1
		})
	}
	testutil.Eventually(t, 10*time.Second, "B viewer gets B's danmaku", func() bool { return b.count(protocol.TypeDanmaku, "hello room B") == 1 })
	if b.count(protocol.TypeDanmaku, "hello room A") != 0 || b.count(protocol.TypeGift, "") != 0 {
		t.Fatal("room B received room A's traffic")
	}
	// The duplicate gift never shows: a third gift proves delivery moved on.
	r3, err := s.Gift(ctx, "A", "rose", 1, "key-2")
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []*recorder{a1, a2} {
		testutil.Eventually(t, 10*time.Second, "third gift", func() bool { return v.count(protocol.TypeGift, r3.ID) == 1 })
		if got := v.count(protocol.TypeGift, r1.ID); got != 1 {
			t.Fatalf("gift sent twice with one key shown %d times", got)
		}
	}
}

func TestDevModeTokenAndPages(t *testing.T) {
	n := startNode(t, "")
	if !n.Dev() {
		t.Fatal("no secret must mean dev mode")
	}
	tok, err := client.DevToken(context.Background(), n.URL(), "guest-1", "Guest", "viewer")
	if err != nil {
		t.Fatal(err)
	}
	s := &client.Sender{BaseURL: n.URL(), Token: tok}
	if _, err := s.Like(context.Background(), "lobby", 3); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path   string
		status int
	}{
		{"/", 200}, {"/room/lobby", 200}, {"/healthz", 200}, {"/v1/dispatch?room=a.b", 400}, {"/v1/dispatch?room=lobby", 200},
	} {
		resp, err := http.Get(n.URL() + tc.path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.status {
			t.Fatalf("GET %s = %d, want %d", tc.path, resp.StatusCode, tc.status)
		}
	}
	resp, err := http.Post(n.URL()+"/v1/dev/token", "application/json", strings.NewReader(`{"user":"a.b"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Fatalf("bad dev user = %d, want 400", resp.StatusCode)
	}
}

func TestProductionModeHasNoDevTokens(t *testing.T) {
	n := startNode(t, testutil.Secret)
	resp, err := http.Post(n.URL()+"/v1/dev/token", "application/json", strings.NewReader(`{"user":"x"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode == 200 {
		t.Fatal("dev token endpoint open with a configured secret")
	}
	_, err = client.DevToken(context.Background(), n.URL(), "x", "", "")
	var ae *client.APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusNotFound || ae.Body.Code != protocol.CodeDevOnly ||
		!strings.Contains(ae.Body.Message, "without a JWT secret") {
		t.Fatalf("DevToken on a node with a secret: %v, want 404 %s", err, protocol.CodeDevOnly)
	}
}

// noRedirect is a client that reports a redirect instead of following it: a
// followed 301 would turn a POST into a GET and hide the bug.
var noRedirect = &http.Client{
	Timeout:       10 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// httpCase is one request and the answer the contract requires.
type httpCase struct {
	name, method, path string
	status             int
	code               string // "" for a non-error answer
	allow              string // the Allow header of a 405
	html               bool   // the web pages' answer, not JSON
}

func checkHTTP(t *testing.T, base string, cases []httpCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(tc.method, base+tc.path, strings.NewReader(`{"user":"x"}`))
			if err != nil {
				t.Fatal(err)
			}
			resp, err := noRedirect.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.status {
				t.Fatalf("%s %s = %d %s, want %d", tc.method, tc.path, resp.StatusCode, body, tc.status)
			}
			if got := resp.Header.Get("Allow"); got != tc.allow {
				t.Fatalf("Allow %q, want %q", got, tc.allow)
			}
			ct := resp.Header.Get("Content-Type")
			if tc.html {
				if !strings.HasPrefix(ct, "text/html") {
					t.Fatalf("Content-Type %q, want the HTML pages", ct)
				}
				return
			}
			if tc.code == "" {
				return
			}
			if ct != "application/json" {
				t.Fatalf("Content-Type %q, want application/json; body %s", ct, body)
			}
			var e struct {
				Error protocol.ErrorBody `json:"error"`
			}
			if err := json.Unmarshal(body, &e); err != nil || e.Error.Code != tc.code || e.Error.Message == "" {
				t.Fatalf("body %s (%v), want error code %q with a message", body, err, tc.code)
			}
		})
	}
}

// jsonErrorCases hold for every node: the paths under /v1 answer JSON errors
// and are never cleaned or redirected.
var jsonErrorCases = []httpCase{
	{"unknown v1 path", "GET", "/v1/nope", 404, protocol.CodeNotFound, "", false},
	{"v1 root", "GET", "/v1", 404, protocol.CodeNotFound, "", false},
	{"v1 slash", "GET", "/v1/", 404, protocol.CodeNotFound, "", false},
	{"ws trailing slash", "GET", "/v1/ws/", 404, protocol.CodeNotFound, "", false},
	{"dotted v1 path", "GET", "/v1/../v1/dispatch?room=a", 404, protocol.CodeNotFound, "", false},
	{"POST dispatch", "POST", "/v1/dispatch?room=a", 405, protocol.CodeMethodNotAllowed, "GET, HEAD", false},
	{"PUT gateways", "PUT", "/v1/gateways", 405, protocol.CodeMethodNotAllowed, "GET, HEAD", false},
	{"DELETE ws", "DELETE", "/v1/ws?room=a", 405, protocol.CodeMethodNotAllowed, "GET, HEAD", false},
	{"POST healthz", "POST", "/healthz", 405, protocol.CodeMethodNotAllowed, "GET, HEAD", false},
	{"GET send path", "GET", "/v1/rooms/a/messages", 405, protocol.CodeMethodNotAllowed, "POST", false},
	{"empty room", "POST", "/v1/rooms//messages", 400, protocol.CodeInvalidRoom, "", false},
	{"dot-dot room", "POST", "/v1/rooms/../messages", 400, protocol.CodeInvalidRoom, "", false},
	{"dot room", "POST", "/v1/rooms/./messages", 400, protocol.CodeInvalidRoom, "", false},
	{"dot-dot inside", "POST", "/v1/rooms/a/../b/messages", 400, protocol.CodeInvalidRoom, "", false},
	{"escaped slash", "POST", "/v1/rooms/a%2Fb/messages", 400, protocol.CodeInvalidRoom, "", false},
	{"two segments", "POST", "/v1/rooms/a/b/messages", 404, protocol.CodeNotFound, "", false},
	{"room without messages", "POST", "/v1/rooms/a", 404, protocol.CodeNotFound, "", false},
	{"rooms root", "GET", "/v1/rooms/", 404, protocol.CodeNotFound, "", false},
	{"send without a token", "POST", "/v1/rooms/a/messages", 401, protocol.CodeUnauthorized, "", false},
	{"dispatch bad room", "GET", "/v1/dispatch?room=a.b", 400, protocol.CodeInvalidRoom, "", false},
	{"dispatch", "GET", "/v1/dispatch?room=a", 200, "", "", false},
	{"healthz", "GET", "/healthz", 200, "", "", false},
	{"page", "GET", "/", 200, "", "", true},
	{"unknown page", "GET", "/nope", 404, "", "", true},
	{"v1 lookalike page", "GET", "/v1x", 404, "", "", true},
}

func TestHTTPErrorsAreJSON(t *testing.T) {
	t.Run("secret", func(t *testing.T) {
		n := startNode(t, testutil.Secret)
		checkHTTP(t, n.URL(), append(jsonErrorCases,
			httpCase{"dev token", "POST", "/v1/dev/token", 404, protocol.CodeDevOnly, "", false},
			httpCase{"GET dev token", "GET", "/v1/dev/token", 404, protocol.CodeDevOnly, "", false},
			httpCase{"gateways without a token", "GET", "/v1/gateways", 401, protocol.CodeUnauthorized, "", false},
			httpCase{"metrics without a token", "GET", "/metrics", 401, protocol.CodeUnauthorized, "", false},
		))
	})
	t.Run("dev", func(t *testing.T) {
		n := startNode(t, "")
		checkHTTP(t, n.URL(), append(jsonErrorCases,
			httpCase{"dev token", "POST", "/v1/dev/token", 200, "", "", false},
			httpCase{"GET dev token", "GET", "/v1/dev/token", 405, protocol.CodeMethodNotAllowed, "POST", false},
			// Dev mode: a caller on this machine may read the operator
			// views without a token, as it could mint an admin one.
			httpCase{"HEAD gateways", "HEAD", "/v1/gateways", 200, "", "", false},
		))
	})
}

// call sends a request with token as its bearer (none when empty) and
// returns the answer's status and body.
func call(t *testing.T, method, url, token string, body io.Reader) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

func TestAdminDrainNeedsAdminAndDrainsTheGateway(t *testing.T) {
	n := startNode(t, testutil.Secret)
	post := func(path, token string) (int, string) {
		status, b := call(t, http.MethodPost, n.URL()+path, token, nil)
		var body struct {
			Error protocol.ErrorBody `json:"error"`
			State string             `json:"state"`
		}
		_ = json.Unmarshal(b, &body)
		return status, body.Error.Code + body.State
	}
	gw := n.Gateway().ID()
	admin := testutil.Token(t, "boss", protocol.RoleAdmin)
	for _, tc := range []struct {
		name, path, token string
		status            int
		code              string
	}{
		{"no token", "/v1/admin/gateways/" + gw + "/drain", "", 401, protocol.CodeUnauthorized},
		{"viewer", "/v1/admin/gateways/" + gw + "/drain", testutil.Token(t, "v", protocol.RoleViewer), 403, protocol.CodeForbidden},
		{"bad id", "/v1/admin/gateways/a.b/drain", admin, 400, protocol.CodeInvalidField},
		{"unknown gateway", "/v1/admin/gateways/nope/drain", admin, 404, protocol.CodeNotFound},
		{"unknown endpoint", "/v1/admin/whatever", admin, 404, protocol.CodeNotFound},
		{"doubled slash", "/v1/admin/gateways//drain", admin, 400, protocol.CodeInvalidField},
		{"dot dot", "/v1/admin/gateways/../drain", admin, 400, protocol.CodeInvalidField},
		{"drain", "/v1/admin/gateways/" + gw + "/drain", admin, 202, "draining"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if status, code := post(tc.path, tc.token); status != tc.status || code != tc.code {
				t.Fatalf("got %d %q, want %d %q", status, code, tc.status, tc.code)
			}
		})
	}
	testutil.Eventually(t, 5*time.Second, "gateway draining", func() bool { return n.Gateway().State() == "draining" })
}

// TestAnnouncementsNeedAdmin: the announcement routes of a node answer an
// admin only; a viewer's and an anchor's token are refused, and what an
// admin announces reaches the node's autoscaler input (the store) and the
// dashboard's stats.
func TestAnnouncementsNeedAdmin(t *testing.T) {
	n := startNode(t, testutil.Secret)
	body := `{"room":"star","viewers":1000,"at":"` + time.Now().Add(time.Hour).UTC().Format(time.RFC3339) + `"}`
	admin := testutil.Token(t, "boss", protocol.RoleAdmin)
	for _, tc := range []struct {
		name, method, path, token, body string
		status                          int
	}{
		{"no token", http.MethodPost, "/v1/admin/announcements", "", body, 401},
		{"viewer", http.MethodPost, "/v1/admin/announcements", testutil.Token(t, "v", protocol.RoleViewer), body, 403},
		{"anchor", http.MethodPost, "/v1/admin/announcements", testutil.Token(t, "a", protocol.RoleAnchor), body, 403},
		{"viewer lists", http.MethodGet, "/v1/admin/announcements", testutil.Token(t, "v", protocol.RoleViewer), "", 403},
		{"anchor deletes", http.MethodDelete, "/v1/admin/announcements/an-x", testutil.Token(t, "a", protocol.RoleAnchor), "", 403},
		{"admin", http.MethodPost, "/v1/admin/announcements", admin, body, 201},
		{"admin lists", http.MethodGet, "/v1/admin/announcements", admin, "", 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if status, b := call(t, tc.method, n.URL()+tc.path, tc.token, strings.NewReader(tc.body)); status != tc.status {
				t.Fatalf("got %d %s, want %d", status, b, tc.status)
			}
		})
	}
	if l := n.disp.Announcements().List(time.Now()); len(l) != 1 || l[0].Room != "star" || l[0].By != "boss" {
		t.Fatalf("store holds %+v", l)
	}
}

// adminGet GETs url with an admin token.
func adminGet(t *testing.T, url string) (*http.Response, error) {
	t.Helper()
	return testutil.AuthGet(url, testutil.Token(t, "ops", protocol.RoleAdmin))
}
