package app

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/liveroom/liveroom/client"
	"github.com/liveroom/liveroom/internal/moderation"
	"github.com/liveroom/liveroom/internal/protocol"
	"github.com/liveroom/liveroom/internal/testutil"
	"github.com/liveroom/liveroom/internal/webhook"
)

func postModeration(t *testing.T, n *Node, room, token string, body any) (int, []byte) {
	t.Helper()
	b, _ := json.Marshal(body)
	return call(t, http.MethodPost, n.URL()+"/v1/rooms/"+room+"/moderation", token, bytes.NewReader(b))
}

func sendCode(s *client.Sender, room, text string) (int, string) {
	_, err := s.Danmaku(context.Background(), room, text)
	var ae *client.APIError
	switch {
	case err == nil:
		return http.StatusAccepted, ""
	case errors.As(err, &ae):
		return ae.Status, ae.Body.Code
	}
	return 0, err.Error()
}

// TestModerationAPI drives the moderation API of one node: who may call it,
// what bad requests get, and that every control reaches the send path.
func TestModerationAPI(t *testing.T) {
	n := startNode(t, testutil.Secret)
	admin := testutil.Token(t, "boss", protocol.RoleAdmin)
	viewerTok := testutil.Token(t, "v1", protocol.RoleViewer)
	star := testutil.Token(t, "star", protocol.RoleAnchor)
	v1 := &client.Sender{BaseURL: n.URL(), Token: viewerTok}
	anchor := &client.Sender{BaseURL: n.URL(), Token: star}

	for _, tc := range []struct {
		name   string
		token  string
		body   string
		status int
		code   string
	}{
		{"no token", "", `{"action":"mute","user":"v1","duration_s":5}`, 401, protocol.CodeUnauthorized},
		{"viewer", viewerTok, `{"action":"mute","user":"v2","duration_s":5}`, 403, protocol.CodeForbidden},
		{"anchor of no room", star, `{"action":"mute","user":"v2","duration_s":5}`, 403, protocol.CodeForbidden},
		{"not json", admin, `mute`, 400, protocol.CodeInvalidJSON},
		{"unknown field", admin, `{"action":"mute","user":"v1","duration_s":5,"forever":true}`, 400, protocol.CodeInvalidJSON},
		{"bad user", admin, `{"action":"ban","user":"lr.>","duration_s":5}`, 400, protocol.CodeInvalidField},
		{"too large", admin, `{"action":"announce","text":"` + strings.Repeat("x", 5000) + `"}`, 413, protocol.CodeTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, b := call(t, http.MethodPost, n.URL()+"/v1/rooms/show/moderation", tc.token, strings.NewReader(tc.body))
			var e protocol.ErrorFrame
			if err := json.Unmarshal(b, &e); err != nil || status != tc.status || e.Error.Code != tc.code {
				t.Fatalf("got %d %+v (%v), want %d %s", status, e, err, tc.status, tc.code)
			}
		})
	}

	// The anchor claims the room, then moderates it.
	if got, err := n.Moderation().ClaimAnchor(context.Background(), "show", "star"); err != nil || got != "star" {
		t.Fatalf("claim: %q %v", got, err)
	}
	if st, b := postModeration(t, n, "show", star, map[string]any{"action": "slow_mode", "interval_s": 60}); st != 200 {
		t.Fatalf("slow mode: %d %s", st, b)
	}
	if st, code := sendCode(v1, "show", "first"); st != 202 {
		t.Fatalf("first comment in slow mode: %d %s", st, code)
	}
	if st, code := sendCode(v1, "show", "second"); st != 429 || code != protocol.CodeSlowMode {
		t.Fatalf("second comment in slow mode: %d %s", st, code)
	}
	if st, code := sendCode(anchor, "show", "anchor is exempt"); st != 202 {
		t.Fatalf("anchor in slow mode: %d %s", st, code)
	}
	if st, b := postModeration(t, n, "show", star, map[string]any{"action": "slow_mode", "interval_s": 0}); st != 200 {
		t.Fatalf("slow mode off: %d %s", st, b)
	}
	if st, b := postModeration(t, n, "show", star, map[string]any{"action": "mute", "user": "v1", "duration_s": 60, "reason": "rude"}); st != 200 {
		t.Fatalf("mute: %d %s", st, b)
	}
	_, err := v1.Danmaku(context.Background(), "show", "muted?")
	var ae *client.APIError
	if !errors.As(err, &ae) || ae.Status != 403 || ae.Body.Code != protocol.CodeMuted {
		t.Fatalf("muted send: %v", err)
	}
	if !strings.Contains(ae.Body.Message, "until") {
		t.Fatalf("the muted answer does not say until when: %q", ae.Body.Message)
	}
	if _, err := v1.Gift(context.Background(), "show", "rose", 1, "k1"); err != nil {
		t.Fatalf("a muted viewer's gift was refused: %v", err)
	}
	// GET shows the state.
	status, b := call(t, http.MethodGet, n.URL()+"/v1/rooms/show/moderation", star, nil)
	var view moderation.View
	if err := json.Unmarshal(b, &view); err != nil || status != 200 {
		t.Fatalf("GET: %d %v", status, err)
	}
	if view.Anchor != "star" || len(view.Mutes) != 1 || view.Mutes[0].User != "v1" || view.Mutes[0].Reason != "rude" || len(view.Bans) != 0 {
		t.Fatalf("view %+v", view)
	}
}

