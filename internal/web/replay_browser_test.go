package web_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/liveroom/liveroom/internal/app"
	"github.com/liveroom/liveroom/internal/bus"
	"github.com/liveroom/liveroom/internal/protocol"
	"github.com/liveroom/liveroom/internal/session"
	"github.com/liveroom/liveroom/internal/testutil"
	"github.com/liveroom/liveroom/internal/uplink"
	"github.com/liveroom/liveroom/internal/web"
)

// apiCall sends one API request and decodes the JSON answer into out.
func apiCall(t *testing.T, method, url, token, body string, out any) int {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if strings.Contains(body, `"gift"`) {
		req.Header.Set("Idempotency-Key", fmt.Sprintf("k-%d", time.Now().UnixNano()))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil && json.Unmarshal(b, out) != nil {
		t.Fatalf("%s %s: %d %s", method, url, resp.StatusCode, b)
	}
	return resp.StatusCode
}

// shown is one entry of window.lrReplay.shown.
type shown struct {
	ID     string `json:"id"`
	Type   string `json:"type"`
	Offset int64  `json:"offset"`
	At     int64  `json:"at"`
}

// TestReplayInBrowser records a short live session through the real
// system, then plays it back in Chromium: comments and gifts appear at
// their offsets, pausing freezes the clock and the comments, seeking
// (timeline, buttons, keyboard) moves the clock and the gift list with it.
func TestReplayInBrowser(t *testing.T) {
	browser := newBrowser(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	n, err := app.New(app.Config{Addr: "127.0.0.1:0", DataDir: t.TempDir(), NATSPort: -1, JWTSecret: testutil.Secret, Logger: testutil.Logger(),
		Uplink: uplink.Config{ClientGifts: true}})
	if err != nil {
		t.Fatalf("app.New: %v", err)
	}
	if err := n.Start(ctx); err != nil {
		t.Fatalf("app.Start: %v", err)
	}
	t.Cleanup(func() { _ = n.Close() })
	const room = "music-night"
	base := n.URL() + "/v1/rooms/" + room
	anchor := testutil.AnchorToken(t, "dj", room)

	// An earlier, empty session: the page links to it.
	var sess, earlier struct {
		ID string `json:"id"`
	}
	if st := apiCall(t, "POST", base+"/live/start", anchor, "", &earlier); st != http.StatusCreated {
		t.Fatalf("start: %d", st)
	}
	if st := apiCall(t, "POST", base+"/live/stop", anchor, "", nil); st != http.StatusOK {
		t.Fatalf("stop: %d", st)
	}
	// Record: about 7 s of comments from six viewers, three gifts.
	if st := apiCall(t, "POST", base+"/live/start", anchor, "", &sess); st != http.StatusCreated {
		t.Fatalf("start: %d", st)
	}
	testutil.Eventually(t, 5*time.Second, "uplink sees the session", func() bool { return n.Uplink().LiveSession(room) == sess.ID })
	texts := []string{"hello!", "what a set", "turn it up", "wow!!!", "this track is amazing, what is it called?", "hi from Lisbon",
		"encore", "so good", "the bass on this one", "first time here", "wooo", "replay this part later"}
	names := []string{"Ana", "Ben", "Chen", "Dara", "Eli", "Fatima"}
	gifts := map[int]string{10: "rose", 22: "rocket", 34: "heart"}
	sent := 0
	for i := range 44 {
		user := names[i%len(names)]
		body := fmt.Sprintf(`{"type":"danmaku","text":%q}`, texts[i%len(texts)])
		if g, ok := gifts[i]; ok {
			body = fmt.Sprintf(`{"type":"gift","gift":%q,"count":%d}`, g, 1+i%3)
		}
		if st := apiCall(t, "POST", base+"/messages", testutil.Token(t, user, protocol.RoleViewer), body, nil); st != http.StatusAccepted {
			t.Fatalf("send %d: %d", i, st)
		}
		sent++
		time.Sleep(150 * time.Millisecond)
	}
	if st := apiCall(t, "POST", base+"/live/stop", anchor, "", nil); st != http.StatusOK {
		t.Fatalf("stop: %d", st)
	}
	var all struct {
		Msgs []protocol.Message `json:"msgs"`
	}
	testutil.Eventually(t, 10*time.Second, "the archive holds the session", func() bool {
		return apiCall(t, "GET", base+"/sessions/"+sess.ID+"/replay?from_ms=0&to_ms=60000", "", "", &all) == http.StatusOK &&
			len(all.Msgs) == sent+2
	})
	var giftMsgs []protocol.Message
	for _, m := range all.Msgs {
		if m.Type == protocol.TypeGift {
			giftMsgs = append(giftMsgs, m)
		}
	}

	b := newTab(t, browser, "replay")
	b.do(chromedp.EmulateViewport(1280, 800))
	b.do(chromedp.Navigate(n.URL() + "/replay/" + room + "/" + sess.ID + "?autoplay=0"))
	b.waitJS(15*time.Second, `window.lrReplay && window.lrReplay.state === 'paused' && window.lrReplay.loaded`, "loaded, paused")
	if got := eval[int](b, `document.querySelectorAll('#rp-marks .rp-mark').length`); got != len(giftMsgs)+2 {
		t.Errorf("%d timeline marks, want %d gifts + 2 notices", got, len(giftMsgs))
	}
	if got := eval[string](b, `[...document.querySelectorAll('#rp-sessions a')].map(a => a.getAttribute('href')).join()`); got != "/replay/"+room+"/"+earlier.ID {
		t.Errorf("other sessions linked: %q, want the earlier one", got)
	}
	if got := eval[int](b, `document.querySelectorAll('#ticker li:not(.rp-future)').length`); got != 1 {
		t.Errorf("%d ticker items visible at 0:00, want only the live_start notice", got)
	}

	// Play: everything up to ~4 s appears, each at (never before) its offset.
	b.do(chromedp.Click(chromedp.ID("rp-play")))
	b.waitJS(10*time.Second, `window.lrReplay.pos() > 4000`, "playing past 4 s")
	b.do(chromedp.Click(chromedp.ID("rp-play"))) // pause
	checkShown := func(what string) []shown {
		var got []shown
		if err := json.Unmarshal([]byte(eval[string](b, `JSON.stringify(window.lrReplay.shown)`)), &got); err != nil {
			t.Fatal(err)
		}
		for _, s := range got {
			// A tick every 50 ms; a busy machine may be late (a loaded
			// browser delays timers by a second and more), never early.
			if s.At < s.Offset || s.At > s.Offset+lateMS {
				t.Errorf("%s: %s %s with offset %d appeared at %d", what, s.Type, s.ID, s.Offset, s.At)
			}
		}
		return got
	}
	played := checkShown("first play")
	pos := eval[float64](b, `window.lrReplay.pos()`)
	var wantShown int
	for _, m := range all.Msgs {
		if float64(m.OffsetMS) <= pos {
			wantShown++
		}
	}
	if len(played) != wantShown {
		t.Errorf("%d messages shown by %.0f ms, want %d", len(played), pos, wantShown)
	}
	if eval[int](b, `document.querySelectorAll('#danmaku .dm[data-id]').length`) == 0 {
		t.Error("no comment on screen after 4 s of playback")
	}
	if gift := giftMsgs[0]; float64(gift.OffsetMS) < pos && !eval[bool](b, `!!document.querySelector('#ticker li[data-id="`+gift.ID+`"]:not(.rp-future)')`) {
		t.Errorf("gift %s at %d not in the ticker at %.0f", gift.ID, gift.OffsetMS, pos)
	}

	// Paused: the clock, the list and the comments on screen stand still.
	time.Sleep(700 * time.Millisecond)
	if p := eval[float64](b, `window.lrReplay.pos()`); p != pos || eval[string](b, `document.body.dataset.state`) != "paused" {
		t.Errorf("paused at %.0f, now %.0f (%s)", pos, p, eval[string](b, `document.body.dataset.state`))
	}
	if n := eval[int](b, `window.lrReplay.shown.length`); n != len(played) {
		t.Errorf("%d messages shown while paused", n-len(played))
	}
	if st := eval[string](b, `[...document.querySelectorAll('#danmaku .dm')].map(e => getComputedStyle(e).animationPlayState).join()`); strings.Contains(st, "running") {
		t.Errorf("comments still moving while paused: %s", st)
	}

	// Resumed after the pause: comments in one lane never overlap (the
	// lanes' clock stood still with the comments). The page is kept busy
	// for 300 ms after the click, as a loaded machine would: the comments
	// restart only with the late frame, and the lanes' clock must too.
	eval[bool](b, `(() => { document.getElementById('rp-play').click(); const u = Date.now() + 300; while (Date.now() < u) {} return true; })()`)
	for range 6 {
		time.Sleep(250 * time.Millisecond)
		if o := eval[string](b, overlapJS); o != "" {
			t.Errorf("after resuming: overlapping comments %s", o)
			break
		}
	}
	b.do(chromedp.Click(chromedp.ID("rp-play")))
	b.waitJS(2*time.Second, `window.lrReplay.state === 'paused'`, "paused again")

	// Seek with the timeline to just before the rocket: the ticker forgets
	// later gifts, the rocket flies again when reached.
	rocket := giftMsgs[1]
	target := max(rocket.OffsetMS-600, 0)
	b.do(chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`(() => { const s = document.getElementById('rp-seek'); s.value = %d; s.dispatchEvent(new Event('input')); })()`, target)))
	if p := eval[float64](b, `window.lrReplay.pos()`); !near(p, float64(target)) {
		t.Errorf("seek to %d: position %.1f", target, p)
	}
	if eval[bool](b, `!!document.querySelector('#ticker li[data-id="`+rocket.ID+`"]:not(.rp-future)')`) {
		t.Error("the rocket is in the ticker before its moment")
	}
	if eval[int](b, `document.querySelectorAll('#danmaku .dm').length`) != 0 {
		t.Error("comments from before the seek are still on screen")
	}
	before := eval[int](b, `window.lrReplay.shown.length`)
	b.do(chromedp.Click(chromedp.ID("rp-play")))
	b.waitJS(10*time.Second, `window.lrReplay.shown.some(s => s.id === `+jsString(rocket.ID)+`)`, "the rocket after the seek")
	b.waitJS(2*time.Second, `[...document.querySelectorAll('#gift-flash .flash')].some(f => f.textContent.includes('sent a Rocket'))`, "the rocket flash")
	b.waitJS(2*time.Second, `!!document.querySelector('#ticker li[data-id="`+rocket.ID+`"]:not(.rp-future)')`, "the rocket in the ticker")
	b.waitJS(5*time.Second, `document.querySelectorAll('#danmaku .dm[data-id]').length >= 3`, "comments flying")
	if got := checkShown("after the seek"); len(got) <= before {
		t.Errorf("nothing shown after the seek")
	}
	time.Sleep(1200 * time.Millisecond) // comments spread across the video
	b.screenshot("replay.png")

	// Keyboard: Space pauses, ArrowLeft goes back 5 s, Home to the start.
	b.do(chromedp.Evaluate[chromedp.Void](`document.activeElement && document.activeElement.blur()`))
	b.do(chromedp.KeyEvent(" "))
	b.waitJS(2*time.Second, `window.lrReplay.state === 'paused'`, "space pauses")
	// A pause leaves the position where the clock stood, a fraction of a
	// millisecond included; a seek rounds to whole milliseconds.
	p0 := eval[float64](b, `window.lrReplay.pos()`)
	b.do(chromedp.KeyEvent(kb.ArrowLeft))
	if p := eval[float64](b, `window.lrReplay.pos()`); !near(p, max(p0-5000, 0)) {
		t.Errorf("ArrowLeft from %.1f: %.1f, want %.1f", p0, p, max(p0-5000, 0))
	}
	b.do(chromedp.KeyEvent(kb.Home))
	if p := eval[float64](b, `window.lrReplay.pos()`); p != 0 {
		t.Errorf("Home: %.0f", p)
	}
	// Play to the end: every message shown once, the player ends.
	b.do(chromedp.SetValue(chromedp.ID("rp-speed"), "2"))
	b.do(chromedp.Evaluate[chromedp.Void](`document.getElementById('rp-speed').dispatchEvent(new Event('change'))`))
	b.do(chromedp.Click(chromedp.ID("rp-play")))
	b.waitJS(20*time.Second, `window.lrReplay.state === 'ended'`, "the end")
	if got := eval[int](b, `document.querySelectorAll('#ticker li:not(.rp-future)').length`); got != len(giftMsgs)+2 {
		t.Errorf("%d ticker items at the end, want %d", got, len(giftMsgs)+2)
	}

	// Phone-sized: nothing wider than the screen, controls still there.
	b.do(chromedp.EmulateViewport(390, 844))
	b.do(chromedp.Evaluate[chromedp.Void](`window.lrReplay.seek(Math.floor(window.lrReplay.duration / 2))`))
	b.do(chromedp.Click(chromedp.ID("rp-play")))
	time.Sleep(1500 * time.Millisecond)
	if w := eval[int](b, `document.documentElement.scrollWidth - window.innerWidth`); w > 0 {
		t.Errorf("phone layout overflows by %d px", w)
	}
	if !eval[bool](b, `(r => r.width > 40 && r.bottom <= window.innerHeight)(document.getElementById('rp-play').getBoundingClientRect())`) {
		t.Error("play button not on the phone screen")
	}
	b.screenshot("replay-phone.png")
	b.checkClean()
}

