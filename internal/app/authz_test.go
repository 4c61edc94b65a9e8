package app

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/liveroom/liveroom/internal/apikey"
	"github.com/liveroom/liveroom/internal/protocol"
	"github.com/liveroom/liveroom/internal/router"
	"github.com/liveroom/liveroom/internal/testutil"
	"github.com/liveroom/liveroom/internal/uplink"
)

// The authorization matrix: every route the serve node's router serves
// (Router.Endpoints, walked below) × every kind of caller → the status
// docs/SECURITY.md documents. A route the router serves without a row here
// fails the test, and so does a row whose route is gone (unless optional).
//
// To add a caller (a column): one line in the caller list below, one line
// in callers' token switch in TestAuthorizationMatrix, and its status in
// every row (a row without it fails the test: 0 is no documented status).
// To add a route: one row.
type caller int

const (
	asNobody      caller = iota // no Authorization header
	asViewer                    // role viewer
	asOtherAnchor               // role anchor, whose rooms claim names another room
	asThisAnchor                // role anchor, whose rooms claim names the room in the path
	asAdmin                     // role admin
	asService                   // the platform's backend: a server API key (lrk_…)
	nCallers
)

var callerNames = [nCallers]string{"no token", "viewer", "another room's anchor", "this room's anchor", "admin", "service key"}

// authzMatrix maps "METHOD pattern" to the status each caller gets, in the
// order of the callers above. The requests are valid in every other way
// (body, ids), so the status is the authorization's: 401 unauthenticated,
// 403 not allowed, and for an allowed caller the route's own answer: 404
// for the made-up gateway, announcement and session ids.
var authzMatrix = map[string][nCallers]int{
	"GET /healthz":                                   {200, 200, 200, 200, 200, 200},
	"GET /metrics":                                   {401, 403, 403, 403, 200, 401},
	"GET /v1/gateways":                               {401, 403, 403, 403, 200, 401},
	"GET /v1/autoscale/decisions":                    {401, 403, 403, 403, 200, 401},
	"GET /v1/dispatch":                               {200, 200, 200, 200, 200, 200},
	"* /v1/dev/token":                                {404, 404, 404, 404, 404, 404}, // dev mode only
	"GET /v1/ws":                                     {401, 101, 101, 101, 101, 401},
	"POST /v1/rooms/{room}/messages":                 {401, 202, 202, 202, 202, 401},
	"GET /v1/rooms/{room}/moderation":                {401, 403, 403, 200, 200, 401},
	"POST /v1/rooms/{room}/moderation":               {401, 403, 403, 200, 200, 401},
	"POST /v1/rooms/{room}/live/start":               {401, 403, 403, 201, 201, 401},
	"POST /v1/rooms/{room}/live/stop":                {401, 403, 403, 200, 200, 401}, // a live session of this room's anchor (liveFirst)
	"GET /v1/rooms/{room}/sessions":                  {200, 200, 200, 200, 200, 200},
	"GET /v1/rooms/{room}/sessions/{session}/replay": {404, 404, 404, 404, 404, 404},
	"POST /v1/admin/gateways/{id}/drain":             {401, 403, 403, 403, 404, 401},
	"GET /v1/admin/stats":                            {401, 403, 403, 403, 200, 401},
	"GET /v1/admin/announcements":                    {401, 403, 403, 403, 200, 401},
	"POST /v1/admin/announcements":                   {401, 403, 403, 403, 201, 401},
	"DELETE /v1/admin/announcements/{id}":            {401, 403, 403, 403, 404, 401},
	"GET /v1/rooms":                                  {200, 200, 200, 200, 200, 200}, // the public live-room list
	// The server API (uplink.ServerRoutes): the backend's key only; every
	// user token is refused (token_not_accepted).
	"POST /v1/server/rooms/{room}/gifts":                {401, 401, 401, 401, 401, 202},
	"POST /v1/server/announcements":                     {401, 401, 401, 401, 401, 200},
	"POST /v1/server/rooms/{room}/users/{user}/notices": {401, 401, 401, 401, 401, 202},
	"POST /v1/server/batch":                             {401, 401, 401, 401, 401, 200},
	"GET /v1/server/rooms/{room}":                       {401, 401, 401, 401, 401, 200},
	"GET /v1/server/rooms":                              {401, 401, 401, 401, 401, 200},
	"GET " + router.PagesPattern:                        {200, 200, 200, 200, 200, 200},
}

