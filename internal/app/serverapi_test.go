package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/liveroom/liveroom/client"
	"github.com/liveroom/liveroom/internal/apikey"
	"github.com/liveroom/liveroom/internal/protocol"
	"github.com/liveroom/liveroom/internal/testutil"
	"github.com/liveroom/liveroom/internal/uplink"
	"github.com/liveroom/liveroom/internal/webhook"
)

// serverNode starts a node with a secret and an API key file holding key
// (as "backend"); it returns the node and the file.
func serverNode(t *testing.T, key string, tune func(*Config)) (*Node, string) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "api-keys")
	if err := os.WriteFile(file, []byte("# the platform's backend\nbackend "+key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	n := startNodeWith(t, func(c *Config) {
		c.APIKeys.File = file
		if tune != nil {
			tune(c)
		}
	})
	return n, file
}

// serverPaths turns uplink.ServerRoutes into requests: the one list of the
// server API's routes.
func serverPaths(room, user string) [][2]string {
	var out [][2]string
	for _, r := range uplink.ServerRoutes {
		p := strings.NewReplacer("{room}", room, "{user}", user).Replace(r.Path)
		out = append(out, [2]string{r.Method, p})
	}
	return out
}

func errCode(t *testing.T, body []byte) string {
	t.Helper()
	var e struct {
		Error protocol.ErrorBody `json:"error"`
	}
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("not a JSON error: %s", body)
	}
	return e.Error.Code
}

