package web_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/liveroom/liveroom/internal/admin"
	"github.com/liveroom/liveroom/internal/announce"
	"github.com/liveroom/liveroom/internal/app"
	"github.com/liveroom/liveroom/internal/bus"
	"github.com/liveroom/liveroom/internal/gateway"
	"github.com/liveroom/liveroom/internal/protocol"
	"github.com/liveroom/liveroom/internal/testutil"
	"github.com/liveroom/liveroom/internal/uplink"
	"github.com/liveroom/liveroom/internal/web"
)

// startNode starts an all-in-one node. With a secret it verifies tokens
// signed with testutil.Secret (so a second gateway can share its
// verifier); without one it runs in dev mode.
func startNode(t *testing.T, secret string, gcfg gateway.Config) *app.Node {
	t.Helper()
	n, err := app.New(app.Config{Addr: "127.0.0.1:0", DataDir: t.TempDir(), NATSPort: -1, JWTSecret: secret, Gateway: gcfg, Logger: testutil.Logger(),
		// The pages send gifts with users' tokens (as in dev mode).
		Uplink: uplink.Config{ClientGifts: true}})
	if err != nil {
		t.Fatalf("app.New: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := n.Start(ctx); err != nil {
		t.Fatalf("app.Start: %v", err)
	}
	t.Cleanup(func() { _ = n.Close() })
	return n
}

// startGateway starts one more gateway process-in-a-test on the node's NATS
// with its own HTTP listener, as `liveroom gateway` would run beside it.
func startGateway(t *testing.T, n *app.Node, id string, cfg gateway.Config) *gateway.Server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cred, err := n.NATSCredential(bus.RoleGateway, id)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := bus.Connect(n.NATSURL(), "test-"+id, testutil.Logger(), cred.Option())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	cfg.ID, cfg.NC, cfg.JS, cfg.Verifier, cfg.Logger = id, nc, js, testutil.Verifier(t), testutil.Logger()
	cfg.PublicURL = "ws://" + ln.Addr().String() + "/v1/ws"
	g, err := gateway.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: g.Handler(), ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("gateway %s http: %v", id, err)
		}
	}()
	t.Cleanup(func() {
		_ = g.Close()
		_ = srv.Close()
		<-done
	})
	return g
}

// post2 sends one message and returns the HTTP status.
func post2(t *testing.T, base, room, tok string, body map[string]any) int {
	t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest(http.MethodPost, base+"/v1/rooms/"+room+"/messages", bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("post: %v", err)
	}
	res.Body.Close()
	return res.StatusCode
}