func TestWordFilterOnTheSendPath(t *testing.T) {
	wf, err := moderation.NewWordFilter([]string{"spamlink"}, []string{"darn"})
	if err != nil {
		t.Fatal(err)
	}
	n := startNodeWith(t, func(c *Config) { c.Uplink.Words = wf })
	rec := viewer(t, n, "w", "watcher")
	s := &client.Sender{BaseURL: n.URL(), Token: testutil.Token(t, "talker", protocol.RoleViewer)}
	if st, code := sendCode(s, "w", "visit SPAMLINK now"); st != 400 || code != protocol.CodeBlockedWord {
		t.Fatalf("blocked word: %d %s", st, code)
	}
	if st, code := sendCode(s, "w", "oh darn"); st != 202 {
		t.Fatalf("masked word: %d %s", st, code)
	}
	testutil.Eventually(t, 5*time.Second, "the masked comment arrives", func() bool { return rec.count(protocol.TypeDanmaku, "oh ****") == 1 })
	if rec.count(protocol.TypeDanmaku, "oh darn") != 0 {
		t.Fatal("the unmasked text reached a viewer")
	}
}

// TestBanAndCloseReachTheGateway: under the race detector, a ban closes the
// banned viewer's connection (and only theirs) and refuses their rejoin; a
// closed room disconnects its viewers and refuses joins until reopened.
func TestBanAndCloseReachTheGateway(t *testing.T) {
	n := startNode(t, testutil.Secret)
	admin := testutil.Token(t, "boss", protocol.RoleAdmin)
	ws := "ws" + strings.TrimPrefix(n.URL(), "http") + "/v1/ws"
	dial := func(user string) (*client.GatewayConn, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return client.DialGateway(ctx, ws, "arena", testutil.Token(t, user, protocol.RoleViewer), 0)
	}
	// next reads frames until one matches or the connection ends.
	next := func(g *client.GatewayConn, match func(client.Frame) bool) bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		for {
			f, err := g.ReadFrame(ctx)
			if err != nil {
				return false
			}
			if match(f) {
				return true
			}
		}
	}
	errCode := func(code string) func(client.Frame) bool {
		return func(f client.Frame) bool { return f.Error != nil && f.Error.Error.Code == code }
	}
	troll, err := dial("troll")
	if err != nil {
		t.Fatal(err)
	}
	defer troll.Close()
	honest, err := dial("honest")
	if err != nil {
		t.Fatal(err)
	}
	defer honest.Close()
	testutil.Eventually(t, 5*time.Second, "both joined", func() bool { return n.Gateway().Stats().Conns.Load() == 2 })
	if st, b := postModeration(t, n, "arena", admin, map[string]any{"action": "ban", "user": "troll", "duration_s": 60}); st != 200 {
		t.Fatalf("ban: %d %s", st, b)
	}
	if !next(troll, errCode(protocol.CodeBanned)) {
		t.Fatal("the banned viewer was not told")
	}
	if _, err := dial("troll"); err == nil {
		t.Fatal("the banned viewer joined again")
	}
	if n.Gateway().Stats().Conns.Load() < 1 {
		t.Fatal("the honest viewer was disconnected by someone else's ban")
	}
	if st, b := postModeration(t, n, "arena", admin, map[string]any{"action": "close"}); st != 200 {
		t.Fatalf("close: %d %s", st, b)
	}
	if !next(honest, errCode(protocol.CodeRoomClosed)) {
		t.Fatal("the viewer of a closed room was not disconnected")
	}
	var ae *client.APIError
	if _, err := dial("late"); !errors.As(err, &ae) || ae.Body.Code != protocol.CodeRoomClosed {
		t.Fatalf("join of a closed room: %v", err)
	}
	if st, b := postModeration(t, n, "arena", admin, map[string]any{"action": "reopen"}); st != 200 {
		t.Fatalf("reopen: %d %s", st, b)
	}
	g, err := dial("late")
	if err != nil {
		t.Fatalf("join after reopen: %v", err)
	}
	g.Close()
}

