package web_test

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/liveroom/liveroom/internal/protocol"
	"github.com/liveroom/liveroom/internal/web"
)

// fakeServer stands in for dispatch, the gateway and the uplink, so the page
// can be driven through cases the real system produces only by accident:
// duplicate and overlapping replays, a 503 before a gift is accepted, a 429,
// a reconnect frame, a ban. TestRoomInBrowser covers the real system.
type fakeServer struct {
	t   *testing.T
	srv *httptest.Server

	dials chan url.Values // the query of every gateway connection
	posts chan fakePost   // every POST /v1/rooms/{room}/messages

	mu          sync.Mutex
	tokens      []devTokenRequest
	conns       map[*fakeConn]bool
	reliable    []protocol.Message // every gift, in seq order
	giftsByKey  map[string]protocol.Message
	fail503     int // answer this many gift requests with 503 first
	waits       int // answer this many dispatch requests with a wait first
	dispatches  []url.Values
	devTokenErr *protocol.Error
	hbMS        int64              // the welcome's heartbeat promise
	history     []protocol.Message // sent in a history frame on a first join (no since=)
	hungURL     string             // when set, dispatch lists this gateway first
	nextID      int
	lastWelcome protocol.Welcome
}

type devTokenRequest struct {
	User, Name, Role string
}

type fakePost struct {
	Auth, IdemKey string
	Body          map[string]any
}

type fakeConn struct {
	mu sync.Mutex
	c  net.Conn
}

func (c *fakeConn) write(b []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	_ = wsutil.WriteServerMessage(c.c, ws.OpText, b)
}

func newFakeServer(t *testing.T) *fakeServer {
	f := &fakeServer{
		t:          t,
		dials:      make(chan url.Values, 32),
		posts:      make(chan fakePost, 64),
		conns:      map[*fakeConn]bool{},
		giftsByKey: map[string]protocol.Message{},
	}
	mux := http.NewServeMux()
	mux.Handle("/", web.Handler())
	mux.HandleFunc("POST /v1/dev/token", f.devToken)
	mux.HandleFunc("GET /v1/dispatch", f.dispatch)
	mux.HandleFunc("GET /v1/ws", f.ws)
	mux.HandleFunc("POST /v1/rooms/{room}/messages", f.messages)
	f.srv = httptest.NewServer(mux)
	t.Cleanup(func() {
		f.closeAll()
		f.srv.Close()
	})
	return f
}

func (f *fakeServer) closeAll() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for c := range f.conns {
		_ = c.c.Close()
	}
}

// fakeToken is shaped like a JWT so the page can read its exp.
func fakeToken(user, name string) string { return fakeRoleToken(user, name, "viewer") }

