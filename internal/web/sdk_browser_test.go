package web_test

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/liveroom/liveroom/internal/protocol"
	"github.com/liveroom/liveroom/internal/web"
)

// TestServedSDKIsThePackage: the pages load the SDK from the server, and
// what the server sends is the npm package's file, byte for byte.
func TestServedSDKIsThePackage(t *testing.T) {
	want, err := os.ReadFile("../../sdk/js/liveroom.js")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(web.Handler())
	defer srv.Close()
	res, err := http.Get(srv.URL + "/static/liveroom.js")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	got, _ := io.ReadAll(res.Body)
	if res.StatusCode != 200 || res.Header.Get("Content-Type") != "text/javascript; charset=utf-8" || string(got) != string(want) {
		t.Errorf("GET /static/liveroom.js: %d %q, %d bytes; want 200 text/javascript with the %d bytes of sdk/js/liveroom.js",
			res.StatusCode, res.Header.Get("Content-Type"), len(got), len(want))
	}
	// Every page that talks to the server imports it, relative to itself.
	for _, page := range []string{"room.js", "admin.js", "replay.js"} {
		res, err := http.Get(srv.URL + "/static/" + page)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if !strings.Contains(string(b), "from './liveroom.js';") {
			t.Errorf("%s does not import the SDK", page)
		}
	}
}

// sdkEvents is what the test page records of the SDK's events.
type sdkEvents struct {
	States     []string   `json:"states"`
	History    [][]string `json:"history"`
	Gifts      []string   `json:"gifts"`
	Danmaku    []string   `json:"danmaku"`
	Reconnects []int      `json:"reconnects"`
	Errors     []string   `json:"errors"`
	Welcomes   []struct {
		Seq     uint64 `json:"seq"`
		Resumed bool   `json:"resumed"`
		History int    `json:"history"`
	} `json:"welcomes"`
	LastSeq      uint64 `json:"lastSeq"`
	Waits        int    `json:"waits"`
	SilentLeaves int    `json:"silentLeaves"`
	Duplicates   int    `json:"duplicates"`
}

