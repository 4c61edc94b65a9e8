package role

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/liveroom/liveroom/internal/dispatch"
	"github.com/liveroom/liveroom/internal/gateway"
	"github.com/liveroom/liveroom/internal/moderation"
	"github.com/liveroom/liveroom/internal/protocol"
	"github.com/liveroom/liveroom/internal/router"
	"github.com/liveroom/liveroom/internal/testutil"
	"github.com/liveroom/liveroom/internal/uplink"
)

// roleStub stands for a role's own handler: it answers 200 with the role's
// name, so a test sees which requests reach it.
func roleStub(name string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, name) })
}

// stubbed serves the routes comp mounts, each handler replaced by a stub
// named in names (by route path or room pattern; "send", "server", "admin"
// for those handlers): the test sees the component's own route table
// through the real router, and which handler each request reaches.
func stubbed(t *testing.T, comp Component, names map[string]string) http.Handler {
	t.Helper()
	var m Mount
	comp.Mount(&m)
	stub := func(key string) http.Handler {
		name, ok := names[key]
		if !ok {
			t.Fatalf("the component mounts %q, which the test does not name", key)
		}
		return roleStub(name)
	}
	for i := range m.Routes {
		m.Routes[i].Handler = stub(m.Routes[i].Path)
	}
	for i := range m.RoomRoutes {
		m.RoomRoutes[i].Handler = stub(m.RoomRoutes[i].Pattern)
	}
	for key, h := range map[string]*http.Handler{"send": &m.Send, "server": &m.Server, "admin": &m.Admin} {
		if *h != nil {
			*h = stub(key)
		}
	}
	if m.Pages != nil {
		t.Fatal("a role component serves pages")
	}
	return router.New(m.Config)
}

