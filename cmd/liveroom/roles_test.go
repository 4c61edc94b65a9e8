package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/liveroom/liveroom/internal/protocol"
)

// roleStub stands for a role's own handler: it answers 200 with the role's
// name, so a test sees which requests reach it.
func roleStub(name string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, name) })
}

func TestRoleHandlers(t *testing.T) {
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
		{"gateway", gatewayHandler(roleStub("gateway")), []tc{
			{"GET", "/v1/ws?room=a", 200, "", "", "gateway"},
			{"HEAD", "/v1/ws", 200, "", "", ""},
			{"DELETE", "/v1/ws", 405, protocol.CodeMethodNotAllowed, "GET, HEAD", ""},
			notFound("GET", "/v1/ws/"),
			notFound("GET", "/v1/dispatch?room=a"),
			notFound("POST", "/v1/rooms/a/messages"),
		}},
		{"uplink", uplinkHandler(roleStub("uplink"), roleStub("moderation"), roleStub("server"), roleStub("rooms")), []tc{
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
		{"dispatch", dispatchHandler(roleStub("dispatch"), roleStub("admin")), []tc{
			{"POST", "/v1/admin/gateways/g1/drain", 200, "", "", "admin"},
			{"GET", "/v1/dispatch?room=a", 200, "", "", "dispatch"},
			{"POST", "/v1/dispatch", 405, protocol.CodeMethodNotAllowed, "GET, HEAD", ""},
			// An operator view: role.serveHTTP serves it, on --internal-addr
			// or behind the admin role (TestArchiveRole, TestDispatchOperatorViews).
			notFound("GET", "/v1/gateways"),
			notFound("GET", "/v1/dispatch/"),
			notFound("GET", "/v1/ws"),
		}},
	}
	c := &http.Client{
		Timeout:       10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	for _, role := range roles {
		t.Run(role.name, func(t *testing.T) {
			srv := httptest.NewServer(role.h)
			defer srv.Close()
			for _, tt := range append(role.cases, common...) {
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

func TestRoleUsage(t *testing.T) {
	for _, tt := range []struct {
		role string
		want []string
	}{
		{"gateway", []string{"usage: liveroom gateway [flags]", "WebSockets (GET /v1/ws)", "example:\n  export LIVEROOM_JWT_SECRET", "liveroom gateway --nats-url", "flags:", "-merge-window"}},
		{"uplink", []string{"usage: liveroom uplink [flags]", "POST /v1/rooms/{room}/messages", "example:", "liveroom uplink --nats-url", "flags:", "-user-rate"}},
		{"dispatch", []string{"usage: liveroom dispatch [flags]", "GET /v1/dispatch?room=R", "example:", "liveroom dispatch --nats-url", "flags:", "-replicas"}},
	} {
		t.Run(tt.role, func(t *testing.T) {
			var out, errOut bytes.Buffer
			if err := run(context.Background(), []string{tt.role, "-h"}, &out, &errOut); err != nil {
				t.Fatal(err)
			}
			got := errOut.String()
			if strings.Contains(got, "Usage of") {
				t.Fatalf("bare flag package usage:\n%s", got)
			}
			for _, w := range tt.want {
				if !strings.Contains(got, w) {
					t.Fatalf("usage does not mention %q:\n%s", w, got)
				}
			}
		})
	}
}