// fakeRoleToken is fakeToken with a role.
func fakeRoleToken(user, name, role string) string {
	enc := base64.RawURLEncoding.EncodeToString
	claims, _ := json.Marshal(map[string]any{"sub": user, "name": name, "role": role, "exp": time.Now().Add(time.Hour).Unix()})
	return enc([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." + enc(claims) + ".c2ln"
}

func (f *fakeServer) devToken(w http.ResponseWriter, r *http.Request) {
	var req struct{ User, Name, Role string }
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		protocol.WriteError(w, protocol.Errorf(400, protocol.CodeInvalidJSON, "", err.Error()))
		return
	}
	f.mu.Lock()
	f.tokens = append(f.tokens, devTokenRequest(req))
	tokErr := f.devTokenErr
	f.mu.Unlock()
	if tokErr != nil {
		protocol.WriteError(w, tokErr)
		return
	}
	protocol.WriteJSON(w, 200, map[string]string{"token": fakeRoleToken(req.User, req.Name, req.Role)})
}

func (f *fakeServer) dispatch(w http.ResponseWriter, r *http.Request) {
	if _, err := protocol.ParseRoom(r.URL.Query().Get("room")); err != nil {
		protocol.WriteError(w, protocol.Errorf(400, protocol.CodeInvalidRoom, "room", err.Error()))
		return
	}
	f.mu.Lock()
	f.dispatches = append(f.dispatches, r.URL.Query())
	wait := f.waits > 0
	if wait {
		f.waits--
	}
	f.mu.Unlock()
	if wait {
		// Every gateway full, the fleet growing: wait, no error.
		protocol.WriteJSON(w, 200, map[string]any{"gateways": []any{}, "retry_after_ms": 400,
			"reconnect": map[string]any{"base_ms": 100, "max_ms": 800, "jitter": 0.2}})
		return
	}
	_, port, _ := net.SplitHostPort(f.srv.Listener.Addr().String())
	gws := []map[string]any{
		// A dead gateway first: the page must move on to the next one.
		{"id": "gw-dead", "url": "ws://127.0.0.1:1/v1/ws", "load": 0.1},
		// A wildcard host: the page must substitute its own.
		{"id": "gw-1", "url": "ws://0.0.0.0:" + port + "/v1/ws", "load": 0.5},
	}
	f.mu.Lock()
	if f.hungURL != "" {
		gws = append([]map[string]any{{"id": "gw-hung", "url": f.hungURL, "load": 0.05}}, gws...)
	}
	f.mu.Unlock()
	protocol.WriteJSON(w, 200, map[string]any{
		"gateways":  gws,
		"reconnect": map[string]any{"base_ms": 100, "max_ms": 800, "jitter": 0.2},
	})
}

// ws accepts a viewer, welcomes it and replays reliable messages from since
// — deliberately including the one at since itself, as an overlapping
// replay, so the page's de-duplication is exercised.
func (f *fakeServer) ws(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	nc, _, _, err := ws.UpgradeHTTP(r, w)
	if err != nil {
		return
	}
	c := &fakeConn{c: nc}
	f.mu.Lock()
	welcome := protocol.Welcome{Type: protocol.FrameWelcome, Room: q.Get("room"), Online: 1, Likes: 7, Gateway: "gw-1", User: "someone", HeartbeatMS: f.hbMS}
	if n := len(f.reliable); n > 0 {
		welcome.Seq = f.reliable[n-1].Seq
	}
	var replay []protocol.Message
	if q.Has("since") {
		var since uint64
		fmt.Sscan(q.Get("since"), &since)
		for _, m := range f.reliable {
			if m.Seq >= since && since > 0 {
				replay = append(replay, m)
			}
		}
		welcome.Replayed = len(replay)
	}
	var history []protocol.Message
	if !q.Has("since") {
		history = f.history
	}
	f.conns[c] = true
	f.lastWelcome = welcome
	f.mu.Unlock()

	c.write(withHistory(protocol.Encode(welcome), len(history)))
	if len(history) > 0 {
		// The frame a gateway sends right after the welcome of a first join.
		b, _ := json.Marshal(map[string]any{"type": "history", "room": q.Get("room"), "msgs": history})
		c.write(b)
	}
	if len(replay) > 0 {
		c.write(protocol.Encode(protocol.Batch{Type: protocol.FrameBatch, Room: q.Get("room"), Msgs: replay}))
	}
	f.dials <- q
	go func() {
		defer func() {
			f.mu.Lock()
			delete(f.conns, c)
			f.mu.Unlock()
			_ = nc.Close()
		}()
		for {
			if _, _, err := wsutil.ReadClientData(nc); err != nil {
				return
			}
		}
	}()
}

// withHistory adds "history": n to an encoded welcome (omitted when 0, as
// a gateway does).
func withHistory(welcome []byte, n int) []byte {
	if n == 0 {
		return welcome
	}
	var m map[string]any
	if err := json.Unmarshal(welcome, &m); err != nil {
		panic(err)
	}
	m["history"] = n
	b, _ := json.Marshal(m)
	return b
}

// broadcast sends a frame to every connected viewer.
func (f *fakeServer) broadcast(frame any) {
	b, ok := frame.([]byte)
	if !ok {
		b = protocol.Encode(frame)
	}
	f.mu.Lock()
	conns := make([]*fakeConn, 0, len(f.conns))
	for c := range f.conns {
		conns = append(conns, c)
	}
	f.mu.Unlock()
	for _, c := range conns {
		c.write(b)
	}
}

func (f *fakeServer) batch(msgs ...protocol.Message) {
	f.broadcast(protocol.Batch{Type: protocol.FrameBatch, Room: "fake-room", Msgs: msgs})
}

// addGift records a reliable gift with the next seq and returns it.
func (f *fakeServer) addGift(gift, name string) protocol.Message {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.addGiftLocked(gift, name)
}

func (f *fakeServer) addGiftLocked(gift, name string) protocol.Message {
	seq := uint64(len(f.reliable) + 1)
	m := protocol.Message{ID: fmt.Sprintf("gift-%d", seq), Type: protocol.TypeGift, Seq: seq, User: "u", Name: name, TS: time.Now().UnixMilli(), Gift: gift, Count: 1}
	f.reliable = append(f.reliable, m)
	return m
}

func (f *fakeServer) messages(w http.ResponseWriter, r *http.Request) {
	var body map[string]any
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		protocol.WriteError(w, protocol.Errorf(400, protocol.CodeInvalidJSON, "", err.Error()))
		return
	}
	p := fakePost{Auth: r.Header.Get("Authorization"), IdemKey: r.Header.Get("Idempotency-Key"), Body: body}
	f.posts <- p
	if !strings.HasPrefix(p.Auth, "Bearer ") {
		protocol.WriteError(w, protocol.Errorf(401, protocol.CodeUnauthorized, "", "no token"))
		return
	}
	f.mu.Lock()
	f.nextID++
	id := fmt.Sprintf("msg-%d", f.nextID)
	switch body["type"] {
	case "danmaku":
		text, _ := body["text"].(string)
		f.mu.Unlock()
		if text == "too fast" {
			protocol.WriteError(w, protocol.Errorf(429, protocol.CodeUserRateLimited, "", "you are sending too fast").WithRetry(2000))
			return
		}
		f.batch(protocol.Message{ID: id, Type: protocol.TypeDanmaku, User: "me", Name: "Tess", TS: time.Now().UnixMilli(), Text: text})
		protocol.WriteJSON(w, 202, map[string]string{"id": id})
	case "gift":
		if f.fail503 > 0 {
			f.fail503--
			f.mu.Unlock()
			protocol.WriteError(w, protocol.Errorf(503, protocol.CodeUnavailable, "", "try again"))
			return
		}
		m, dup := f.giftsByKey[p.IdemKey]
		if !dup {
			m = f.addGiftLocked(body["gift"].(string), "Tess")
			f.giftsByKey[p.IdemKey] = m
		}
		f.mu.Unlock()
		if !dup {
			f.batch(m)
		}
		protocol.WriteJSON(w, 202, map[string]any{"id": m.ID, "seq": m.Seq})
	default:
		f.mu.Unlock()
		protocol.WriteJSON(w, 202, map[string]string{"id": id})
	}
}