// lateMS is how long after its offset the player may show a message on a
// busy machine: its ticks are timers, which a loaded browser delays (2.2 s
// seen at a load average of 25). What the test holds exactly is the other
// side: never before its offset.
const lateMS = 4000

// near reports whether two player positions are the same to the
// millisecond the player rounds a seek to.
func near(a, b float64) bool { return math.Abs(a-b) <= 1 }

// overlapJS lists comments that overlap another in their lane ("" if none).
const overlapJS = `(() => {
  const lanes = {};
  for (const e of document.querySelectorAll('#danmaku .dm')) {
    const r = e.getBoundingClientRect();
    (lanes[e.dataset.lane] = lanes[e.dataset.lane] || []).push([r.left, r.right, e.textContent]);
  }
  const bad = [];
  for (const l of Object.values(lanes)) {
    l.sort((a, b) => a[0] - b[0]);
    for (let i = 1; i < l.length; i++) if (l[i][0] < l[i - 1][1] - 1) bad.push(l[i - 1][2] + ' / ' + l[i][2]);
  }
  return bad.join('; ');
})()`

// TestReplayPageRoute: the page validates its path.
func TestReplayPageRoute(t *testing.T) {
	h := web.Handler()
	for _, tc := range []struct {
		path   string
		status int
	}{
		{"/replay/lobby/20261127-101500-abcd", 200},
		{"/replay/a.b/s1", 400},
		{"/replay/lobby/s.1", 400},
		{"/replay/lobby", 404},
		{"/replay/lobby/s1/x", 404},
	} {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, tc.path, nil))
		if w.Code != tc.status {
			t.Errorf("%s: %d, want %d", tc.path, w.Code, tc.status)
		}
		if tc.status == 200 && !strings.Contains(w.Body.String(), `data-session="20261127-101500-abcd"`) {
			t.Errorf("%s: page without its session", tc.path)
		}
	}
}

