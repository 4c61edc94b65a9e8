package faulttest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/liveroom/liveroom/client"
	"github.com/liveroom/liveroom/internal/protocol"
	"github.com/liveroom/liveroom/internal/testutil"
)

// moderate posts a moderation action to an uplink and returns the status
// and the decoded answer.
func moderate(t *testing.T, base, room, token string, body map[string]any) (int, map[string]any) {
	t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest(http.MethodPost, base+"/v1/rooms/"+room+"/moderation", bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("moderate: %v", err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

// sendStatus sends one danmaku through an uplink and returns the HTTP status
// and error code (202 and "" when accepted).
func sendStatus(base, room, token, text string) (int, string) {
	s := &client.Sender{BaseURL: base, Token: token, Retries: -1}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := s.Danmaku(ctx, room, text)
	var ae *client.APIError
	switch {
	case err == nil:
		return http.StatusAccepted, ""
	case errors.As(err, &ae):
		return ae.Status, ae.Body.Code
	default:
		return 0, err.Error()
	}
}

func wsURL(httpURL string) string { return "ws" + strings.TrimPrefix(httpURL, "http") + "/v1/ws" }

// readUntil reads frames until one satisfies match, the connection ends or
// timeout passes; it returns the matching frame and the error that ended
// the read, if any.
func readUntil(g *client.GatewayConn, timeout time.Duration, match func(client.Frame) bool) (client.Frame, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for {
		f, err := g.ReadFrame(ctx)
		if err != nil {
			return client.Frame{}, err
		}
		if match(f) {
			return f, nil
		}
	}
}

func noticeWith(action string) func(client.Frame) bool {
	return func(f client.Frame) bool {
		if f.Batch == nil {
			return false
		}
		for _, m := range f.Batch.Msgs {
			if m.Type == protocol.TypeNotice && m.Action == action {
				return true
			}
		}
		return false
	}
}

func errorCode(code string) func(client.Frame) bool {
	return func(f client.Frame) bool { return f.Error != nil && f.Error.Error.Code == code }
}

func dial(t *testing.T, gw, room, token string) (*client.GatewayConn, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	g, err := client.DialGateway(ctx, wsURL(gw), room, token, 0)
	if err != nil {
		return nil, err
	}
	if _, err := readUntil(g, 5*time.Second, func(f client.Frame) bool { return f.Welcome != nil }); err != nil {
		_ = g.Close()
		return nil, err
	}
	return g, nil
}

func refusedWith(err error, code string) bool {
	var ae *client.APIError
	return errors.As(err, &ae) && ae.Status == http.StatusForbidden && ae.Body.Code == code
}

// TestModerationAcrossProcesses applies every moderation path through one
// uplink process and checks it on the other uplink and on a gateway process
// that did not take the order: mute, ban, expiry, kick, slow mode, mute-all,
// close and reopen.
func TestModerationAcrossProcesses(t *testing.T) {
	if raceEnabled {
		t.Skip("multi-process test: runs without -race")
	}
	c := startCluster(t, 1, 2, 2)
	up0, up1 := c.uplinks[0], c.uplinks[1]
	gw0, gw1 := c.gwURLs[0], c.gwURLs[1]
	admin := testutil.Token(t, "boss", protocol.RoleAdmin)
	troll := testutil.Token(t, "troll", protocol.RoleViewer)
	honest := testutil.Token(t, "honest", protocol.RoleViewer)
	const room = "modroom"

	watcher, err := dial(t, gw0, room, honest)
	if err != nil {
		t.Fatal(err)
	}
	defer watcher.Close()

	t.Run("mute through one uplink holds on the other", func(t *testing.T) {
		tc, err := dial(t, gw1, room, troll)
		if err != nil {
			t.Fatal(err)
		}
		defer tc.Close()
		if st, code := sendStatus(up1, room, troll, "before"); st != http.StatusAccepted {
			t.Fatalf("send before the mute: %d %s", st, code)
		}
		st, res := moderate(t, up0, room, admin, map[string]any{"action": "mute", "user": "troll", "duration_s": 3, "reason": "spam"})
		if st != http.StatusOK || res["changed"] != true {
			t.Fatalf("mute: %d %v", st, res)
		}
		at := time.Now()
		testutil.Eventually(t, time.Second, "the mute holds on the other uplink within 1 s", func() bool {
			st, code := sendStatus(up1, room, troll, "during")
			return st == http.StatusForbidden && code == protocol.CodeMuted
		})
		t.Logf("mute held on the other uplink after %v", time.Since(at).Round(time.Millisecond))
		if _, err := readUntil(tc, 2*time.Second, noticeWith("mute")); err != nil {
			t.Fatalf("the muted user got no notice on the other gateway: %v", err)
		}
		if st, code := sendStatus(up1, room, honest, "others still talk"); st != http.StatusAccepted {
			t.Fatalf("an honest viewer was refused: %d %s", st, code)
		}
		testutil.Eventually(t, 6*time.Second, "the mute expires", func() bool {
			st, _ := sendStatus(up0, room, troll, "after")
			return st == http.StatusAccepted
		})
	})

	t.Run("ban closes the connection on another gateway and refuses rejoins until it ends", func(t *testing.T) {
		tc, err := dial(t, gw1, room, troll)
		if err != nil {
			t.Fatal(err)
		}
		defer tc.Close()
		st, res := moderate(t, up1, room, admin, map[string]any{"action": "ban", "user": "troll", "duration_s": 3})
		if st != http.StatusOK || res["changed"] != true {
			t.Fatalf("ban: %d %v", st, res)
		}
		at := time.Now()
		if _, err := readUntil(tc, time.Second, errorCode(protocol.CodeBanned)); err != nil {
			t.Fatalf("no banned frame within 1 s: %v", err)
		}
		if _, err := readUntil(tc, time.Second, func(client.Frame) bool { return false }); errors.Is(err, context.DeadlineExceeded) {
			t.Fatal("the connection stayed open")
		}
		t.Logf("ban closed the connection on the other gateway after %v", time.Since(at).Round(time.Millisecond))
		// The ban reaches each gateway on its own (a few ms apart): the
		// other gateway refuses within a second, and from then on.
		for _, gw := range []string{gw0, gw1} {
			testutil.Eventually(t, time.Second, "rejoins during the ban are refused on "+gw, func() bool {
				g, err := dial(t, gw, room, troll)
				if err == nil {
					g.Close()
				}
				return refusedWith(err, protocol.CodeBanned)
			})
			if _, err := dial(t, gw, room, troll); !refusedWith(err, protocol.CodeBanned) {
				t.Fatalf("rejoin during the ban on %s: %v", gw, err)
			}
		}
		if st, code := sendStatus(up0, room, troll, "x"); st != http.StatusForbidden || code != protocol.CodeBanned {
			t.Fatalf("send during the ban: %d %s", st, code)
		}
		var back *client.GatewayConn
		testutil.Eventually(t, 6*time.Second, "the ban expires and the user may join again", func() bool {
			back, err = dial(t, gw0, room, troll)
			return err == nil
		})
		back.Close()
	})

	t.Run("kick disconnects now and allows a rejoin", func(t *testing.T) {
		tc, err := dial(t, gw1, room, troll)
		if err != nil {
			t.Fatal(err)
		}
		defer tc.Close()
		if st, res := moderate(t, up0, room, admin, map[string]any{"action": "kick", "user": "troll"}); st != http.StatusOK {
			t.Fatalf("kick: %d %v", st, res)
		}
		if _, err := readUntil(tc, time.Second, errorCode(protocol.CodeKicked)); err != nil {
			t.Fatalf("no kicked frame within 1 s: %v", err)
		}
		again, err := dial(t, gw1, room, troll)
		if err != nil {
			t.Fatalf("rejoin after a kick: %v", err)
		}
		again.Close()
	})

	t.Run("slow mode and mute-all spare the anchor", func(t *testing.T) {
		if st, res := moderate(t, up0, room, admin, map[string]any{"action": "set_anchor", "user": "star"}); st != http.StatusOK {
			t.Fatalf("set_anchor: %d %v", st, res)
		}
		star := testutil.Token(t, "star", protocol.RoleAnchor)
		if st, res := moderate(t, up0, room, star, map[string]any{"action": "slow_mode", "interval_s": 30}); st != http.StatusOK {
			t.Fatalf("slow_mode by the anchor: %d %v", st, res)
		}
		testutil.Eventually(t, time.Second, "slow mode holds on the other uplink", func() bool {
			st, code := sendStatus(up1, room, honest, "one")
			return st == http.StatusTooManyRequests && code == protocol.CodeSlowMode
		})
		// Twice within the 30 s interval: a slowed user gets one. (Not more
		// at once: the user rate limit holds across the two uplinks, and a
		// fresh user's burst is split between them until it is used.)
		for range 2 {
			if st, code := sendStatus(up1, room, star, "anchor speaks"); st != http.StatusAccepted {
				t.Fatalf("the anchor was slowed: %d %s", st, code)
			}
		}
		if st, res := moderate(t, up0, room, star, map[string]any{"action": "slow_mode", "interval_s": 0}); st != http.StatusOK {
			t.Fatalf("slow_mode off: %d %v", st, res)
		}
		if st, res := moderate(t, up1, room, star, map[string]any{"action": "mute_all", "on": true}); st != http.StatusOK {
			t.Fatalf("mute_all: %d %v", st, res)
		}
		testutil.Eventually(t, time.Second, "mute-all holds on the other uplink", func() bool {
			st, code := sendStatus(up0, room, honest, "two")
			return st == http.StatusForbidden && code == protocol.CodeMutedAll
		})
		if st, code := sendStatus(up0, room, star, "only me"); st != http.StatusAccepted {
			t.Fatalf("the anchor was muted by mute-all: %d %s", st, code)
		}
		if st, _ := moderate(t, up1, room, troll, map[string]any{"action": "mute_all", "on": false}); st != http.StatusForbidden {
			t.Fatalf("a viewer lifted mute-all: %d", st)
		}
		if st, res := moderate(t, up1, room, star, map[string]any{"action": "mute_all", "on": false}); st != http.StatusOK {
			t.Fatalf("mute_all off: %d %v", st, res)
		}
	})

	t.Run("closing the room tells and disconnects viewers; reopening lets them in", func(t *testing.T) {
		viewer, err := dial(t, gw1, room, troll)
		if err != nil {
			t.Fatal(err)
		}
		defer viewer.Close()
		if st, res := moderate(t, up0, room, admin, map[string]any{"action": "close", "reason": "stream over"}); st != http.StatusOK || res["changed"] != true {
			t.Fatalf("close: %d %v", st, res)
		}
		for _, g := range []*client.GatewayConn{viewer, watcher} {
			if _, err := readUntil(g, 3*time.Second, noticeWith("close")); err != nil {
				t.Fatalf("no closing notice: %v", err)
			}
			if _, err := readUntil(g, 3*time.Second, errorCode(protocol.CodeRoomClosed)); err != nil {
				t.Fatalf("not disconnected with room_closed: %v", err)
			}
		}
		if _, err := dial(t, gw0, room, honest); !refusedWith(err, protocol.CodeRoomClosed) {
			t.Fatalf("join of a closed room: %v", err)
		}
		if st, code := sendStatus(up1, room, honest, "x"); st != http.StatusForbidden || code != protocol.CodeRoomClosed {
			t.Fatalf("send to a closed room: %d %s", st, code)
		}
		if st, res := moderate(t, up1, room, admin, map[string]any{"action": "reopen"}); st != http.StatusOK || res["changed"] != true {
			t.Fatalf("reopen: %d %v", st, res)
		}
		testutil.Eventually(t, time.Second, "joins are accepted again", func() bool {
			g, err := dial(t, gw0, room, honest)
			if err == nil {
				g.Close()
			}
			return err == nil
		})
	})
}