// TestAnnouncementCarriesTheLiveSession: a room notice published during a
// live session carries the session and its offset, like any message, so the
// replay shows it in its place.
func TestAnnouncementCarriesTheLiveSession(t *testing.T) {
	n := startNode(t, testutil.Secret)
	star := testutil.AnchorToken(t, "star", "stage")
	status, b := call(t, http.MethodPost, n.URL()+"/v1/rooms/stage/live/start", star, nil)
	var sess struct {
		ID        string `json:"id"`
		StartedMS int64  `json:"started_ms"`
	}
	if err := json.Unmarshal(b, &sess); err != nil || status/100 != 2 || sess.ID == "" {
		t.Fatalf("live start: %d %+v %v", status, sess, err)
	}
	testutil.Eventually(t, 5*time.Second, "the uplink sees the session", func() bool { return n.Uplink().LiveSession("stage") == sess.ID })
	rec := viewer(t, n, "stage", "fan")
	// The anchor claimed the room by starting it, so it may announce.
	st, b := postModeration(t, n, "stage", star, map[string]any{"action": "announce", "text": "we are live"})
	if st != 200 {
		t.Fatalf("announce: %d %s", st, b)
	}
	testutil.Eventually(t, 5*time.Second, "the announcement arrives", func() bool { return rec.count(protocol.TypeNotice, "we are live") == 1 })
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for _, m := range rec.msgs {
		if m.Type == protocol.TypeNotice && m.Text == "we are live" {
			if m.Session != sess.ID || m.OffsetMS != m.TS-sess.StartedMS || m.Seq == 0 || m.Action != moderation.ActionAnnounce {
				t.Fatalf("notice %+v, session %+v", m, sess)
			}
			return
		}
	}
}

// TestModerationActionsReachWebhooks: every action that changed something
// (here a mute, an unmute and a kick) reaches a webhook endpoint subscribed
// to "moderation", with who acted and on whom; a repeated mute that changes
// nothing is not sent again.
func TestModerationActionsReachWebhooks(t *testing.T) {
	type hook struct {
		Event   string           `json:"event"`
		Message protocol.Message `json:"message"`
	}
	got := make(chan hook, 16)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var h hook
		if json.NewDecoder(r.Body).Decode(&h) == nil {
			got <- h
		}
	}))
	defer srv.Close()
	n := startNodeWith(t, func(c *Config) {
		c.NonCore.Webhooks = webhook.Config{Endpoints: []webhook.Endpoint{{URL: srv.URL, Events: []string{webhook.EventModeration}, Secret: "s3cret-for-tests"}}}
	})
	admin := testutil.Token(t, "boss", protocol.RoleAdmin)
	for _, body := range []map[string]any{
		{"action": "mute", "user": "troll", "duration_s": 60, "reason": "spam"},
		{"action": "mute", "user": "troll", "duration_s": 60, "reason": "spam"}, // changes nothing
		{"action": "unmute", "user": "troll"},
		{"action": "kick", "user": "troll"},
	} {
		if st, b := postModeration(t, n, "hooked", admin, body); st != 200 {
			t.Fatalf("%v: %d %s", body, st, b)
		}
	}
	var actions []string
	for range 3 {
		select {
		case h := <-got:
			if h.Event != webhook.EventModeration || h.Message.Target != "troll" || h.Message.User != "boss" || h.Message.Room != "hooked" {
				t.Fatalf("webhook %+v", h)
			}
			actions = append(actions, h.Message.Action)
		case <-time.After(10 * time.Second):
			t.Fatalf("webhooks so far: %v", actions)
		}
	}
	// Deliveries run concurrently: compare as a set.
	slices.Sort(actions)
	if strings.Join(actions, ",") != "kick,mute,unmute" {
		t.Fatalf("actions %v, want kick, mute and unmute", actions)
	}
	select {
	case h := <-got:
		t.Fatalf("an extra webhook: %+v", h)
	case <-time.After(500 * time.Millisecond):
	}
}