func TestRoleRoutes(t *testing.T) {
	_, nc, js := testutil.StartBackbone(t)
	d := Deps{NC: nc, JS: js, Verifier: testutil.Verifier(t), Logger: testutil.Logger()}
	ctx := context.Background()
	g, err := NewGateway(d, gateway.Config{PublicURL: "ws://127.0.0.1:1/v1/ws"})
	if err != nil {
		t.Fatal(err)
	}
	u := NewUplink(d, UplinkConfig{})
	disp, err := NewDispatch(d, dispatch.Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []Component{g, u, disp} {
		if err := c.Start(ctx); err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}

	type tc struct {
		method, path string
		status       int
		code         string // JSON error code; "" when the role or healthz answers
		allow        string
		body         string // the role that answered, or "ok\n" for healthz
	}
	notFound := func(method, path string) tc { return tc{method, path, 404, protocol.CodeNotFound, "", ""} }
	common := []tc{
		{"GET", "/healthz", 200, "", "", "ok\n"},
		{"POST", "/healthz", 405, protocol.CodeMethodNotAllowed, "GET, HEAD", ""},
		notFound("GET", "/"),
		notFound("GET", "/room/demo"),
		notFound("GET", "/v1/nope"),
		notFound("POST", "/v1/dev/token"),
		notFound("GET", "/v1/../healthz"),
		notFound("GET", "//healthz"),
	}
	roles := []struct {
		name  string
		h     http.Handler
		cases []tc
	}{
		{"gateway", stubbed(t, g, map[string]string{WSPath: "gateway"}), []tc{
			{"GET", "/v1/ws?room=a", 200, "", "", "gateway"},
			{"HEAD", "/v1/ws", 200, "", "", ""},
			{"DELETE", "/v1/ws", 405, protocol.CodeMethodNotAllowed, "GET, HEAD", ""},
			notFound("GET", "/v1/ws/"),
			notFound("GET", "/v1/dispatch?room=a"),
			notFound("POST", "/v1/rooms/a/messages"),
		}},
		{"uplink", stubbed(t, u, map[string]string{"send": "uplink", "server": "server", uplink.PublicRoomsPath: "rooms", moderation.Path: "moderation"}), []tc{
			{"POST", "/v1/rooms/a/messages", 200, "", "", "uplink"},
			{"POST", "/v1/server/rooms/a/gifts", 200, "", "", "server"},
			{"GET", "/v1/server/anything", 200, "", "", "server"},
			{"GET", "/v1/rooms", 200, "", "", "rooms"},
			{"POST", "/v1/rooms", 405, protocol.CodeMethodNotAllowed, "GET, HEAD", ""},
			{"POST", "/v1/rooms/a/moderation", 200, "", "", "moderation"},
			{"GET", "/v1/rooms/a/moderation", 200, "", "", "moderation"},
			{"DELETE", "/v1/rooms/a/moderation", 405, protocol.CodeMethodNotAllowed, "GET, HEAD, POST", ""},
			{"POST", "/v1/rooms/a.b/moderation", 400, protocol.CodeInvalidRoom, "", ""},
			// Wrong methods and unclean paths are the uplink's to answer
			// (405 and 400 invalid_room): they must reach it, unredirected.
			{"GET", "/v1/rooms/a/messages", 200, "", "", "uplink"},
			{"POST", "/v1/rooms//messages", 200, "", "", "uplink"},
			{"POST", "/v1/rooms/../messages", 200, "", "", "uplink"},
			{"POST", "/v1/rooms/a/../b/messages", 200, "", "", "uplink"},
			{"POST", "/v1/rooms/a%2Fb/messages", 200, "", "", "uplink"},
			notFound("POST", "/v1/rooms/a/b/messages"),
			notFound("POST", "/v1/rooms/a"),
			notFound("POST", "/v1/rooms/messages"),
			notFound("GET", "/v1/ws"),
		}},
		{"dispatch", stubbed(t, disp, map[string]string{"/v1/dispatch": "dispatch", "admin": "admin"}), []tc{
			{"POST", "/v1/admin/gateways/g1/drain", 200, "", "", "admin"},
			{"GET", "/v1/dispatch?room=a", 200, "", "", "dispatch"},
			{"POST", "/v1/dispatch", 405, protocol.CodeMethodNotAllowed, "GET, HEAD", ""},
			// An operator view (Mount.Operator): the Host serves it, on
			// the internal address or behind the admin role
			// (TestOperatorViews).
			notFound("GET", "/v1/gateways"),
			notFound("GET", "/v1/dispatch/"),
			notFound("GET", "/v1/ws"),
		}},
	}
	c := &http.Client{
		Timeout:       10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	for _, rl := range roles {
		t.Run(rl.name, func(t *testing.T) {
			srv := httptest.NewServer(rl.h)
			defer srv.Close()
			for _, tt := range append(rl.cases, common...) {
				t.Run(tt.method+" "+tt.path, func(t *testing.T) {
					req, err := http.NewRequest(tt.method, srv.URL+tt.path, nil)
					if err != nil {
						t.Fatal(err)
					}
					resp, err := c.Do(req)
					if err != nil {
						t.Fatal(err)
					}
					defer resp.Body.Close()
					body, _ := io.ReadAll(resp.Body)
					if resp.StatusCode != tt.status {
						t.Fatalf("status %d %q, want %d", resp.StatusCode, body, tt.status)
					}
					if got := resp.Header.Get("Allow"); got != tt.allow {
						t.Fatalf("Allow %q, want %q", got, tt.allow)
					}
					if tt.code == "" {
						if string(body) != tt.body {
							t.Fatalf("body %q, want %q", body, tt.body)
						}
						return
					}
					if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
						t.Fatalf("Content-Type %q, want application/json", ct)
					}
					var e struct {
						Error protocol.ErrorBody `json:"error"`
					}
					if err := json.Unmarshal(body, &e); err != nil || e.Error.Code != tt.code || e.Error.Message == "" {
						t.Fatalf("body %s (%v), want code %q with a message", body, err, tt.code)
					}
				})
			}
		})
	}
}