// TestServerAPIAuth: every server route refuses a caller without a key, with
// a wrong key, with a revoked key (removed from the file while the server
// runs, after a rotation during which both keys worked) and with any user's
// token, each with its documented code; a user route refuses the API key.
func TestServerAPIAuth(t *testing.T) {
	oldKey, newKey := apikey.Generate(), apikey.Generate()
	n, file := serverNode(t, oldKey, nil)
	users := map[string]string{
		"viewer": testutil.Token(t, "v1", protocol.RoleViewer),
		"anchor": testutil.AnchorToken(t, "a1", "r1"),
		"admin":  testutil.Token(t, "boss", protocol.RoleAdmin),
	}
	check := func(name, authz string, want int, code string) {
		t.Helper()
		for _, rt := range serverPaths("r1", "u1") {
			st, body := call(t, rt[0], n.URL()+rt[1], authz, strings.NewReader(`{}`))
			if st != want || (code != "" && errCode(t, body) != code) {
				t.Errorf("%s: %s %s: %d %s, want %d %s", name, rt[0], rt[1], st, body, want, code)
			}
		}
	}
	check("no key", "", http.StatusUnauthorized, protocol.CodeAPIKeyRequired)
	check("wrong key", apikey.Generate(), http.StatusUnauthorized, protocol.CodeAPIKeyInvalid)
	for role, tok := range users {
		check(role+" token", tok, http.StatusUnauthorized, protocol.CodeTokenNotAccepted)
	}
	if st, body := call(t, "GET", n.URL()+"/v1/server/rooms", oldKey, nil); st != 200 {
		t.Fatalf("valid key: %d %s", st, body)
	}
	// Unknown server paths answer 401 to strangers, 404 to the backend.
	if st, _ := call(t, "GET", n.URL()+"/v1/server/nosuch", "", nil); st != 401 {
		t.Fatalf("unknown path without a key: %d", st)
	}
	if st, _ := call(t, "GET", n.URL()+"/v1/server/nosuch", oldKey, nil); st != 404 {
		t.Fatalf("unknown path with a key: %d", st)
	}

	// Rotation: both keys valid, then the old one removed: revoked.
	if err := os.WriteFile(file, []byte("backend "+oldKey+"\nbackend "+newKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, "new key accepted", func() bool {
		st, _ := call(t, "GET", n.URL()+"/v1/server/rooms", newKey, nil)
		return st == 200
	})
	if st, _ := call(t, "GET", n.URL()+"/v1/server/rooms", oldKey, nil); st != 200 {
		t.Fatal("the old key must keep working during the rotation")
	}
	if err := os.WriteFile(file, []byte("backend "+newKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, "old key revoked", func() bool {
		st, body := call(t, "GET", n.URL()+"/v1/server/rooms", oldKey, nil)
		return st == 401 && errCode(t, body) == protocol.CodeAPIKeyRevoked
	})
	check("revoked key", oldKey, http.StatusUnauthorized, protocol.CodeAPIKeyRevoked)

	// An API key is no user credential.
	for _, c := range []struct{ method, path, body string }{
		{"POST", "/v1/rooms/r1/messages", `{"type":"danmaku","text":"hi"}`},
		{"POST", "/v1/rooms/r1/moderation", `{"action":"mute","user":"x","duration_s":60}`},
		{"POST", "/v1/rooms/r1/live/start", ``},
	} {
		st, body := call(t, c.method, n.URL()+c.path, newKey, strings.NewReader(c.body))
		if st != 401 || errCode(t, body) != protocol.CodeAPIKeyNotAccepted {
			t.Errorf("API key on %s %s: %d %s", c.method, c.path, st, body)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := client.Connect(ctx, client.Config{BaseURL: n.URL(), Room: "r1", Token: newKey})
	if err == nil || !strings.Contains(err.Error(), protocol.CodeAPIKeyNotAccepted) {
		t.Fatalf("WebSocket with an API key: %v", err)
	}
}

// dropFirstAnswer is a proxy in front of the server API that forwards the
// first request but loses its answer (the connection closes), as a timeout
// between the platform's backend and liveroom would: the gift is stored,
// and the backend does not know it.
type dropFirstAnswer struct {
	target  *url.URL
	dropped atomic.Int32
	calls   atomic.Int32
}

func (d *dropFirstAnswer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	d.calls.Add(1)
	if d.dropped.CompareAndSwap(0, 1) {
		rec := httptest.NewRecorder()
		httputil.NewSingleHostReverseProxy(d.target).ServeHTTP(rec, r)
		if rec.Code != http.StatusAccepted {
			panic(fmt.Sprintf("first gift not accepted: %d %s", rec.Code, rec.Body))
		}
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			conn.Close()
		}
		return
	}
	httputil.NewSingleHostReverseProxy(d.target).ServeHTTP(w, r)
}

// TestPaidGiftOnceEverywhere: a paid gift sent by the backend through the
// server API reaches a viewer's WebSocket, the archive and a webhook with
// its order id, amount and currency, exactly once, although its first
// answer was lost and the client retried, and the backend then sent the
// same order again.
func TestPaidGiftOnceEverywhere(t *testing.T) {
	type hook struct {
		Event   string           `json:"event"`
		Message protocol.Message `json:"message"`
	}
	var hmu sync.Mutex
	var hooks []protocol.Message
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var h hook
		if json.NewDecoder(r.Body).Decode(&h) == nil && h.Event == webhook.EventGift {
			hmu.Lock()
			hooks = append(hooks, h.Message)
			hmu.Unlock()
		}
	}))
	defer hs.Close()
	hooked := func(order string) int {
		hmu.Lock()
		defer hmu.Unlock()
		c := 0
		for _, m := range hooks {
			if m.OrderID == order {
				c++
			}
		}
		return c
	}
	key := apikey.Generate()
	n, _ := serverNode(t, key, func(c *Config) {
		c.Uplink.ClientGifts = false // production policy
		c.NonCore.Webhooks = webhook.Config{Endpoints: []webhook.Endpoint{{URL: hs.URL, Events: []string{webhook.EventGift}, Secret: "hook-secret"}}}
	})
	const room = "paid"
	anchor := testutil.AnchorToken(t, "star", room)
	var sess sessionJSON
	if st := testutil.APICall(t, "POST", n.URL()+"/v1/rooms/"+room+"/live/start", anchor, "", &sess); st != http.StatusCreated {
		t.Fatalf("live start: %d", st)
	}
	testutil.Eventually(t, 5*time.Second, "uplink sees the session", func() bool { return n.Uplink().LiveSession(room) == sess.ID })
	v := viewer(t, n, room, "fan")

	target, _ := url.Parse(n.URL())
	proxy := &dropFirstAnswer{target: target}
	ps := httptest.NewServer(proxy)
	defer ps.Close()
	backend := &client.Server{BaseURL: ps.URL, APIKey: key, MaxBackoff: 200 * time.Millisecond}
	ctx := context.Background()
	gift := client.PaidGift{Room: room, User: "fan", Name: "Fan", Gift: "rocket", Count: 2, OrderID: "order-0001", Amount: 1999, Currency: "EUR"}
	r1, err := backend.SendGift(ctx, gift)
	if err != nil {
		t.Fatal(err)
	}
	if proxy.calls.Load() != 2 || !r1.Duplicate || r1.Seq == 0 || r1.Status != http.StatusAccepted {
		t.Fatalf("after a lost answer: %d calls, %+v; want the retry to be told duplicate", proxy.calls.Load(), r1)
	}
	// The backend's own retry later, straight to liveroom: same order id.
	direct := &client.Server{BaseURL: n.URL(), APIKey: key}
	r2, err := direct.SendGift(ctx, gift)
	if err != nil || r2.ID != r1.ID || r2.Seq != r1.Seq || !r2.Duplicate {
		t.Fatalf("same order again: %+v %v, want id %s seq %d duplicate", r2, err, r1.ID, r1.Seq)
	}
	// A second order proves delivery moved past the first.
	r3, err := direct.SendGift(ctx, client.PaidGift{Room: room, User: "fan", Gift: "rose", Count: 1, OrderID: "order-0002"})
	if err != nil || r3.Duplicate || r3.ID == r1.ID {
		t.Fatalf("second order: %+v %v", r3, err)
	}
	testutil.Eventually(t, 10*time.Second, "viewer gets both gifts", func() bool {
		return v.count(protocol.TypeGift, r3.ID) == 1 && v.count(protocol.TypeGift, r1.ID) >= 1
	})
	if got := v.count(protocol.TypeGift, r1.ID); got != 1 {
		t.Fatalf("viewer saw the paid gift %d times", got)
	}
	v.mu.Lock()
	for _, m := range v.msgs {
		if m.ID == r1.ID && (m.OrderID != "order-0001" || m.Amount != 1999 || m.Currency != "EUR" || m.Count != 2 || m.User != "fan" || m.Session != sess.ID) {
			t.Errorf("viewer's gift lacks its value fields: %+v", m)
		}
	}
	v.mu.Unlock()
	testutil.Eventually(t, 15*time.Second, "webhooks for both orders", func() bool { return hooked("order-0002") == 1 && hooked("order-0001") >= 1 })
	if c := hooked("order-0001"); c != 1 {
		t.Fatalf("webhook got order-0001 %d times", c)
	}
	hmu.Lock()
	for _, m := range hooks {
		if m.OrderID == "order-0001" && (m.Amount != 1999 || m.Currency != "EUR") {
			t.Errorf("webhook message lacks its value fields: %+v", m)
		}
	}
	hmu.Unlock()

	if st := testutil.APICall(t, "POST", n.URL()+"/v1/rooms/"+room+"/live/stop", anchor, "", nil); st != http.StatusOK {
		t.Fatalf("live stop: %d", st)
	}
	var rep replayJSON
	testutil.Eventually(t, 15*time.Second, "archive holds both gifts", func() bool {
		rep = replayJSON{}
		st := testutil.APICall(t, "GET", n.URL()+"/v1/rooms/"+room+"/sessions/"+sess.ID+"/replay", testutil.Token(t, "fan", protocol.RoleViewer), "", &rep)
		found := 0
		for _, m := range rep.Msgs {
			if m.ID == r3.ID || m.ID == r1.ID {
				found++
			}
		}
		return st == 200 && found >= 2
	})
	archived := 0
	for _, m := range rep.Msgs {
		if m.OrderID == "order-0001" {
			archived++
			if m.Amount != 1999 || m.Currency != "EUR" || m.ID != r1.ID {
				t.Errorf("archived gift: %+v", m)
			}
		}
	}
	if archived != 1 {
		t.Fatalf("archive holds order-0001 %d times", archived)
	}
}