// TestSDKInBrowser drives the SDK module itself (imported from
// /static/liveroom.js, as a web app would) in Chromium against the fake
// dispatch and gateway: a wait answer shown as joining, a first join with a
// history frame that does not move the position, de-duplication across
// history, live and overlapping replays, a drain (reconnect frame) and a
// dropped socket resumed with since=, heartbeats ignored and a silent
// gateway left.
func TestSDKInBrowser(t *testing.T) {
	browser := newBrowser(t)
	f := newFakeServer(t)
	f.waits = 1
	g1, g2 := f.addGift("rose", "Ann"), f.addGift("car", "Bo")
	now := time.Now().UnixMilli()
	f.history = []protocol.Message{
		{ID: "dm-h1", Type: protocol.TypeDanmaku, User: "ann", Name: "Ann", TS: now - 3000, Text: "earlier"},
		g1,
		{ID: "dm-h2", Type: protocol.TypeDanmaku, User: "bo", Name: "Bo", TS: now - 1000, Text: "just now"},
		g2,
	}
	b := newTab(t, browser, "sdk")
	b.do(chromedp.Navigate(f.srv.URL + "/"))
	eval[bool](b, `(() => {
		window.__ev = { states: [], history: [], gifts: [], danmaku: [], reconnects: [], errors: [], welcomes: [] };
		import('/static/liveroom.js').then((sdk) => {
			const ev = window.__ev;
			const r = window.__room = sdk.connect({ room: 'sdk-room', token: 'tok-1' });
			r.on('state', (s) => ev.states.push(s.state + (s.detail ? ':' + s.detail : '')));
			r.on('welcome', (w) => ev.welcomes.push({ seq: w.seq, resumed: w.resumed, history: w.history || 0 }));
			r.on('history', (h) => ev.history.push(h.msgs.map((m) => m.id + (m.past ? '+past' : ''))));
			r.on('gift', (m) => ev.gifts.push(m.id));
			r.on('danmaku', (m) => ev.danmaku.push(m.id));
			r.on('reconnect', (x) => ev.reconnects.push(x.after_ms));
			r.on('error', (e) => ev.errors.push(e.error.code));
		});
		return true;
	})()`)
	events := func() sdkEvents {
		t.Helper()
		var e sdkEvents
		js := `JSON.stringify(Object.assign({}, window.__ev, window.__room ? { lastSeq: window.__room.lastSeq, waits: window.__room.stats.waits,
			silentLeaves: window.__room.stats.silentLeaves, duplicates: window.__room.stats.duplicates } : {}))`
		if err := json.Unmarshal([]byte(eval[string](b, js)), &e); err != nil {
			t.Fatal(err)
		}
		return e
	}
	waitFor := func(what, expr string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !eval[bool](b, "!!("+expr+")") {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s (%s); events %+v", what, expr, events())
			}
			time.Sleep(25 * time.Millisecond)
		}
	}

	// A wait answer, then the first join: no since anywhere, the history
	// frame as one event, marked past, the position at the welcome's seq.
	q := f.nextDial(t)
	waitFor("live", `window.__room && window.__room.state === 'live' && window.__ev.history.length === 1`)
	e := events()
	if q.Has("since") || q.Get("token") != "tok-1" || q.Get("room") != "sdk-room" {
		t.Errorf("first dial %v", q)
	}
	if got := strings.Join(e.States, ","); got != "connecting,joining:the room is filling up,live" || e.Waits != 1 {
		t.Errorf("states %s (waits %d), want connecting, joining, live", got, e.Waits)
	}
	f.mu.Lock()
	if len(f.dispatches) != 2 || f.dispatches[0].Has("attempt") || f.dispatches[1].Get("attempt") != "1" || f.dispatches[1].Has("since") {
		t.Errorf("dispatch requests %v, want none then attempt=1, without since", f.dispatches)
	}
	f.mu.Unlock()
	if got := strings.Join(e.History[0], ","); got != "dm-h1+past,gift-1+past,dm-h2+past,gift-2+past" {
		t.Errorf("history event %s", got)
	}
	if len(e.Welcomes) != 1 || e.Welcomes[0].Seq != 2 || e.Welcomes[0].Resumed || e.Welcomes[0].History != 4 {
		t.Errorf("welcomes %+v", e.Welcomes)
	}
	if e.LastSeq != 2 || len(e.Gifts) != 0 || len(e.Danmaku) != 0 {
		t.Errorf("after history: lastSeq %d, gifts %v, danmaku %v; history must neither move the position nor come as live events", e.LastSeq, e.Gifts, e.Danmaku)
	}

	// Live: history ids and old seqs again are dropped, new ones delivered once.
	g3 := f.addGift("rocket", "Cy")
	f.batch(f.history[0], g1, g3, protocol.Message{ID: "dm-live", Type: protocol.TypeDanmaku, Text: "live"})
	f.batch(g3, protocol.Message{ID: "dm-live", Type: protocol.TypeDanmaku, Text: "live"}, protocol.Message{ID: "dm-mark", Type: protocol.TypeDanmaku, Text: "marker"})
	waitFor("the marker", `window.__ev.danmaku.includes('dm-mark')`)
	if e := events(); strings.Join(e.Gifts, ",") != "gift-3" || strings.Join(e.Danmaku, ",") != "dm-live,dm-mark" || e.LastSeq != 3 || e.Duplicates != 4 {
		t.Errorf("after live duplicates: gifts %v danmaku %v lastSeq %d duplicates %d; want gift-3, dm-live,dm-mark, 3, 4", e.Gifts, e.Danmaku, e.LastSeq, e.Duplicates)
	}

	// A drain: after_ms waited (moving, not an error), then dispatch and the
	// gateway with since=3; the overlapping replay (gift-3) is dropped.
	f.broadcast(protocol.Reconnect{Type: protocol.FrameReconnect, AfterMS: 300, Reason: "draining"})
	waitFor("moving", `window.__room.state === 'reconnecting' && window.__room.detail === 'moving to another server'`)
	if q := f.nextDial(t); q.Get("since") != "3" {
		t.Errorf("dial after the drain since=%q, want 3", q.Get("since"))
	}
	waitFor("live after the move", `window.__room.state === 'live' && window.__ev.welcomes.length === 2`)
	f.mu.Lock()
	if dq := f.dispatches[len(f.dispatches)-1]; dq.Get("since") != "3" || dq.Has("attempt") {
		t.Errorf("dispatch on a move %v, want since=3 without attempt", dq)
	}
	f.mu.Unlock()
	if e := events(); len(e.Reconnects) != 1 || e.Reconnects[0] != 300 || !e.Welcomes[1].Resumed || e.Welcomes[1].History != 0 || len(e.Errors) != 0 || strings.Join(e.Gifts, ",") != "gift-3" {
		t.Errorf("after the move: %+v", e)
	}

	// A dropped socket: a gift stored but not pushed comes by replay, once.
	f.addGift("castle", "Di")
	f.closeAll()
	if q := f.nextDial(t); q.Get("since") != "3" {
		t.Errorf("dial after the drop since=%q, want 3", q.Get("since"))
	}
	waitFor("gift-4 replayed", `window.__room.state === 'live' && window.__ev.gifts.includes('gift-4')`)
	if e := events(); strings.Join(e.Gifts, ",") != "gift-3,gift-4" || e.LastSeq != 4 {
		t.Errorf("after the drop: gifts %v lastSeq %d", e.Gifts, e.LastSeq)
	}

	// Liveness: a gateway promising hb_ms 200 keeps the SDK while its
	// heartbeats come, and is left at once when they stop.
	f.mu.Lock()
	f.hbMS = 200
	f.mu.Unlock()
	f.closeAll()
	f.nextDial(t)
	f.mu.Lock()
	f.hbMS = 0 // the next gateway promises nothing: it must not be left
	f.mu.Unlock()
	for range 8 {
		f.broadcast([]byte(`{"type":"hb"}`))
		time.Sleep(100 * time.Millisecond)
	}
	if e := events(); e.SilentLeaves != 0 || len(e.Errors) != 0 {
		t.Fatalf("left a gateway that kept sending heartbeats: %+v", e)
	}
	f.addGift("heart", "Ed") // stored while the gateway is silent
	if q := f.nextDial(t); q.Get("since") != "4" {
		t.Errorf("dial after the silence since=%q, want 4", q.Get("since"))
	}
	waitFor("gift-5 after the silence", `window.__room.state === 'live' && window.__ev.gifts.includes('gift-5')`)
	e = events()
	if e.SilentLeaves != 1 || !strings.Contains(strings.Join(e.States, ","), "reconnecting:the server stopped answering") {
		t.Errorf("silentLeaves %d, states %v", e.SilentLeaves, e.States)
	}
	if strings.Join(e.Gifts, ",") != "gift-3,gift-4,gift-5" || len(e.History) != 1 {
		t.Errorf("gifts %v, history events %d", e.Gifts, len(e.History))
	}
	b.checkClean()
}