// post sends one message to the uplink as a user with token tok and returns
// the message id.
func post(t *testing.T, base, room, tok string, body map[string]any) string {
	t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest(http.MethodPost, base+"/v1/rooms/"+room+"/messages", bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	if body["type"] == "gift" {
		var k [16]byte
		_, _ = rand.Read(k[:])
		req.Header.Set("Idempotency-Key", hex.EncodeToString(k[:]))
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("post: %v", err)
	}
	defer res.Body.Close()
	var ans struct {
		ID string `json:"id"`
	}
	_ = json.NewDecoder(res.Body).Decode(&ans)
	if res.StatusCode != http.StatusAccepted {
		t.Fatalf("post %v: status %d", body, res.StatusCode)
	}
	return ans.ID
}

// TestDashboardShowsNewGateway opens the dashboard on a dev-mode node, signs
// in with the "dev admin token" button, and checks a gateway started
// afterwards is listed within a few seconds.
func TestDashboardShowsNewGateway(t *testing.T) {
	browser := newBrowser(t)
	n := startNode(t, "", gateway.Config{})
	d := newTab(t, browser, "dashboard")
	d.do(chromedp.EmulateViewport(1440, 1000))
	d.do(chromedp.Navigate(n.URL() + "/admin"))
	d.waitJS(5*time.Second, `window.lrAdmin && window.lrAdmin.state === 'signed-out' && !document.getElementById('signin').hidden`, "the sign-in panel")
	d.do(chromedp.Click(chromedp.ID("dev-token")))
	first := n.Gateway().ID()
	d.waitJS(10*time.Second, `window.lrAdmin.state === 'live' && window.lrAdmin.gateways.includes(`+jsString(first)+`)`, "the node's gateway listed")
	if tok := eval[string](d, `sessionStorage.getItem('liveroom.adminToken') || ''`); tok == "" || strings.Contains(eval[string](d, `location.href`), tok) {
		t.Errorf("admin token not in sessionStorage, or in the URL")
	}
	d.waitJS(10*time.Second, `window.lrAdmin.autoscale === 'absent' && document.getElementById('as-list').textContent.includes('not running')`, "autoscaler not running")

	startGateway(t, n, "gw-second", gateway.Config{})
	started := time.Now()
	d.waitJS(5*time.Second, `document.querySelector('#gw-body tr[data-gateway="gw-second"] .badge') && document.querySelector('#gw-body tr[data-gateway="gw-second"] .badge').textContent === 'active'`, "the second gateway in the table")
	t.Logf("second gateway shown %v after it started", time.Since(started).Round(10*time.Millisecond))
	if n := eval[int](d, `document.querySelectorAll('#gw-body tr[data-gateway]').length`); n != 2 {
		t.Errorf("%d gateway rows, want 2", n)
	}
	if got := eval[string](d, `document.getElementById('t-gateways').textContent`); got != "2" {
		t.Errorf("gateway tile shows %q", got)
	}

	// Forgetting the token signs out; a viewer token is refused with the
	// server's own message.
	d.do(chromedp.Click(chromedp.ID("signout")))
	d.waitJS(2*time.Second, `window.lrAdmin.state === 'signed-out' && !document.getElementById('signin').hidden`, "signed out")
	d.checkClean()
}

// TestDashboardDrainKeepsViewerLive runs a node and a second gateway, puts a
// viewer page in a room, and drains the viewer's gateway by clicking the
// dashboard's drain button: the viewer moves to the other gateway, stays
// live, and gets every gift sent before, during and after the move exactly
// once, and comments after it. It also saves the dashboard screenshot.
func TestDashboardDrainKeepsViewerLive(t *testing.T) {
	browser := newBrowser(t)
	drainCfg := gateway.Config{DrainDelay: 300 * time.Millisecond, DrainWindow: time.Second, DrainGrace: 2 * time.Second}
	n := startNode(t, testutil.Secret, drainCfg)
	startGateway(t, n, "gw-two", drainCfg)
	base := n.URL()
	const room = "drain-room"
	viewerTok := testutil.Token(t, "viewer-1", protocol.RoleViewer)
	senderTok := testutil.Token(t, "sender-1", protocol.RoleViewer)

	viewer := newTab(t, browser, "viewer")
	viewer.do(chromedp.EmulateViewport(1280, 800))
	viewer.do(chromedp.Navigate(base + "/room/" + room + "?token=" + viewerTok))
	viewer.waitJS(15*time.Second, `window.liveroom.state === 'live'`, "viewer live")
	from := viewer.state().Gateway

	dash := newTab(t, browser, "dashboard")
	dash.do(chromedp.EmulateViewport(1440, 1180))
	dash.do(chromedp.Navigate(base + "/admin"))
	dash.do(chromedp.SendKeys(chromedp.ID("token"), testutil.Token(t, "op", protocol.RoleAdmin)+kb.Enter))
	dash.waitJS(10*time.Second, `window.lrAdmin.state === 'live' && window.lrAdmin.gateways.length === 2`, "both gateways listed")
	dash.waitJS(10*time.Second, `document.querySelector('#rooms-body tr[data-room="`+room+`"]')`, "the viewer's room in the top rooms")

	var gifts []string
	gift := func() {
		gifts = append(gifts, post(t, base, room, senderTok, map[string]any{"type": "gift", "gift": "rose", "count": 1}))
	}
	gift()
	viewer.waitJS(10*time.Second, `window.liveroom.gifts.length === 1`, "the first gift")

	// Drain the viewer's gateway: one click arms the button, the second
	// confirms. Gifts keep coming during the move.
	btn := `#gw-body button.drain[data-gateway="` + from + `"]`
	dash.do(chromedp.Click(chromedp.CSS(btn)))
	if got := eval[string](dash, `document.querySelector('`+btn+`').textContent`); got != "Confirm drain" {
		t.Fatalf("drain button after one click says %q", got)
	}
	dash.do(chromedp.Click(chromedp.CSS(btn)))
	dash.waitJS(5*time.Second, `window.lrAdmin.states[`+jsString(from)+`] === 'draining' && document.querySelector('#gw-body tr[data-gateway="`+from+`"] .badge').textContent === 'draining'`, "the gateway shown draining")
	if s := eval[string](dash, `JSON.stringify(window.lrAdmin.lastDrain)`); !strings.Contains(s, `"status":202`) {
		t.Errorf("drain answer: %s", s)
	}
	deadline := time.Now().Add(20 * time.Second)
	moved := false
	for time.Now().Before(deadline) {
		gift()
		time.Sleep(250 * time.Millisecond)
		if s := viewer.state(); s.State == "live" && s.Gateway != "" && s.Gateway != from {
			moved = true
			break
		}
	}
	if !moved {
		t.Fatalf("viewer did not move off %s: %s", from, viewer.snapshot())
	}
	gift()
	want := fmt.Sprintf("window.liveroom.gifts.length >= %d", len(gifts))
	viewer.waitJS(15*time.Second, `window.liveroom.state === 'live' && `+want, "every gift after the move")
	s := viewer.state()
	checkOnce(t, "viewer", s.Gifts)
	if strings.Join(s.Gifts, ",") != strings.Join(gifts, ",") {
		t.Errorf("viewer gifts %v, want %v in order", s.Gifts, gifts)
	}
	if n := eval[int](viewer, `document.querySelectorAll('#ticker li').length`); n != len(gifts) {
		t.Errorf("%d ticker entries for %d gifts", n, len(gifts))
	}
	// And the live class still flows on the new gateway.
	id := post(t, base, room, senderTok, map[string]any{"type": "danmaku", "text": "still here after the drain"})
	viewer.waitJS(10*time.Second, `window.liveroom.seen.includes(`+jsString(id)+`)`, "a comment after the move")
	t.Logf("viewer moved %s → %s with %d gifts", from, s.Gateway, len(gifts))

	// Some traffic for the charts, then the screenshot.
	for i := range 20 {
		tok := testutil.Token(t, fmt.Sprintf("chatter-%d", i%5), protocol.RoleViewer)
		post(t, base, room, tok, map[string]any{"type": "danmaku", "text": fmt.Sprintf("comment %d", i)})
		time.Sleep(250 * time.Millisecond)
	}
	dash.waitJS(5*time.Second, `window.lrAdmin.polls >= 5`, "a few polls")

	// Moderation from the top rooms' "Moderate" button: a mute without a
	// user shows the server's JSON error message; with one it is applied and
	// listed in the room's state.
	dash.do(chromedp.Click(chromedp.CSS(`#rooms-body button[data-room="` + room + `"]`)))
	dash.waitJS(2*time.Second, `document.getElementById('mod-room').value === `+jsString(room), "room filled in")
	dash.do(chromedp.Click(chromedp.CSS(`#mod-form button[type="submit"]`)))
	dash.waitJS(5*time.Second, `window.lrAdmin.lastModeration && window.lrAdmin.lastModeration.status === 400`, "the refused mute")
	if msg, res := eval[string](dash, `window.lrAdmin.lastModeration.message`), eval[string](dash, `document.getElementById('mod-result').textContent`); msg == "" || !strings.Contains(res, msg) {
		t.Errorf("the panel shows %q for the error %q", res, msg)
	}
	dash.do(chromedp.SendKeys(chromedp.ID("mod-user"), "sender-1"))
	dash.do(chromedp.SendKeys(chromedp.ID("mod-reason"), "spam"))
	dash.do(chromedp.Click(chromedp.CSS(`#mod-form button[type="submit"]`)))
	dash.waitJS(5*time.Second, `window.lrAdmin.lastModeration.status === 200`, "the mute applied")
	dash.waitJS(5*time.Second, `document.getElementById('mod-state').textContent.includes('sender-1')`, "the mute listed in the room's state")
	if got := post2(t, base, room, senderTok, map[string]any{"type": "danmaku", "text": "am I muted?"}); got != http.StatusForbidden {
		t.Errorf("a muted sender's comment answered %d, want 403", got)
	}
	eval[bool](dash, `(document.activeElement && document.activeElement.blur(), document.getElementById('toast').hidden = true, true)`)
	dash.do(chromedp.Sleep(300 * time.Millisecond))
	dash.screenshot("admin.png")
	viewer.checkClean()
	dash.checkClean()
}

// TestDashboardAgainstFakeAPI drives the dashboard against canned answers
// for what the real system does not readily produce: a running autoscaler
// with decisions, a stats endpoint that fails, a token that stops working.
func TestDashboardAgainstFakeAPI(t *testing.T) {
	browser := newBrowser(t)
	now := time.Now()
	var revoked atomic.Bool
	var statsStatus atomic.Int32
	statsStatus.Store(http.StatusOK)
	var annMu sync.Mutex
	anns := []announce.Announcement{{ID: "an-final", Room: "star", Viewers: 50000, At: now.Add(time.Hour), Until: now.Add(3 * time.Hour), Note: "cup final"}}
	mux := http.NewServeMux()
	mux.Handle("/", web.Handler())
	mux.HandleFunc("GET /v1/admin/stats", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer fake-admin" || revoked.Load() {
			protocol.WriteError(w, protocol.Errorf(http.StatusUnauthorized, protocol.CodeUnauthorized, "", "token expired"))
			return
		}
		switch st := int(statsStatus.Load()); st {
		case http.StatusOK:
			stats := admin.ComputeStats([]bus.Beat{
				{ID: "gw-a", State: bus.StateActive, Started: now.Add(-time.Hour).UnixMilli(), Conns: 1500, MaxConns: 19000, Load: 0.62, CPU: 1.2, RSS: 300 << 20,
					MsgsOut: 4200, DelayP50MS: 12, DelayP99MS: 48, RoomConns: map[string]int{"lobby": 1200, "music": 300}},
			}, time.Now())
			annMu.Lock()
			stats.Announcements = append(stats.Announcements, anns...)
			annMu.Unlock()
			protocol.WriteJSON(w, st, stats)
		default:
			protocol.WriteError(w, protocol.Errorf(st, protocol.CodeInternal, "", "stats are broken"))
		}
	})
	mux.HandleFunc("GET /v1/autoscale/decisions", func(w http.ResponseWriter, r *http.Request) {
		at := func(d time.Duration) string { return now.Add(-d).UTC().Format(time.RFC3339Nano) }
		fmt.Fprintf(w, `{"policy":{"min":1,"max":6,"ready_time_s":8,"actuator":"process"},
			"latest":{"at":%q,"action":"none","reason":"steady","current":3,"desired":3},
			"decisions":[{"at":%q,"action":"scale_in","reason":"conns","current":4,"desired":3,"remove":"gw-d","why":"demand 1,500 conns needs 2 at 13,300 per gateway; + 1 spare = 3; current 4 → drain and remove gw-d"},
			{"at":%q,"action":"scale_out","reason":"join_rate","current":2,"desired":4,"add":2}]}`, at(0), at(2*time.Minute), at(6*time.Minute))
	})
	// Announcements: one scheduled; the page announces another and deletes
	// the first.
	var posted announce.Request
	mux.HandleFunc("POST /v1/admin/announcements", func(w http.ResponseWriter, r *http.Request) {
		if err := json.NewDecoder(r.Body).Decode(&posted); err != nil || r.Header.Get("Authorization") != "Bearer fake-admin" {
			protocol.WriteError(w, protocol.Errorf(400, protocol.CodeInvalidJSON, "", "bad"))
			return
		}
		a, err := posted.Build(time.Now(), "op")
		if err != nil {
			protocol.WriteError(w, err)
			return
		}
		annMu.Lock()
		anns = append(anns, a)
		annMu.Unlock()
		protocol.WriteJSON(w, http.StatusCreated, a)
	})
	mux.HandleFunc("DELETE /v1/admin/announcements/{id}", func(w http.ResponseWriter, r *http.Request) {
		annMu.Lock()
		defer annMu.Unlock()
		for i, a := range anns {
			if a.ID == r.PathValue("id") {
				anns = append(anns[:i], anns[i+1:]...)
				w.WriteHeader(http.StatusNoContent)
				return
			}
		}
		protocol.WriteError(w, protocol.Errorf(404, protocol.CodeNotFound, "id", "no such announcement"))
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	d := newTab(t, browser, "fake-dashboard")
	d.do(chromedp.EmulateViewport(1280, 900))
	d.do(chromedp.Navigate(srv.URL + "/admin"))
	// A token with another role is refused before it is used.
	d.do(chromedp.SendKeys(chromedp.ID("token"), fakeToken("v", "V")+kb.Enter))
	d.waitJS(2*time.Second, `!document.getElementById('signin-error').hidden && document.getElementById('signin-error').textContent.includes('role admin')`, "a viewer token refused")
	eval[bool](d, `(document.getElementById('token').value = '', true)`)
	d.do(chromedp.SendKeys(chromedp.ID("token"), "fake-admin"+kb.Enter))
	d.waitJS(5*time.Second, `window.lrAdmin.state === 'live' && window.lrAdmin.gateways.join() === 'gw-a'`, "live with the fake fleet")
	if got := eval[string](d, `document.getElementById('t-delay').textContent + '|' + document.getElementById('t-conns').textContent`); got != "12 ms / 48 ms|1,500" {
		t.Errorf("tiles show %q", got)
	}
	if got := eval[string](d, `document.querySelector('#gw-body tr[data-gateway="gw-a"] .bar-label').textContent`); got != "62%" {
		t.Errorf("load shows %q", got)
	}
	if got := eval[string](d, `[...document.querySelectorAll('#rooms-body tr')].map(r => r.dataset.room).join()`); got != "lobby,music" {
		t.Errorf("top rooms %q", got)
	}
	// The charts are drawn: the messages chart has pixels of its colour.
	d.waitJS(5*time.Second, `window.lrAdmin.polls >= 2`, "two polls")
	if !eval[bool](d, `(() => { const c = document.getElementById('c-msgs'); const p = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
		for (let i = 0; i < p.length; i += 4) if (p[i] > 200 && p[i+1] < 100 && p[i+3] > 200) return true; return false; })()`) {
		t.Error("the messages chart drew no line")
	}
	// Autoscaler: one marker per action on the timeline, the decisions listed.
	d.waitJS(5*time.Second, `window.lrAdmin.autoscale === 'running'`, "autoscaler running")
	if got := eval[string](d, `document.querySelectorAll('#as-timeline .tl-out').length + '/' + document.querySelectorAll('#as-timeline .tl-in').length + '/' + document.querySelectorAll('#as-list li').length`); got != "1/1/2" {
		t.Errorf("timeline out/in markers and list items: %s", got)
	}
	if got := eval[string](d, `document.getElementById('as-list').textContent`); !strings.Contains(got, "scale out +2") || !strings.Contains(got, "scale in −gw-d") {
		t.Errorf("decisions list %q", got)
	}
	// Announced audiences, next to the fleet: listed, announced from the
	// form, deleted.
	if got := eval[string](d, `[...document.querySelectorAll('#ann-body tr')].map(r => r.dataset.id + ':' + r.textContent).join('|')`); !strings.Contains(got, "an-final:star50,000") || !strings.Contains(got, "cup final") {
		t.Errorf("announcements shown %q", got)
	}
	eval[bool](d, `(() => { document.getElementById('ann-room').value = 'concert'; document.getElementById('ann-viewers').value = '8000';
		document.getElementById('ann-minutes').value = '90'; return true; })()`)
	d.do(chromedp.Click(chromedp.CSS(`#ann-form button[type="submit"]`)))
	d.waitJS(5*time.Second, `window.lrAdmin.announcements.length === 2 && document.getElementById('ann-result').textContent.startsWith('Announced: 8,000 viewers in concert')`, "the new announcement listed")
	annMu.Lock()
	if posted.Room != "concert" || posted.Viewers != 8000 || posted.Until.Sub(posted.At) != 90*time.Minute || !posted.At.After(now) {
		t.Errorf("posted %+v", posted)
	}
	annMu.Unlock()
	d.do(chromedp.Click(chromedp.CSS(`#ann-body button[data-id="an-final"]`)))
	d.waitJS(5*time.Second, `window.lrAdmin.announcements.join() !== '' && !window.lrAdmin.announcements.includes('an-final')`, "the first announcement deleted")
	// Each decision says why.
	if got := eval[string](d, `document.querySelector('#as-list .why') ? document.querySelector('#as-list .why').textContent : ''`); !strings.Contains(got, "1 spare") {
		t.Errorf("decision why %q", got)
	}
	// A failing stats endpoint shows its message and recovers on its own.
	statsStatus.Store(http.StatusInternalServerError)
	d.waitJS(5*time.Second, `window.lrAdmin.state === 'error' && document.getElementById('poll-label').textContent.includes('stats are broken')`, "the error shown")
	statsStatus.Store(http.StatusOK)
	d.waitJS(5*time.Second, `window.lrAdmin.state === 'live'`, "live again")
	// Keyboard: the drain button is reachable and arms with Enter.
	d.do(chromedp.Focus(chromedp.CSS(`button.drain[data-gateway="gw-a"]`)), chromedp.KeyEvent(kb.Enter))
	d.waitJS(2*time.Second, `document.activeElement.classList.contains('armed') && document.activeElement.getAttribute('aria-label').startsWith('Confirm')`, "the drain button armed by keyboard")
	// A token the server stops accepting signs the page out, with the
	// server's message, and is forgotten.
	revoked.Store(true)
	d.waitJS(5*time.Second, `window.lrAdmin.state === 'signed-out' && document.getElementById('signin-error').textContent.includes('token expired')`, "signed out after a 401")
	if tok := eval[string](d, `sessionStorage.getItem('liveroom.adminToken') || ''`); tok != "" {
		t.Errorf("refused token still stored: %q", tok)
	}
	d.checkClean()
}

// TestDashboardWarnsBeforeDrainingTheLastGateway: draining the only active
// gateway takes a third click, after a warning that names the consequence;
// with another active gateway two clicks drain, with no warning.
func TestDashboardWarnsBeforeDrainingTheLastGateway(t *testing.T) {
	browser := newBrowser(t)
	n := startNode(t, testutil.Secret, gateway.Config{DrainDelay: time.Hour})
	only := n.Gateway().ID()
	viewer := newTab(t, browser, "viewer")
	viewer.do(chromedp.Navigate(n.URL() + "/room/lonely?token=" + testutil.Token(t, "v1", protocol.RoleViewer)))
	viewer.waitJS(15*time.Second, `window.liveroom.state === 'live'`, "viewer live")

	d := newTab(t, browser, "dashboard")
	d.do(chromedp.EmulateViewport(1440, 1000))
	d.do(chromedp.Navigate(n.URL() + "/admin"))
	d.do(chromedp.SendKeys(chromedp.ID("token"), testutil.Token(t, "op", protocol.RoleAdmin)+kb.Enter))
	d.waitJS(10*time.Second, `window.lrAdmin.state === 'live' && window.lrAdmin.gateways.join() === `+jsString(only)+` && window.lrAdmin.conns[`+jsString(only)+`] === 1`, "the one gateway with its viewer")
	btn := `#gw-body button.drain[data-gateway="` + only + `"]`
	d.do(chromedp.Click(chromedp.CSS(btn)))
	if got := eval[string](d, `document.querySelector('`+btn+`').textContent`); got != "Confirm drain" {
		t.Fatalf("after one click the button says %q", got)
	}
	d.do(chromedp.Click(chromedp.CSS(btn)))
	d.waitJS(2*time.Second, `!document.getElementById('gw-warning').hidden`, "the warning")
	warning := eval[string](d, `document.getElementById('gw-warning').textContent`)
	for _, want := range []string{"No other active gateway", "draining " + only + " leaves its 1 viewer", "no gateway is available", "Drain anyway"} {
		if !strings.Contains(warning, want) {
			t.Errorf("warning %q does not say %q", warning, want)
		}
	}
	if got := eval[string](d, `document.querySelector('`+btn+`').textContent + '|' + JSON.stringify(window.lrAdmin.lastDrain)`); got != "Drain anyway|null" {
		t.Errorf("after the second click: %s, want the button asking again and no drain", got)
	}
	time.Sleep(1500 * time.Millisecond) // a poll or two: still active
	if st := eval[string](d, `window.lrAdmin.states[`+jsString(only)+`]`); st != "active" {
		t.Fatalf("gateway %s after the warning, want still active", st)
	}
	d.do(chromedp.Click(chromedp.CSS(btn)))
	d.waitJS(5*time.Second, `window.lrAdmin.lastDrain && window.lrAdmin.lastDrain.status === 202 && window.lrAdmin.states[`+jsString(only)+`] === 'draining' && document.getElementById('gw-warning').hidden`, "drained after the third click")
	if got := eval[string](d, `document.getElementById('toast').textContent`); !strings.Contains(got, "nowhere to go") {
		t.Errorf("toast after draining the last gateway: %q", got)
	}

	// With another active gateway: two clicks drain, no warning.
	startGateway(t, n, "gw-other", gateway.Config{DrainDelay: time.Hour})
	d.waitJS(10*time.Second, `window.lrAdmin.states['gw-other'] === 'active'`, "the second gateway")
	other := `#gw-body button.drain[data-gateway="gw-other"]`
	// The first gateway drains, so gw-other is the last active one again:
	// start a third to drain gw-other with somewhere to go.
	startGateway(t, n, "gw-third", gateway.Config{})
	d.waitJS(10*time.Second, `window.lrAdmin.states['gw-third'] === 'active'`, "the third gateway")
	d.do(chromedp.Click(chromedp.CSS(other)))
	d.do(chromedp.Click(chromedp.CSS(other)))
	d.waitJS(5*time.Second, `window.lrAdmin.lastDrain.gateway === 'gw-other' && window.lrAdmin.lastDrain.status === 202`, "gw-other drained with two clicks")
	if !eval[bool](d, `document.getElementById('gw-warning').hidden`) {
		t.Error("a warning when another gateway was active")
	}
	viewer.checkClean()
	d.checkClean()
}
