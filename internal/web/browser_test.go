package web_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/liveroom/liveroom/internal/app"
	"github.com/liveroom/liveroom/internal/testutil"
)

// chromiumPath is where scripts/ensure-chromium.sh installs Chromium.
const chromiumPath = "/usr/bin/chromium"

// newBrowser starts a headless Chromium with a throwaway profile and returns
// the context of its first tab. It fails the test (it does not skip) when
// Chromium is missing, so a machine without it cannot pass by accident.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("Chromium is not installed at %s (%v): run scripts/ensure-chromium.sh (make test runs it)", chromiumPath, err)
	}
	dir, err := os.MkdirTemp("", "liveroom-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Chromium's child processes may still write into the profile for a
		// moment after the browser exits, so removal is retried.
		for range 50 {
			if err := os.RemoveAll(dir); err == nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chromiumPath),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		// Two tabs run side by side; neither may be throttled as hidden.
		chromedp.Flag("disable-background-timer-throttling", true),
		chromedp.Flag("disable-renderer-backgrounding", true),
		chromedp.Flag("disable-backgrounding-occluded-windows", true),
		chromedp.UserDataDir(dir),
		chromedp.WindowSize(1280, 800),
	)
	t.Cleanup(cancelAlloc)
	ctx, cancel := chromedp.NewContext(allocCtx)
	t.Cleanup(cancel)
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("cannot start %s: %v", chromiumPath, err)
	}
	return ctx
}

// tab is one browser tab under test. It records uncaught JavaScript
// exceptions and Content-Security-Policy violations; checkClean fails the
// test on any.
type tab struct {
	t    *testing.T
	name string
	ctx  context.Context

	mu       sync.Mutex
	problems []string
}

// newTab opens a tab (in its own window, so it is never a hidden background
// tab) in the browser of browserCtx.
func newTab(t *testing.T, browserCtx context.Context, name string) *tab {
	t.Helper()
	ctx, cancel := chromedp.NewContext(browserCtx)
	t.Cleanup(cancel)
	b := &tab{t: t, name: name, ctx: ctx}
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("%s: cannot open tab: %v", name, err)
	}
	if err := chromedp.Listen(ctx, b.onEvent); err != nil {
		t.Fatalf("%s: cannot listen: %v", name, err)
	}
	return b
}

func (b *tab) onEvent(ev any) {
	var p string
	switch ev := ev.(type) {
	case *runtime.EventExceptionThrown:
		p = "uncaught exception: " + (&chromedp.ExceptionError{ExceptionDetails: ev.ExceptionDetails}).Error()
	case *log.EventEntryAdded:
		if ev.Entry != nil && strings.Contains(ev.Entry.Text, "Content Security Policy") {
			p = "CSP violation: " + ev.Entry.Text
		}
	}
	if p != "" {
		b.mu.Lock()
		b.problems = append(b.problems, p)
		b.mu.Unlock()
	}
}

// checkClean fails the test if the page threw or broke its CSP.
func (b *tab) checkClean() {
	b.t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, p := range b.problems {
		b.t.Errorf("%s: %s", b.name, p)
	}
}

func (b *tab) do(actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.t.Fatalf("%s: %v", b.name, err)
	}
}

// eval evaluates a JavaScript expression in the tab and decodes its value.
func eval[T any](b *tab, expr string) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		b.t.Fatalf("%s: eval %s: %v", b.name, expr, err)
	}
	return v
}