// liveFirst are the rows whose room is made live by this room's anchor
// before the call, so that it is the room's recorded anchor and there is a
// session to stop: a refused caller leaves it running.
var liveFirst = map[string]bool{"POST /v1/rooms/{room}/live/stop": true}

// optionalRoutes are matrix rows the default node does not serve:
// GET /v1/autoscale/decisions exists with --autoscale only (its guard is the
// same OperatorRoutes wrapper as /v1/gateways; TestNodeWithAutoscale reads
// it with an admin token).
var optionalRoutes = map[string]bool{"GET /v1/autoscale/decisions": true}

// cellRequest builds the request for one cell: the route's pattern filled
// with room and made-up ids, and a body that is valid, so that only the
// caller decides the answer.
func cellRequest(t *testing.T, base, method, pattern, room string) *http.Request {
	t.Helper()
	path := pattern
	for k, v := range map[string]string{"{room}": room, "{session}": "s-none", "{user}": "mx-fan", router.PagesPattern: "/"} {
		path = strings.ReplaceAll(path, k, v)
	}
	body := ""
	switch {
	case strings.HasPrefix(pattern, "/v1/admin/gateways/"):
		path = strings.ReplaceAll(path, "{id}", "gw-none")
	case strings.HasPrefix(pattern, "/v1/admin/announcements/"):
		path = strings.ReplaceAll(path, "{id}", "an-none")
	}
	switch method + " " + pattern {
	case "POST /v1/rooms/{room}/messages":
		body = `{"type":"danmaku","text":"hello"}`
	case "POST /v1/rooms/{room}/moderation":
		body = `{"action":"slow_mode","interval_s":5}`
	case "POST /v1/server/rooms/{room}/gifts":
		body = `{"user":"mx-fan","gift":"rose","order_id":"ord-` + room + `","amount":100,"currency":"USD"}`
	case "POST /v1/server/announcements":
		body = `{"rooms":["` + room + `"],"text":"hello"}`
	case "POST /v1/server/rooms/{room}/users/{user}/notices":
		body = `{"text":"hello"}`
	case "POST /v1/server/batch":
		body = `{"messages":[{"op":"announce","room":"` + room + `","text":"hello"}]}`
	case "POST /v1/admin/announcements":
		body = `{"room":"` + room + `","viewers":100,"at":"` + time.Now().Add(time.Hour).UTC().Format(time.RFC3339) + `"}`
	case "GET /v1/dispatch":
		path += "?room=" + room
	case "GET /v1/ws":
		path += "?room=" + room
	}
	if strings.Contains(path, "{") {
		t.Fatalf("%s %s: no value for a segment of %s", method, path, pattern)
	}
	if method == "*" {
		method = http.MethodPost
	}
	req, err := http.NewRequest(method, base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if pattern == "/v1/ws" {
		for k, v := range map[string]string{"Upgrade": "websocket", "Connection": "Upgrade",
			"Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version": "13"} {
			req.Header.Set(k, v)
		}
	}
	return req
}

func TestAuthorizationMatrix(t *testing.T) {
	key := apikey.Generate()
	n, _ := serverNode(t, key, nil)
	rt, ok := n.host.Handler().(*router.Router)
	if !ok {
		t.Fatalf("the node's handler is a %T, not a *Router: the matrix cannot list its routes", n.host.Handler())
	}
	served := map[string]bool{}
	for _, ep := range rt.Endpoints() {
		for _, m := range ep.Methods {
			served[m+" "+ep.Pattern] = true
		}
	}
	// The server API is one prefix in the router; its routes are listed
	// by the uplink.
	for _, r := range uplink.ServerRoutes {
		served[r.Method+" "+r.Path] = true
	}
	for key := range served {
		if _, ok := authzMatrix[key]; !ok {
			t.Errorf("route %s has no row in the authorization matrix: add the status each caller gets (docs/SECURITY.md)", key)
		}
	}
	for key, row := range authzMatrix {
		if !served[key] && !optionalRoutes[key] {
			t.Errorf("the matrix has a row for %s, which the node does not serve", key)
		}
		for c, st := range row {
			if st == 0 {
				t.Errorf("%s: no documented status for %s", key, callerNames[c])
			}
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	// Each cell gets its own room, so that no cell sees another's state (a
	// live session, a slow mode); "this room's anchor" holds a token naming
	// that room.
	callerAuth := func(c caller, room string) string {
		switch c {
		case asViewer:
			return testutil.Token(t, "mx-viewer", protocol.RoleViewer)
		case asOtherAnchor:
			return testutil.AnchorToken(t, "mx-other", "mx-elsewhere")
		case asThisAnchor:
			return testutil.AnchorToken(t, "mx-anchor", room)
		case asAdmin:
			return testutil.Token(t, "mx-admin", protocol.RoleAdmin)
		case asService:
			return key
		}
		return ""
	}
	hc := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	keys := make([]string, 0, len(served))
	for k := range served {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	cell := 0
	for _, key := range keys {
		method, pattern, _ := strings.Cut(key, " ")
		for c := range nCallers {
			cell++
			room := "mx" + strconv.Itoa(cell)
			if liveFirst[key] {
				if st := testutil.APICall(t, http.MethodPost, n.URL()+"/v1/rooms/"+room+"/live/start", callerAuth(asThisAnchor, room), "", nil); st != http.StatusCreated {
					t.Fatalf("%s as %s: the anchor's live start answered %d", key, callerNames[c], st)
				}
			}
			req := cellRequest(t, n.URL(), method, pattern, room)
			if tok := callerAuth(c, room); tok != "" {
				req.Header.Set("Authorization", "Bearer "+tok)
			}
			t0 := time.Now()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			resp, err := hc.Do(req.WithContext(ctx))
			if err != nil {
				cancel()
				t.Fatalf("%s as %s: %v", key, callerNames[c], err)
			}
			var b []byte
			if resp.StatusCode != http.StatusSwitchingProtocols {
				b, _ = io.ReadAll(io.LimitReader(resp.Body, 64<<10))
			}
			resp.Body.Close()
			cancel()
			if d := time.Since(t0); d > time.Second {
				t.Logf("%s as %s took %v", key, callerNames[c], d)
			}
			want := authzMatrix[key][c]
			if resp.StatusCode != want {
				t.Errorf("%s as %s: %d %s, want %d", key, callerNames[c], resp.StatusCode, strings.TrimSpace(string(b)), want)
			}
			if resp.StatusCode >= 400 {
				testutil.NoGoInternals(t, fmt.Sprintf("%s as %s", key, callerNames[c]), string(b))
			}
		}
	}
}

// TestInternalAddress: with InternalAddr the operator views are served
// there, without a token, and no longer on the public address, not even to
// an admin; the rest of the API stays on the public address only.
func TestInternalAddress(t *testing.T) {
	n := startNodeWith(t, func(c *Config) { c.InternalAddr = "127.0.0.1:0" })
	if n.InternalURL() == "" {
		t.Fatal("no internal URL")
	}
	status := func(url, token string) int {
		resp, err := testutil.AuthGet(url, token)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	admin := testutil.Token(t, "ops", protocol.RoleAdmin)
	for _, path := range []string{"/v1/gateways", "/metrics"} {
		if st := status(n.InternalURL()+path, ""); st != http.StatusOK {
			t.Errorf("%s on the internal address: %d", path, st)
		}
		if st := status(n.URL()+path, admin); st != http.StatusNotFound {
			t.Errorf("%s on the public address with InternalAddr: %d, want 404", path, st)
		}
	}
	if st := status(n.InternalURL()+"/v1/dispatch?room=a", ""); st != http.StatusNotFound {
		t.Errorf("dispatch on the internal address: %d, want 404", st)
	}
	if st := status(n.URL()+"/v1/dispatch?room=a", ""); st != http.StatusOK {
		t.Errorf("dispatch on the public address: %d", st)
	}
}