func (f *fakeServer) nextDial(t *testing.T) url.Values {
	t.Helper()
	select {
	case q := <-f.dials:
		return q
	case <-time.After(15 * time.Second):
		t.Fatal("no gateway connection")
		return nil
	}
}

func (f *fakeServer) nextPost(t *testing.T) fakePost {
	t.Helper()
	select {
	case p := <-f.posts:
		return p
	case <-time.After(10 * time.Second):
		t.Fatal("no POST to the uplink")
		return fakePost{}
	}
}

// TestRoomPageAgainstFakeServer drives the room page's connection logic in
// Chromium: dispatch candidates in order, wildcard gateway hosts, welcome,
// de-duplication of replayed gifts, since= on reconnect (after a reconnect
// frame and after a dropped socket), the gift Idempotency-Key reused across a
// retry, like batching, a 429 shown to the user and a ban that stops it.
// Before it all, dispatch asks twice to wait (every gateway full): the page
// shows "Joining…", no error, and asks again with attempt=.
func TestRoomPageAgainstFakeServer(t *testing.T) {
	browser := newBrowser(t)
	f := newFakeServer(t)
	f.waits = 2
	b := newTab(t, browser, "tess")
	b.do(chromedp.EmulateViewport(1280, 800))
	b.do(chromedp.Navigate(f.srv.URL + "/room/fake-room?name=Tess"))

	// Joining: told to wait, shown as such, not as an error.
	b.waitJS(5*time.Second, `window.liveroom.state === 'joining' && document.body.dataset.state === 'joining'`, "joining")
	if got := eval[string](b, `document.getElementById('status-label').textContent`); !strings.HasPrefix(got, "Joining…") {
		t.Errorf("status while waiting %q, want Joining…", got)
	}
	if eval[bool](b, `window.liveroom.error !== null || !document.getElementById('toast').hidden || !document.getElementById('retry').hidden`) {
		t.Error("a wait from dispatch is shown as an error (error, toast or retry button)")
	}

	// Connect: dev token for the chosen name, dead gateway skipped, no since.
	q := f.nextDial(t)
	b.waitJS(10*time.Second, `window.liveroom.state === 'live' && document.body.dataset.state === 'live'`, "live")
	f.mu.Lock()
	var asked []string
	for _, dq := range f.dispatches {
		asked = append(asked, "since="+dq.Get("since")+" attempt="+dq.Get("attempt"))
	}
	f.mu.Unlock()
	if want := "since= attempt=,since= attempt=1,since= attempt=2"; strings.Join(asked, ",") != want || eval[int](b, `window.liveroom.waits`) != 2 {
		t.Errorf("dispatch requests %v (waits %d), want %s", asked, eval[int](b, `window.liveroom.waits`), want)
	}
	if q.Get("room") != "fake-room" || q.Has("since") || q.Get("token") == "" {
		t.Errorf("first connection query: %v", q)
	}
	f.mu.Lock()
	tokens := f.tokens
	f.mu.Unlock()
	if len(tokens) != 1 || tokens[0].Name != "Tess" || tokens[0].Role != "viewer" || !regexp.MustCompile(`^guest-[A-Za-z0-9]{4}$`).MatchString(tokens[0].User) {
		t.Errorf("dev token requests: %+v", tokens)
	}
	if s := b.state(); s.Gateway != "gw-1" || s.Likes != 7 || s.Online != 1 {
		t.Errorf("after welcome: %+v", s)
	}

	// Traffic: a comment, a gift, counts.
	g1 := f.addGift("rocket", "Ann")
	f.batch(
		protocol.Message{ID: "dm-a", Type: protocol.TypeDanmaku, User: "ann", Name: "Ann", TS: time.Now().UnixMilli(), Text: "first comment"},
		g1,
		protocol.Message{ID: "cnt-1", Type: protocol.TypeCount, Online: 42},
		protocol.Message{ID: "lk-1", Type: protocol.TypeLike, Count: 3, Total: 12},
	)
	b.waitJS(5*time.Second, `window.liveroom.gifts.length === 1`, "gift 1")
	s := b.state()
	if s.Online != 42 || s.Likes != 12 || s.LastSeq != 1 || countOf(s.Seen, "dm-a") != 1 {
		t.Errorf("after first batch: %+v", s)
	}
	if got := eval[string](b, `document.getElementById('online').textContent + '/' + document.getElementById('likes').textContent`); got != "42/12" {
		t.Errorf("online/likes on screen %q", got)
	}
	if got := eval[string](b, `document.querySelector('#ticker li').textContent`); !strings.Contains(got, "Ann sent a Rocket") {
		t.Errorf("ticker entry %q", got)
	}

	// The same gift again (a duplicate delivery) is not shown again.
	f.batch(g1, protocol.Message{ID: "dm-b", Type: protocol.TypeDanmaku, Text: "marker"})
	b.waitJS(5*time.Second, `window.liveroom.seen.includes('dm-b')`, "marker")
	if s := b.state(); len(s.Gifts) != 1 {
		t.Errorf("duplicate gift shown: %v", s.Gifts)
	}

	// A gift click: the first attempt gets 503, the retry carries the same key.
	f.mu.Lock()
	f.fail503 = 1
	f.mu.Unlock()
	b.do(chromedp.Click(chromedp.CSS(`button[data-gift="rose"]`)))
	p1, p2 := f.nextPost(t), f.nextPost(t)
	if p1.IdemKey == "" || p1.IdemKey != p2.IdemKey || !regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`).MatchString(p1.IdemKey) {
		t.Errorf("gift retry keys %q then %q", p1.IdemKey, p2.IdemKey)
	}
	if p2.Auth != "Bearer "+q.Get("token") || p2.Body["gift"] != "rose" || p2.Body["count"] != 1.0 || p2.Body["type"] != "gift" {
		t.Errorf("gift request %+v", p2)
	}
	b.waitJS(5*time.Second, `window.liveroom.gifts.length === 2`, "the rose")
	// A second click is a new key.
	b.do(chromedp.Click(chromedp.CSS(`button[data-gift="car"]`)))
	if p := f.nextPost(t); p.IdemKey == p1.IdemKey {
		t.Error("two clicks shared an Idempotency-Key")
	}
	b.waitJS(5*time.Second, `window.liveroom.gifts.length === 3`, "the car")

	// Likes: three quick clicks are one request, counted on screen at once.
	if got := eval[int](b, `(() => { const l = document.getElementById('like'); l.click(); l.click(); l.click(); return window.liveroom.likes; })()`); got != 15 {
		t.Errorf("likes right after 3 clicks = %d, want 15", got)
	}
	if p := f.nextPost(t); p.Body["type"] != "like" || p.Body["count"] != 3.0 {
		t.Errorf("like request %+v", p.Body)
	}
	select {
	case p := <-f.posts:
		t.Errorf("unexpected extra request %+v", p.Body)
	case <-time.After(500 * time.Millisecond):
	}

	// Danmaku typed and sent with Enter, shown once.
	b.do(chromedp.SendKeys(chromedp.ID("text"), "hello fake"+kb.Enter))
	if p := f.nextPost(t); p.Body["type"] != "danmaku" || p.Body["text"] != "hello fake" {
		t.Errorf("danmaku request %+v", p.Body)
	}
	b.waitJS(5*time.Second, `document.getElementById('text').value === ''`, "send box cleared")
	b.waitJS(5*time.Second, `[...document.querySelectorAll('#danmaku .dm')].filter(e => e.textContent === 'hello fake').length === 1`, "the comment flying")
	time.Sleep(300 * time.Millisecond)
	if n := eval[int](b, `[...document.querySelectorAll('#danmaku .dm')].filter(e => e.textContent === 'hello fake').length`); n != 1 {
		t.Errorf("own comment flying %d times", n)
	}

	// A 429 is shown, and the text stays for another try.
	b.do(chromedp.SendKeys(chromedp.ID("text"), "too fast"+kb.Enter))
	f.nextPost(t)
	b.waitJS(5*time.Second, `!document.getElementById('toast').hidden && document.getElementById('toast').textContent.startsWith('Slow down')`, "slow down toast")
	if v := eval[string](b, `document.getElementById('text').value`); v != "too fast" {
		t.Errorf("send box after 429: %q", v)
	}
	eval[string](b, `document.getElementById('text').value = ''`)

	// A reconnect frame: the page moves through dispatch with since=, and
	// the overlapping replay shows nothing twice.
	f.broadcast(protocol.Reconnect{Type: protocol.FrameReconnect, AfterMS: 300})
	b.waitJS(2*time.Second, `window.liveroom.state === 'reconnecting'`, "reconnecting after the reconnect frame")
	if q := f.nextDial(t); q.Get("since") != "3" {
		t.Errorf("reconnect query since=%q, want 3", q.Get("since"))
	}
	f.mu.Lock()
	if dq := f.dispatches[len(f.dispatches)-1]; dq.Get("since") != "3" || dq.Has("attempt") {
		t.Errorf("dispatch on a move: %v, want since=3 and no attempt (not a new viewer)", dq)
	}
	f.mu.Unlock()
	b.waitJS(5*time.Second, `window.liveroom.state === 'live'`, "live again")
	f.batch(f.addGift("castle", "Ann"))
	b.waitJS(5*time.Second, `window.liveroom.gifts.length === 4`, "gift 4")

	// A dropped socket: a gift sent meanwhile arrives once after recovery.
	if !eval[bool](b, `window.liveroom._debugDrop(600)`) {
		t.Fatal("_debugDrop found no connection")
	}
	if s := b.state(); s.State != "reconnecting" {
		t.Errorf("state right after the drop %q", s.State)
	}
	f.addGift("heart", "Ann") // nobody is connected: only the replay can deliver it
	if q := f.nextDial(t); q.Get("since") != "4" {
		t.Errorf("after drop since=%q, want 4", q.Get("since"))
	}
	b.waitJS(5*time.Second, `window.liveroom.state === 'live' && window.liveroom.gifts.length === 5`, "gift 5 replayed")
	s = b.state()
	checkOnce(t, "tess", s.Gifts)
	if want := "gift-1,gift-2,gift-3,gift-4,gift-5"; strings.Join(s.Gifts, ",") != want {
		t.Errorf("gifts %v, want %s", s.Gifts, want)
	}
	if s.LastSeq != 5 {
		t.Errorf("lastSeq %d, want 5", s.LastSeq)
	}
	if n := eval[int](b, `document.querySelectorAll('#ticker li').length`); n != 5 {
		t.Errorf("%d ticker entries for 5 gifts", n)
	}

	// A ban: shown, and the page stops reconnecting.
	f.broadcast(protocol.ErrorFrame{Type: protocol.FrameError, Error: protocol.ErrorBody{Code: protocol.CodeBanned, Message: "you are banned from this room"}})
	f.closeAll()
	b.waitJS(5*time.Second, `window.liveroom.state === 'offline'`, "offline after the ban")
	if s := b.state(); s.Error == nil || s.Error.Code != "banned" {
		t.Errorf("error after ban: %+v", s.Error)
	}
	if got := eval[string](b, `document.getElementById('status-label').textContent + '|' + document.getElementById('bar').textContent`); got != "Offline — banned|you are banned from this room" {
		t.Errorf("status and bar show %q", got)
	}
	if !eval[bool](b, `document.getElementById('text').disabled && document.querySelector('button[data-gift]').disabled`) {
		t.Error("a banned viewer's send controls are enabled")
	}
	select {
	case q := <-f.dials:
		t.Errorf("reconnected after a ban: %v", q)
	case <-time.After(time.Second):
	}
	if hidden := eval[bool](b, `document.getElementById('retry').hidden`); hidden {
		t.Error("no retry button when offline")
	}
	b.checkClean()
}

// TestPagesInBrowser loads the index and an invalid room in Chromium: no
// script errors, no CSP violations, the form leads to the room, and the room
// page lays out on a phone without horizontal scrolling.
func TestPagesInBrowser(t *testing.T) {
	browser := newBrowser(t)
	f := newFakeServer(t)
	b := newTab(t, browser, "pages")
	b.do(chromedp.EmulateViewport(1280, 800))
	b.do(chromedp.Navigate(f.srv.URL + "/"))
	if n := eval[int](b, `document.querySelectorAll('.cards a[href^="/room/"]').length`); n != len(web.Suggested) {
		t.Errorf("%d room links on the index", n)
	}
	b.do(
		chromedp.SendKeys(chromedp.ID("room"), "my-room"),
		chromedp.SendKeys(chromedp.ID("name"), "Zed"+kb.Enter),
	)
	b.waitJS(5*time.Second, `location.pathname === '/room/my-room' && location.search === '?name=Zed'`, "the room after the form")
	b.waitJS(10*time.Second, `window.liveroom && window.liveroom.state === 'live'`, "live")

	// Phone: nothing wider than the screen, the ticker below the video.
	b.do(chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile))
	b.do(chromedp.Sleep(200 * time.Millisecond))
	if w := eval[int](b, `document.documentElement.scrollWidth`); w > 390 {
		t.Errorf("room page is %d px wide on a 390 px phone", w)
	}
	if !eval[bool](b, `document.querySelector('.ticker').getBoundingClientRect().top >= document.getElementById('video').getBoundingClientRect().bottom`) {
		t.Error("ticker is not below the video on a phone")
	}

	b.do(chromedp.EmulateViewport(1280, 800))
	b.do(chromedp.Navigate(f.srv.URL + "/room/not.valid"))
	if got := eval[string](b, `document.querySelector('h1').textContent`); got != "Not a room" {
		t.Errorf("bad room page h1 %q", got)
	}
	b.checkClean()
}

// TestRoomPageTokens checks where the page's token comes from: ?token=
// overrides the dev endpoint (and leaves the address bar), and a dev endpoint
// that refuses is reported instead of retried for ever.
func TestRoomPageTokens(t *testing.T) {
	browser := newBrowser(t)
	f := newFakeServer(t)
	f.mu.Lock()
	f.devTokenErr = protocol.Errorf(http.StatusForbidden, protocol.CodeDevOnly, "", "dev tokens are disabled on this server")
	f.mu.Unlock()

	b := newTab(t, browser, "refused")
	b.do(chromedp.Navigate(f.srv.URL + "/room/fake-room"))
	b.waitJS(10*time.Second, `window.liveroom.state === 'offline'`, "offline without a token")
	if got := eval[string](b, `document.getElementById('status-label').textContent`); got != "Offline — token needed" {
		t.Errorf("status shows %q", got)
	}
	if got := eval[string](b, `document.getElementById('bar').textContent`); !strings.Contains(got, "This server needs a token") || !strings.Contains(got, "/room/fake-room?token=") {
		t.Errorf("bar shows %q", got)
	}
	select {
	case q := <-f.dials:
		t.Errorf("connected without a token: %v", q)
	default:
	}
	b.checkClean()

	b = newTab(t, browser, "override")
	b.do(chromedp.Navigate(f.srv.URL + "/room/fake-room?token=given-token&name=Ann"))
	if q := f.nextDial(t); q.Get("token") != "given-token" {
		t.Errorf("connected with token %q, want the one from the URL", q.Get("token"))
	}
	b.waitJS(10*time.Second, `window.liveroom.state === 'live'`, "live with the given token")
	if got := eval[string](b, `location.search`); got != "?name=Ann" {
		t.Errorf("address bar still has %q", got)
	}
	b.do(chromedp.Click(chromedp.CSS(`button[data-gift="heart"]`)))
	if p := f.nextPost(t); p.Auth != "Bearer given-token" {
		t.Errorf("gift sent with %q", p.Auth)
	}
	b.checkClean()

	// ?role=anchor asks the dev endpoint for an anchor's token, which
	// brings the live control; a plain page asks for a viewer's.
	f.mu.Lock()
	f.devTokenErr = nil
	f.mu.Unlock()
	for _, tc := range []struct{ query, role string }{{"?role=anchor", "anchor"}, {"?role=root", "viewer"}} {
		b = newTab(t, browser, "role "+tc.role)
		b.do(chromedp.Navigate(f.srv.URL + "/room/fake-room" + tc.query))
		b.waitJS(10*time.Second, `window.liveroom.state === 'live'`, "live")
		f.mu.Lock()
		got := f.tokens[len(f.tokens)-1].Role
		f.mu.Unlock()
		if got != tc.role || eval[bool](b, `document.getElementById('live-ctl').hidden`) != (tc.role != "anchor") {
			t.Errorf("%s: dev token asked for role %q, live control hidden %v", tc.query, got, eval[bool](b, `document.getElementById('live-ctl').hidden`))
		}
	}
}

// TestDanmakuLanesAndSettings floods the room page with comments of very
// different lengths (so they fly at different speeds) and checks, by
// sampling the on-screen boxes, that no two comments in one lane ever
// overlap; then drives the comment switch and the density setting with the
// keyboard.
func TestDanmakuLanesAndSettings(t *testing.T) {
	browser := newBrowser(t)
	f := newFakeServer(t)
	b := newTab(t, browser, "lanes")
	b.do(chromedp.EmulateViewport(1280, 800))
	b.do(chromedp.Navigate(f.srv.URL + "/room/fake-room?name=Tess"))
	b.waitJS(10*time.Second, `window.liveroom.state === 'live'`, "live")

	// The checker runs in the page every animation frame for 4 s and
	// records the worst overlap between neighbours in a lane.
	eval[bool](b, `(() => {
		window.__overlaps = [];
		const until = performance.now() + 4000;
		const check = () => {
			const byLane = {};
			for (const n of document.querySelectorAll('#danmaku .dm.go')) {
				(byLane[n.dataset.lane] = byLane[n.dataset.lane] || []).push(n.getBoundingClientRect());
			}
			for (const rs of Object.values(byLane)) {
				rs.sort((a, b) => a.left - b.left);
				for (let i = 1; i < rs.length; i++) {
					if (rs[i].left < rs[i - 1].right - 0.5) window.__overlaps.push(rs[i - 1].right - rs[i].left);
				}
			}
			if (performance.now() < until) requestAnimationFrame(check);
			else window.__lanesDone = true;
		};
		requestAnimationFrame(check);
		return true;
	})()`)
	for i := range 6 {
		var msgs []protocol.Message
		for j := range 8 {
			text := strings.Repeat("w", 1+(i*8+j)%5*9) + fmt.Sprintf(" %d", i*8+j)
			msgs = append(msgs, protocol.Message{ID: fmt.Sprintf("dm-%d-%d", i, j), Type: protocol.TypeDanmaku, User: "ann", TS: time.Now().UnixMilli(), Text: text})
		}
		f.batch(msgs...)
		time.Sleep(300 * time.Millisecond)
	}
	b.waitJS(10*time.Second, `window.__lanesDone`, "the overlap checker")
	if got := eval[string](b, `JSON.stringify(window.__overlaps.slice(0, 10))`); got != "[]" {
		t.Errorf("comments overlapped in a lane (px): %s", got)
	}
	if n := eval[int](b, `window.liveroom.danmaku().launched`); n < 10 {
		t.Errorf("only %d comments launched", n)
	}

	// Density: fewer lanes at "low" than at "high".
	setDensity := func(v string) int {
		eval[bool](b, `(() => { const s = document.getElementById('dm-density'); s.value = `+jsString(v)+`; s.dispatchEvent(new Event('change')); return true; })()`)
		return eval[int](b, `window.liveroom.danmaku().lanes`)
	}
	low, high := setDensity("low"), setDensity("high")
	if low >= high {
		t.Errorf("low density has %d lanes, high %d", low, high)
	}

	// The switch, by keyboard: Enter on the focused button hides comments
	// and stops new ones; again shows them. The choice survives a reload.
	b.do(chromedp.Focus(chromedp.ID("dm-toggle")), chromedp.KeyEvent(kb.Enter))
	b.waitJS(2*time.Second, `document.body.dataset.danmaku === 'off' && document.getElementById('dm-toggle').getAttribute('aria-pressed') === 'false' && document.getElementById('danmaku').hidden`, "comments hidden")
	before := eval[int](b, `window.liveroom.danmaku().launched`)
	f.batch(protocol.Message{ID: "dm-hidden", Type: protocol.TypeDanmaku, User: "ann", TS: time.Now().UnixMilli(), Text: "nobody sees me"})
	b.waitJS(5*time.Second, `window.liveroom.seen.includes('dm-hidden')`, "the hidden comment received")
	if n := eval[int](b, `document.querySelectorAll('#danmaku .dm').length + window.liveroom.danmaku().launched`); n != before {
		t.Errorf("comments flew while hidden (%d, before %d)", n, before)
	}
	if !eval[bool](b, `document.activeElement === document.getElementById('dm-toggle') && getComputedStyle(document.activeElement).boxShadow !== 'none'`) {
		t.Error("the focused switch shows no focus ring")
	}
	b.do(chromedp.Reload())
	b.waitJS(10*time.Second, `window.liveroom.state === 'live' && document.body.dataset.danmaku === 'off'`, "still hidden after a reload")
	b.do(chromedp.Focus(chromedp.ID("dm-toggle")), chromedp.KeyEvent(kb.Enter))
	b.waitJS(2*time.Second, `document.body.dataset.danmaku === 'on' && !document.getElementById('danmaku').hidden`, "comments shown again")
	f.batch(protocol.Message{ID: "dm-back", Type: protocol.TypeDanmaku, User: "ann", TS: time.Now().UnixMilli(), Text: "back again"})
	b.waitJS(5*time.Second, `document.querySelector('#danmaku .dm[data-id="dm-back"]')`, "a comment flying again")

	// A like aggregate from others shows a burst with its count.
	f.batch(protocol.Message{ID: "lk-burst", Type: protocol.TypeLike, Count: 25, Total: 100})
	b.waitJS(5*time.Second, `document.getElementById('like-burst').textContent === '+25' && document.getElementById('likes').textContent === '100'`, "the like burst and total")
	b.checkClean()
}

// TestDanmakuLateFrame: a page too busy to render for a moment must not
// put two comments of a lane on top of each other. The lanes are planned
// at launch, but the animations start with the next frame: here the main
// thread is blocked for 500 ms between two launches into the same lane, so
// both would start in one late frame, at the same place, if the first did
// not start 500 ms into its course.
func TestDanmakuLateFrame(t *testing.T) {
	browser := newBrowser(t)
	f := newFakeServer(t)
	b := newTab(t, browser, "late-frame")
	b.do(chromedp.EmulateViewport(1280, 800))
	b.do(chromedp.Navigate(f.srv.URL + "/room/fake-room"))
	b.waitJS(10*time.Second, `window.liveroom.state === 'live'`, "live")
	eval[bool](b, `(() => {
		const layer = document.createElement('div');
		layer.className = 'danmaku';
		layer.style.cssText = 'position: fixed; left: 0; top: 0; width: 1000px; height: 300px';
		document.body.appendChild(layer);
		const d = window.LiveroomDanmaku(layer, null, { durationMs: 8000 });
		const a = d.fly('x', false, 'a');
		const until = performance.now() + 500;
		while (performance.now() < until) {} // no frame meanwhile
		const c = d.fly('y', false, 'c');
		window.__late = { a: a, c: c };
		return true;
	})()`)
	b.waitJS(5*time.Second, `window.__late.a.node.classList.contains('go') && window.__late.c.node.classList.contains('go')`, "both flying")
	time.Sleep(300 * time.Millisecond)
	got := eval[string](b, `(() => { const a = window.__late.a.node, c = window.__late.c.node;
		return [a.dataset.lane === c.dataset.lane, Math.round(c.getBoundingClientRect().left - a.getBoundingClientRect().right)].join(); })()`)
	var same bool
	var gap int
	if _, err := fmt.Sscanf(strings.Replace(got, ",", " ", 1), "%t %d", &same, &gap); err != nil || !same || gap < 20 {
		t.Errorf("same lane, gap between the comments (px): %s; want the same lane and a gap of at least 20 px", got)
	}
	b.checkClean()
}

// TestRoomPageLeavesASilentGateway: a gateway that promised heartbeats
// (hb_ms) and then sends nothing, its socket open, as a hung process would,
// is left after LIVENESS_FACTOR × hb_ms; the page resumes through dispatch
// with since=, and a gift stored meanwhile arrives once. While heartbeats
// come, a quiet room is not left.
func TestRoomPageLeavesASilentGateway(t *testing.T) {
	browser := newBrowser(t)
	f := newFakeServer(t)
	// A 1 s promise (leave after 1.75 s of silence): heartbeats every
	// 200 ms keep the page even when a loaded machine delays its timers.
	f.hbMS = 1000
	b := newTab(t, browser, "silent")
	b.do(chromedp.Navigate(f.srv.URL + "/room/fake-room?name=Sid"))
	f.nextDial(t)
	b.waitJS(10*time.Second, `window.liveroom.state === 'live'`, "live")
	f.batch(f.addGift("rose", "Ann"))
	b.waitJS(5*time.Second, `window.liveroom.gifts.length === 1`, "gift 1")
	// Heartbeats only, for twice the liveness: the page stays.
	for range 18 {
		f.broadcast([]byte(`{"type":"hb"}`))
		time.Sleep(200 * time.Millisecond)
	}
	if s := b.state(); s.State != "live" || eval[int](b, `window.liveroom.silentLeaves`) != 0 {
		t.Fatalf("left a gateway that kept sending heartbeats: %+v", s)
	}
	// Silence: the gateway hangs; a gift is stored meanwhile.
	f.addGift("castle", "Ann")
	if q := f.nextDial(t); q.Get("since") != "1" {
		t.Errorf("resumed with since=%q, want 1", q.Get("since"))
	}
	b.waitJS(5*time.Second, `window.liveroom.state === 'live' && window.liveroom.gifts.length === 2`, "the gift stored during the silence")
	if n := eval[int](b, `window.liveroom.silentLeaves`); n != 1 {
		t.Errorf("silentLeaves = %d, want 1", n)
	}
}