// TestReplayPageNoSuchSession: with the session registry, a session the
// room does not have is a 404 page linking the room's recent sessions and
// its live room; a session it has is the player.
func TestReplayPageNoSuchSession(t *testing.T) {
	_, _, js := testutil.StartBackbone(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kv, err := js.KeyValue(ctx, bus.SessionsKV)
	if err != nil {
		t.Fatal(err)
	}
	reg := session.NewRegistry(kv)
	s, _, err := reg.Start(ctx, "lobby", "dj")
	if err != nil {
		t.Fatal(err)
	}
	h := web.NewHandler(web.Config{Sessions: reg})
	get := func(path string) (int, string) {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, path, nil))
		return w.Code, w.Body.String()
	}
	if code, body := get("/replay/lobby/" + s.ID); code != http.StatusOK || !strings.Contains(body, `data-session="`+s.ID+`"`) {
		t.Errorf("an existing session: %d", code)
	}
	code, body := get("/replay/lobby/20200101-000000-none")
	if code != http.StatusNotFound || !strings.Contains(body, "<h1>No such session</h1>") ||
		!strings.Contains(body, `href="/replay/lobby/`+s.ID+`"`) || !strings.Contains(body, "(live now)") || !strings.Contains(body, `href="/room/lobby"`) {
		t.Errorf("unknown session: %d\n%s", code, body)
	}
	if code, body := get("/replay/other-room/" + s.ID); code != http.StatusNotFound || strings.Contains(body, `href="/replay/`) {
		t.Errorf("another room's session: %d\n%s", code, body)
	}
}