// waitJS polls a boolean JavaScript expression until it is true, failing the
// test with the page's window.liveroom after timeout.
func (b *tab) waitJS(timeout time.Duration, expr, what string) {
	b.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if eval[bool](b, "!!("+expr+")") {
			return
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("%s: timed out after %v waiting for %s (%s)\nwindow.liveroom = %s", b.name, timeout, what, expr, b.snapshot())
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// snapshot is window.liveroom as JSON, for failure messages.
func (b *tab) snapshot() string {
	return eval[string](b, `JSON.stringify(window.liveroom || null)`)
}

// state is the part of window.liveroom the tests assert on.
type state struct {
	State   string   `json:"state"`
	LastSeq uint64   `json:"lastSeq"`
	Gateway string   `json:"gateway"`
	Seen    []string `json:"seen"`
	Gifts   []string `json:"gifts"`
	Online  int64    `json:"online"`
	Likes   int64    `json:"likes"`
	Error   *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func (b *tab) state() state {
	b.t.Helper()
	var s state
	if err := json.Unmarshal([]byte(b.snapshot()), &s); err != nil {
		b.t.Fatalf("%s: window.liveroom: %v", b.name, err)
	}
	return s
}

// screenshotPath is where a screenshot named name goes: docs/screenshots
// when LIVEROOM_SCREENSHOTS=1 (to refresh the ones in the repository),
// otherwise a temporary directory.
func screenshotPath(t *testing.T, name string) string {
	t.Helper()
	dir := t.TempDir()
	if os.Getenv("LIVEROOM_SCREENSHOTS") == "1" {
		dir = filepath.Join("..", "..", "docs", "screenshots")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(dir, name)
}

func (b *tab) screenshot(name string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		b.t.Fatalf("%s: screenshot: %v", b.name, err)
	}
	p := screenshotPath(b.t, name)
	if err := os.WriteFile(p, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
	b.t.Logf("screenshot %s", p)
}

// countOf reports how many times id occurs in ids.
func countOf(ids []string, id string) int {
	n := 0
	for _, v := range ids {
		if v == id {
			n++
		}
	}
	return n
}

// checkOnce fails unless every id in ids is distinct.
func checkOnce(t *testing.T, who string, ids []string) {
	t.Helper()
	for _, id := range ids {
		if c := countOf(ids, id); c != 1 {
			t.Errorf("%s shows gift %s %d times: %v", who, id, c, ids)
		}
	}
}

// TestRoomInBrowser runs the whole system (app: NATS, gateway, uplink,
// dispatch, pages) and drives the room page in two real Chromium tabs:
// danmaku from one tab reaches the other, a gift shows exactly once in both,
// and a gift sent while one tab is disconnected shows there exactly once
// after it recovers through since=.
func TestRoomInBrowser(t *testing.T) {
	browser := newBrowser(t)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	n, err := app.New(app.Config{Addr: "127.0.0.1:0", DataDir: t.TempDir(), NATSPort: -1, Logger: testutil.Logger()})
	if err != nil {
		t.Fatalf("app.New: %v", err)
	}
	if err := n.Start(ctx); err != nil {
		t.Fatalf("app.Start: %v", err)
	}
	t.Cleanup(func() { _ = n.Close() })
	base := n.URL()

	alice := newTab(t, browser, "alice")
	bob := newTab(t, browser, "bob")
	for _, b := range []*tab{alice, bob} {
		b.do(chromedp.EmulateViewport(1280, 800))
	}
	alice.do(chromedp.Navigate(base + "/room/test-room?name=Alice"))
	bob.do(chromedp.Navigate(base + "/room/test-room?name=Bob"))
	for _, b := range []*tab{alice, bob} {
		b.waitJS(15*time.Second, `window.liveroom.state === 'live' && document.body.dataset.state === 'live'`, "live")
		if s := b.state(); s.Gateway == "" {
			t.Errorf("%s: live without a gateway id: %+v", b.name, s)
		}
	}
	// Both viewers are counted, in both tabs.
	for _, b := range []*tab{alice, bob} {
		b.waitJS(15*time.Second, `window.liveroom.online >= 2 && document.getElementById('online').textContent === String(window.liveroom.online)`, "online count 2")
	}

	// Danmaku: typed into the box, sent with Enter, seen by the other tab.
	const hello = "hello from alice"
	alice.do(chromedp.SendKeys(chromedp.ID("text"), hello+kb.Enter))
	bob.waitJS(10*time.Second, `[...document.querySelectorAll('#comment-log li')].some(li => li.textContent.endsWith(`+jsString(hello)+`))`, "alice's comment in bob's tab")
	alice.waitJS(5*time.Second, `document.getElementById('text').value === ''`, "send box cleared")
	if s := bob.state(); len(s.Seen) == 0 {
		t.Errorf("bob saw the comment but window.liveroom.seen is empty")
	}
	// Alice saw her comment at once (local echo), and exactly once: the
	// echo carries the id of the server's copy, which did not fly again.
	alice.waitJS(5*time.Second, `window.liveroom.echo.reconciled >= 1`, "alice's echo matched with the server's copy")
	echo := eval[string](alice, `JSON.stringify([...document.querySelectorAll('#danmaku .dm')].filter(e => e.textContent === `+jsString(hello)+`).map(e => [e.dataset.id || '', e.classList.contains('mine')]))`)
	var echoes [][2]any
	if err := json.Unmarshal([]byte(echo), &echoes); err != nil || len(echoes) != 1 || echoes[0][1] != true {
		t.Errorf("alice shows her comment as %s, want once, outlined", echo)
	} else if id, _ := echoes[0][0].(string); id == "" || !eval[bool](bob, `window.liveroom.seen.includes(`+jsString(id)+`)`) {
		t.Errorf("alice's echo has id %q, not the id bob received", id)
	}
	// And the other way round.
	const reply = "hi alice, bob here"
	bob.do(chromedp.SendKeys(chromedp.ID("text"), reply+kb.Enter))
	alice.waitJS(10*time.Second, `[...document.querySelectorAll('#comment-log li')].some(li => li.textContent.endsWith(`+jsString(reply)+`))`, "bob's comment in alice's tab")

	// A gift: shown exactly once in both tabs.
	alice.do(chromedp.Click(chromedp.CSS(`button[data-gift="rose"]`)))
	for _, b := range []*tab{alice, bob} {
		b.waitJS(10*time.Second, `window.liveroom.gifts.length >= 1`, "the rose")
	}
	first := alice.state().Gifts
	if len(first) != 1 {
		t.Fatalf("alice shows %d gifts after one click: %v", len(first), first)
	}
	if got := bob.state().Gifts; len(got) != 1 || got[0] != first[0] {
		t.Fatalf("bob shows gifts %v, alice %v", got, first)
	}
	for _, b := range []*tab{alice, bob} {
		if n := eval[int](b, `document.querySelectorAll('#ticker li').length`); n != 1 {
			t.Errorf("%s: %d ticker entries for one gift", b.name, n)
		}
	}

	// Likes: three clicks, counted at once locally and by the other tab.
	likesBefore := bob.state().Likes
	for range 3 {
		alice.do(chromedp.Click(chromedp.ID("like")))
	}
	bob.waitJS(10*time.Second, fmt.Sprintf(`window.liveroom.likes >= %d`, likesBefore+3), "alice's likes in bob's tab")

	// Cut bob's connection and keep it down for a while; alice sends a gift
	// meanwhile. Bob must get it on recovery (since=), exactly once.
	seqBefore := bob.state().LastSeq
	if !eval[bool](bob, `window.liveroom._debugDrop(4000)`) {
		t.Fatal("bob: _debugDrop found no connection")
	}
	if s := bob.state(); s.State != "reconnecting" {
		t.Fatalf("bob: state %q right after the drop, want reconnecting", s.State)
	}
	alice.do(chromedp.Click(chromedp.CSS(`button[data-gift="castle"]`)))
	alice.waitJS(10*time.Second, `window.liveroom.gifts.length >= 2`, "the castle")
	if s := bob.state(); s.State == "live" {
		t.Fatalf("bob reconnected before alice's gift arrived; the test would not cover recovery (lastSeq %d)", s.LastSeq)
	}
	bob.waitJS(20*time.Second, `window.liveroom.state === 'live' && window.liveroom.gifts.length >= 2`, "bob back live with the castle")
	// Let any late or replayed duplicate arrive before judging.
	alice.do(chromedp.Click(chromedp.CSS(`button[data-gift="heart"]`)))
	for _, b := range []*tab{alice, bob} {
		b.waitJS(10*time.Second, `window.liveroom.gifts.length >= 3`, "the heart")
	}
	a, bs := alice.state(), bob.state()
	checkOnce(t, "alice", a.Gifts)
	checkOnce(t, "bob", bs.Gifts)
	if strings.Join(a.Gifts, ",") != strings.Join(bs.Gifts, ",") {
		t.Errorf("gift order differs: alice %v, bob %v", a.Gifts, bs.Gifts)
	}
	if len(bs.Gifts) != 3 {
		t.Errorf("bob shows %d gifts, want 3: %v", len(bs.Gifts), bs.Gifts)
	}
	if bs.LastSeq <= seqBefore {
		t.Errorf("bob's lastSeq did not advance past %d: %d", seqBefore, bs.LastSeq)
	}
	if n := eval[int](bob, `document.querySelectorAll('#ticker li').length`); n != 3 {
		t.Errorf("bob: %d ticker entries for three gifts", n)
	}

	// A few comments in flight for the screenshot.
	for i, text := range []string{"first time here!", "that castle!", "gg", "the music is great tonight", "hi from Berlin"} {
		who := []*tab{alice, bob}[i%2]
		who.do(chromedp.SendKeys(chromedp.ID("text"), text+kb.Enter))
		time.Sleep(150 * time.Millisecond)
	}
	alice.do(chromedp.Sleep(700 * time.Millisecond))
	alice.screenshot("room.png")
	bob.do(chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile))
	bob.do(chromedp.Sleep(300 * time.Millisecond))
	bob.screenshot("room-phone.png")

	alice.do(chromedp.Navigate(base + "/"))
	alice.screenshot("index.png")

	alice.checkClean()
	bob.checkClean()
}

// jsString quotes s as a JavaScript string literal.
func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