// TestGiftPolicy: with a secret and no --client-gifts a user's token cannot
// send a gift (403 client_gifts_disabled) but still comments; the server
// API's gift goes through. In dev mode a user's gift is accepted, and the
// dev API key the node made opens the server API.
func TestGiftPolicy(t *testing.T) {
	key := apikey.Generate()
	n, _ := serverNode(t, key, func(c *Config) { c.Uplink.ClientGifts = false })
	s := &client.Sender{BaseURL: n.URL(), Token: testutil.Token(t, "v1", protocol.RoleViewer), Retries: -1}
	ctx := context.Background()
	for _, tok := range []string{testutil.Token(t, "v1", protocol.RoleViewer), testutil.AnchorToken(t, "a1", "r1"), testutil.Token(t, "boss", protocol.RoleAdmin)} {
		s.Token = tok
		_, err := s.Gift(ctx, "r1", "rocket", 1, "")
		var ae *client.APIError
		if !errors.As(err, &ae) || ae.Status != 403 || ae.Body.Code != protocol.CodeClientGiftsOff {
			t.Fatalf("user gift under the production policy: %v", err)
		}
	}
	if _, err := s.Danmaku(ctx, "r1", "comments still work"); err != nil {
		t.Fatal(err)
	}
	if _, err := (&client.Server{BaseURL: n.URL(), APIKey: key}).SendGift(ctx, client.PaidGift{Room: "r1", User: "v1", Gift: "rocket", Count: 1, OrderID: "o-1"}); err != nil {
		t.Fatal(err)
	}

	dev := startNodeWith(t, func(c *Config) { c.JWTSecret = ""; c.Uplink.ClientGifts = false })
	tok, err := client.DevToken(ctx, dev.URL(), "demo", "", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := (&client.Sender{BaseURL: dev.URL(), Token: tok}).Gift(ctx, "r1", "rose", 1, ""); err != nil {
		t.Fatalf("dev mode refused a user's gift: %v", err)
	}
	if !strings.HasPrefix(dev.DevAPIKey(), apikey.Prefix) {
		t.Fatalf("dev key %q", dev.DevAPIKey())
	}
	if _, err := (&client.Server{BaseURL: dev.URL(), APIKey: dev.DevAPIKey()}).LiveRooms(ctx, 0); err != nil {
		t.Fatalf("dev key: %v", err)
	}
	if n.DevAPIKey() != "" {
		t.Fatal("a node with keys made a dev key")
	}
}

// TestAnnounceTo100Rooms: one call announces to 100 rooms, each with a
// viewer who gets the notice once; the same call again (same key) stores
// nothing twice; 1001 rooms are refused; a bad room fails alone (207).
func TestAnnounceTo100Rooms(t *testing.T) {
	key := apikey.Generate()
	n, _ := serverNode(t, key, nil)
	rooms := make([]string, 100)
	viewers := make([]*recorder, 100)
	for i := range rooms {
		rooms[i] = fmt.Sprintf("hall-%03d", i)
		viewers[i] = viewer(t, n, rooms[i], fmt.Sprintf("u%d", i))
	}
	backend := &client.Server{BaseURL: n.URL(), APIKey: key}
	ctx := context.Background()
	a := client.Announcement{Rooms: rooms, Text: "the show starts in 5 minutes", From: "Platform", Key: "show-42"}
	res, err := backend.Announce(ctx, a)
	if err != nil || len(res) != 100 {
		t.Fatalf("announce: %d results, %v", len(res), err)
	}
	for i, r := range res {
		if !r.OK() || r.Room != rooms[i] || r.Seq == 0 || r.Duplicate {
			t.Fatalf("result %d: %+v", i, r)
		}
	}
	for i, v := range viewers {
		testutil.Eventually(t, 10*time.Second, "room "+rooms[i]+" gets the announcement", func() bool {
			return v.count(protocol.TypeNotice, res[i].ID) == 1
		})
	}
	again, err := backend.Announce(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range again {
		if !r.Duplicate || r.ID != res[i].ID || r.Seq != res[i].Seq {
			t.Fatalf("repeat %d: %+v, want a duplicate of %+v", i, r, res[i])
		}
	}
	// 1001 rooms: refused whole.
	many := make([]string, 1001)
	for i := range many {
		many[i] = fmt.Sprintf("r%d", i)
	}
	if _, err := backend.Announce(ctx, client.Announcement{Rooms: many, Text: "x"}); err == nil || !strings.Contains(err.Error(), "rooms") {
		t.Fatalf("1001 rooms: %v", err)
	}
	mixed, err := backend.Announce(ctx, client.Announcement{Rooms: []string{"hall-000", "bad room"}, Text: "half"})
	if err != nil || len(mixed) != 2 || !mixed[0].OK() || mixed[1].Status != 400 || mixed[1].Error.Code != protocol.CodeInvalidRoom {
		t.Fatalf("mixed rooms: %+v %v", mixed, err)
	}
	st, _ := call(t, "POST", n.URL()+"/v1/server/announcements", key, strings.NewReader(`{"rooms":["hall-000","bad room"],"text":"half"}`))
	if st != http.StatusMultiStatus {
		t.Fatalf("mixed rooms answered %d, want 207", st)
	}
}

// TestBatchResultsPerMessage: a batch answers a result per message, in
// order: good messages go through (and reach viewers), bad ones fail alone
// with their own status and code; the call answers 207, or 200 when all
// succeeded; more than 100 messages are refused.
func TestBatchResultsPerMessage(t *testing.T) {
	key := apikey.Generate()
	n, _ := serverNode(t, key, nil)
	fan := viewer(t, n, "b1", "fan")
	other := viewer(t, n, "b1", "other")
	backend := &client.Server{BaseURL: n.URL(), APIKey: key}
	ctx := context.Background()
	msgs := []client.BatchMessage{
		client.GiftMessage(client.PaidGift{Room: "b1", User: "fan", Gift: "castle", Count: 1, OrderID: "b-1", Amount: 500, Currency: "USD"}),
		client.GiftMessage(client.PaidGift{Room: "b1", User: "fan", Gift: "yacht", Count: 1, OrderID: "b-2"}),
		client.AnnounceMessage("b1", "welcome to the batch", "Platform", "ann-1"),
		client.NoticeMessage(client.Notice{Room: "b1", User: "fan", Text: "thanks for the castle"}),
		client.NoticeMessage(client.Notice{Room: "b..1", User: "fan", Text: "bad room"}),
		client.GiftMessage(client.PaidGift{Room: "b1", User: "fan", Gift: "castle", Count: 1, OrderID: "b-1", Amount: 500, Currency: "USD"}),
		client.GiftMessage(client.PaidGift{Room: "b1", User: "fan", Gift: "rose", Count: 1, OrderID: "b-3", Amount: 5}),
	}
	res, err := backend.Batch(ctx, msgs)
	if err != nil || len(res) != len(msgs) {
		t.Fatalf("batch: %+v %v", res, err)
	}
	want := []struct {
		status int
		code   string
	}{{202, ""}, {400, protocol.CodeUnknownGift}, {202, ""}, {202, ""}, {400, protocol.CodeInvalidRoom}, {202, ""}, {400, protocol.CodeInvalidField}}
	for i, w := range want {
		r := res[i]
		code := ""
		if r.Error != nil {
			code = r.Error.Code
		}
		if r.Status != w.status || code != w.code {
			t.Errorf("message %d: %+v, want %d %s", i, r, w.status, w.code)
		}
	}
	if !res[5].Duplicate || res[5].ID != res[0].ID {
		t.Errorf("the repeated order: %+v, want a duplicate of %s", res[5], res[0].ID)
	}
	testutil.Eventually(t, 10*time.Second, "batch reaches the viewers", func() bool {
		return fan.count(protocol.TypeGift, res[0].ID) == 1 && fan.count(protocol.TypeNotice, res[2].ID) == 1 &&
			fan.count(protocol.TypeNotice, "thanks for the castle") == 1 && other.count(protocol.TypeNotice, res[2].ID) == 1
	})
	if other.count(protocol.TypeNotice, "thanks for the castle") != 0 {
		t.Fatal("a user notice reached another user")
	}
	body := `{"messages":[{"op":"announce","room":"b1","text":"all good"}]}`
	if st, b := call(t, "POST", n.URL()+"/v1/server/batch", key, strings.NewReader(body)); st != http.StatusOK {
		t.Fatalf("all-good batch: %d %s", st, b)
	}
	if st, _ := call(t, "POST", n.URL()+"/v1/server/batch", key, strings.NewReader(`{"messages":[`+strings.Repeat(`{"op":"announce","room":"b1","text":"x"},`, 100)+`{"op":"announce","room":"b1","text":"x"}]}`)); st != 400 {
		t.Fatalf("101 messages: %d", st)
	}
	if _, err := backend.Batch(ctx, make([]client.BatchMessage, 101)); err == nil {
		t.Fatal("the client sent 101 messages")
	}
	for _, bad := range []string{`{"messages":[{"room":"b1"}]}`, `{"messages":[{"op":"gift","room":"b1","user":"u","gift":"rose","order_id":"x","colour":"red"}]}`, `[1]`} {
		st, b := call(t, "POST", n.URL()+"/v1/server/batch", key, strings.NewReader(bad))
		if st != 207 && st != 400 {
			t.Errorf("%s: %d %s", bad, st, b)
		}
	}
}

// TestRoomStateAndLiveRooms: the online counts come from the gateways'
// presence reports; the live-room list orders rooms by viewers, marks live
// sessions, and is public at /v1/rooms for the index page, which renders it.
func TestRoomStateAndLiveRooms(t *testing.T) {
	key := apikey.Generate()
	n, _ := serverNode(t, key, nil)
	viewer(t, n, "big", "b1")
	viewer(t, n, "big", "b2")
	viewer(t, n, "small", "s1")
	anchor := testutil.AnchorToken(t, "star", "small")
	if st := testutil.APICall(t, "POST", n.URL()+"/v1/rooms/small/live/start", anchor, "", nil); st != http.StatusCreated {
		t.Fatalf("live start: %d", st)
	}
	s := &client.Sender{BaseURL: n.URL(), Token: testutil.Token(t, "liker", protocol.RoleViewer)}
	ctx := context.Background()
	if _, err := s.Like(ctx, "big", 7); err != nil {
		t.Fatal(err)
	}
	backend := &client.Server{BaseURL: n.URL(), APIKey: key}
	testutil.Eventually(t, 15*time.Second, "room state", func() bool {
		st, err := backend.Room(ctx, "big")
		return err == nil && st.Online == 2 && st.Likes == 7 && !st.Live
	})
	testutil.Eventually(t, 10*time.Second, "live rooms", func() bool {
		lr, err := backend.LiveRooms(ctx, 0)
		return err == nil && lr.Total == 2 && len(lr.Rooms) == 2 && lr.Rooms[0].Room == "big" && lr.Rooms[0].Online == 2 &&
			lr.Rooms[1].Room == "small" && lr.Rooms[1].Live && lr.Rooms[1].Session != ""
	})
	small, err := backend.Room(ctx, "small")
	if err != nil || !small.Live || small.Session == nil || small.Session.Room != "small" {
		t.Fatalf("small: %+v %v", small, err)
	}
	if lr, err := backend.LiveRooms(ctx, 1); err != nil || len(lr.Rooms) != 1 || lr.Total != 2 {
		t.Fatalf("limit 1: %+v %v", lr, err)
	}
	if _, err := backend.LiveRooms(ctx, 5000); err == nil {
		t.Fatal("limit 5000 accepted")
	}
	if _, err := backend.Room(ctx, "bad room"); err == nil {
		t.Fatal("bad room id accepted")
	}
	var public client.LiveRooms
	if st := testutil.APICall(t, "GET", n.URL()+"/v1/rooms", "", "", &public); st != 200 || public.Total != 2 || public.Rooms[0].Room != "big" {
		t.Fatalf("public list: %d %+v", st, public)
	}
	resp, err := http.Get(n.URL() + "/")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`href="/room/big"`, `2 watching`, `href="/room/small"`, `1 watching`} {
		if !strings.Contains(string(page), want) {
			t.Errorf("index page lacks %q", want)
		}
	}
}