// TestAnchorsOwnOnlyTheirRooms: an anchor token claims and runs only the
// rooms its rooms claim names; it cannot take over another room, moderate a
// room another anchor runs, or silence an admin; a stranger's stop is
// refused before the room's state is looked at.
func TestAnchorsOwnOnlyTheirRooms(t *testing.T) {
	n := startNode(t, testutil.Secret)
	start := func(room, tok string) int {
		st, _ := call(t, http.MethodPost, n.URL()+"/v1/rooms/"+room+"/live/start", tok, nil)
		return st
	}
	noClaim := testutil.Token(t, "drifter", protocol.RoleAnchor)
	alice := testutil.AnchorToken(t, "alice", "alice-show")
	mallory := testutil.AnchorToken(t, "mallory", "mallory-show")
	admin := testutil.Token(t, "boss", protocol.RoleAdmin)
	viewerTok := testutil.Token(t, "v1", protocol.RoleViewer)
	if st := start("free-room", noClaim); st != http.StatusForbidden {
		t.Fatalf("an anchor token without rooms started an anchorless room: %d", st)
	}
	if st := start("alice-show", mallory); st != http.StatusForbidden {
		t.Fatalf("an anchor started a room its token does not name: %d", st)
	}
	if st := start("alice-show", alice); st != http.StatusCreated {
		t.Fatalf("an anchor starting its own room: %d", st)
	}
	// Alice now runs alice-show; mallory may not moderate it, even though
	// it is not anchorless any more.
	if st, b := postModeration(t, n, "alice-show", mallory, map[string]any{"action": "ban", "user": "alice", "duration_s": 60}); st != http.StatusForbidden {
		t.Fatalf("another anchor banning the room's anchor: %d %s", st, b)
	}
	if st, b := postModeration(t, n, "alice-show", mallory, map[string]any{"action": "close"}); st != http.StatusForbidden {
		t.Fatalf("another anchor closing the room: %d %s", st, b)
	}
	// A stranger's stop is refused for who it is, not for the room's state.
	for name, tok := range map[string]string{"viewer": viewerTok, "other anchor": mallory} {
		if st, _ := call(t, http.MethodPost, n.URL()+"/v1/rooms/not-live/live/stop", tok, nil); st != http.StatusForbidden {
			t.Fatalf("%s stopping a room that is not live: %d, want 403 before 409", name, st)
		}
	}
	// An anchor's mute and ban of an admin's user id do not silence or
	// lock out the admin.
	for _, action := range []string{"mute", "ban"} {
		if st, b := postModeration(t, n, "alice-show", alice, map[string]any{"action": action, "user": "boss", "duration_s": 60}); st != http.StatusOK {
			t.Fatalf("%s: %d %s", action, st, b)
		}
	}
	boss := &client.Sender{BaseURL: n.URL(), Token: admin}
	if st, code := sendCode(boss, "alice-show", "still here"); st != http.StatusAccepted {
		t.Fatalf("an admin muted and banned by an anchor cannot speak: %d %s", st, code)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Connect(ctx, client.Config{BaseURL: n.URL(), Room: "alice-show", Token: admin})
	if err != nil {
		t.Fatalf("an admin banned by an anchor cannot join: %v", err)
	}
	_ = c.Close()
	// The same sanctions hold for a viewer of that id.
	v := &client.Sender{BaseURL: n.URL(), Token: testutil.Token(t, "boss", protocol.RoleViewer)}
	if st, code := sendCode(v, "alice-show", "me too"); st != http.StatusForbidden || code != protocol.CodeBanned {
		t.Fatalf("a viewer token of the banned id: %d %s", st, code)
	}
}