// TestRoomPageShowsHistory: a late joiner's page shows the history frame's
// comments and gifts (gifts in the ticker, marked past, without the gift
// animation), keeps its position at the welcome's seq, and shows nothing
// of it twice when the same messages come live.
func TestRoomPageShowsHistory(t *testing.T) {
	browser := newBrowser(t)
	f := newFakeServer(t)
	g1 := f.addGift("rocket", "Ann")
	f.history = []protocol.Message{
		{ID: "dm-h1", Type: protocol.TypeDanmaku, User: "ann", Name: "Ann", TS: time.Now().UnixMilli(), Text: "you missed this"},
		g1,
	}
	b := newTab(t, browser, "late")
	b.do(chromedp.Navigate(f.srv.URL + "/room/fake-room"))
	b.waitJS(10*time.Second, `window.liveroom.state === 'live' && window.liveroom.history.length === 2`, "history shown")
	if got := eval[string](b, `document.querySelector('#ticker li.past') ? document.querySelector('#ticker li.past').textContent : ''`); !strings.Contains(got, "Ann sent a Rocket") {
		t.Errorf("ticker past entry %q", got)
	}
	if got := eval[string](b, `document.getElementById('comment-log').textContent`); !strings.Contains(got, "Ann: you missed this") {
		t.Errorf("comment list %q", got)
	}
	if n := eval[int](b, `document.querySelectorAll('#gift-flash .flash').length + document.querySelectorAll('#gift-big svg').length`); n != 0 {
		t.Errorf("a past gift was animated (%d elements)", n)
	}
	if s := b.state(); s.LastSeq != 1 || len(s.Gifts) != 0 {
		t.Errorf("after history: lastSeq %d, live gifts %v", s.LastSeq, s.Gifts)
	}
	f.batch(g1, f.history[0], protocol.Message{ID: "dm-mark", Type: protocol.TypeDanmaku, Text: "marker"})
	b.waitJS(5*time.Second, `window.liveroom.seen.includes('dm-mark')`, "the marker")
	s := b.state()
	if len(s.Gifts) != 0 || countOf(s.Seen, "dm-h1") != 0 {
		t.Errorf("history shown again live: gifts %v, seen %v", s.Gifts, s.Seen)
	}
	if n := eval[int](b, `document.querySelectorAll('#ticker li').length`); n != 1 {
		t.Errorf("%d ticker entries, want the one past gift", n)
	}
	b.checkClean()
}

// TestSDKHedgesAHungGateway: dispatch lists first a gateway whose kernel
// accepts TCP but which never answers the handshake (a hung process). With a
// one-minute connect timeout, only the hedged dial of the next candidate
// can bring the SDK live within the test's wait; the hung dial is then
// abandoned (its connection closed).
func TestSDKHedgesAHungGateway(t *testing.T) {
	browser := newBrowser(t)
	f := newFakeServer(t)
	hung, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer hung.Close()
	accepted := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := hung.Accept()
			if err != nil {
				return
			}
			accepted <- c // read nothing, answer nothing
		}
	}()
	f.hungURL = "ws://" + hung.Addr().String() + "/v1/ws"
	b := newTab(t, browser, "hedge")
	b.do(chromedp.Navigate(f.srv.URL + "/"))
	eval[bool](b, `(() => {
		import('/static/liveroom.js').then((sdk) => {
			window.__room = sdk.connect({ room: 'sdk-room', token: 'tok-1', connectTimeoutMs: 60000, hedgeDelayMs: 500 });
		});
		return true;
	})()`)
	var c net.Conn
	select {
	case c = <-accepted:
	case <-time.After(10 * time.Second):
		t.Fatal("the SDK never dialled the hung gateway first")
	}
	defer c.Close()
	if q := f.nextDial(t); q.Get("room") != "sdk-room" {
		t.Errorf("hedged dial %v", q)
	}
	b.waitJS(10*time.Second, `window.__room && window.__room.state === 'live' && window.__room.gateway === 'gw-1'`, "live on gw-1")
	// The abandoned dial is closed by the browser: the hung side reads EOF.
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.Copy(io.Discard, c); err != nil {
		t.Errorf("the hung gateway's connection was not closed after another gateway answered: %v", err)
	}
	b.checkClean()
}
