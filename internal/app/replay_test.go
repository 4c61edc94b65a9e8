package app

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/liveroom/liveroom/internal/protocol"
	"github.com/liveroom/liveroom/internal/testutil"
)

type sessionJSON struct {
	ID         string `json:"id"`
	StartedMS  int64  `json:"started_ms"`
	StoppedMS  int64  `json:"stopped_ms"`
	Live       bool   `json:"live"`
	DurationMS int64  `json:"duration_ms"`
	Messages   int64  `json:"messages"`
}

type replayJSON struct {
	Room       string             `json:"room"`
	Session    string             `json:"session"`
	FromMS     int64              `json:"from_ms"`
	ToMS       int64              `json:"to_ms"`
	NextFromMS *int64             `json:"next_from_ms"`
	Msgs       []protocol.Message `json:"msgs"`
	Error      protocol.ErrorBody `json:"error"`
}

// TestSessionRecordedAndReplayed: viewers record what they see during a
// live session; afterwards the replay API returns exactly those messages,
// with the same offsets (and sequences for gifts), in offset order.
func TestSessionRecordedAndReplayed(t *testing.T) {
	n := startNode(t, testutil.Secret)
	const room = "show"
	base := n.URL() + "/v1/rooms/" + room
	viewers := []*recorder{viewer(t, n, room, "v1"), viewer(t, n, room, "v2")}
	anchor := testutil.AnchorToken(t, "star", room)

	if st := testutil.APICall(t, "POST", base+"/live/start", testutil.Token(t, "nobody", protocol.RoleViewer), "", nil); st != http.StatusForbidden {
		t.Fatalf("viewer starting a session: %d, want 403", st)
	}
	var s sessionJSON
	if st := testutil.APICall(t, "POST", base+"/live/start", anchor, "", &s); st != http.StatusCreated || !s.Live || s.ID == "" {
		t.Fatalf("start: %d %+v", st, s)
	}
	var again sessionJSON
	if st := testutil.APICall(t, "POST", base+"/live/start", anchor, "", &again); st != http.StatusOK || again.ID != s.ID {
		t.Fatalf("second start: %d %+v, want 200 and the same session %s", st, again, s.ID)
	}
	testutil.Eventually(t, 5*time.Second, "uplink sees the session", func() bool {
		return n.Uplink().LiveSession(room) == s.ID
	})

	sent := 0
	for i := range 24 {
		user := fmt.Sprintf("u%d", i%6)
		tok := testutil.Token(t, user, protocol.RoleViewer)
		body := fmt.Sprintf(`{"type":"danmaku","text":"hello %d"}`, i)
		if i%4 == 3 {
			body = `{"type":"gift","gift":"rocket","count":1}`
		}
		if st := testutil.APICall(t, "POST", n.URL()+"/v1/rooms/"+room+"/messages", tok, body, nil); st != http.StatusAccepted {
			t.Fatalf("send %d: %d", i, st)
		}
		sent++
		time.Sleep(60 * time.Millisecond)
	}
	var stopped sessionJSON
	if st := testutil.APICall(t, "POST", base+"/live/stop", anchor, "", &stopped); st != http.StatusOK || stopped.Live || stopped.StoppedMS == 0 {
		t.Fatalf("stop: %d %+v", st, stopped)
	}
	if st := testutil.APICall(t, "POST", base+"/live/stop", anchor, "", nil); st != http.StatusConflict {
		t.Fatalf("second stop: %d, want 409", st)
	}

	// What each viewer saw of the session: everything but the live_start
	// notice may race the viewer's join, so wait for all of it.
	seen := func(r *recorder) []protocol.Message {
		r.mu.Lock()
		defer r.mu.Unlock()
		var out []protocol.Message
		for _, m := range r.msgs {
			if m.Session == s.ID {
				out = append(out, m)
			}
		}
		return out
	}
	want := sent + 2 // + live_start and live_stop notices
	for i, v := range viewers {
		testutil.Eventually(t, 10*time.Second, fmt.Sprintf("viewer %d sees the session", i), func() bool {
			return len(seen(v)) == want
		})
	}
	var got replayJSON
	url := fmt.Sprintf("%s/sessions/%s/replay?from_ms=0&to_ms=%d", base, s.ID, stopped.DurationMS+1)
	testutil.Eventually(t, 10*time.Second, "the archive holds the session", func() bool {
		got = replayJSON{}
		return testutil.APICall(t, "GET", url, "", "", &got) == http.StatusOK && len(got.Msgs) == want
	})
	key := func(m protocol.Message) string {
		return fmt.Sprintf("%s %s seq=%d offset=%d text=%q gift=%q action=%q", m.ID, m.Type, m.Seq, m.OffsetMS, m.Text, m.Gift, m.Action)
	}
	var replayed []string
	for i, m := range got.Msgs {
		if i > 0 && m.OffsetMS < got.Msgs[i-1].OffsetMS {
			t.Errorf("replay out of order at %d: %d after %d", i, m.OffsetMS, got.Msgs[i-1].OffsetMS)
		}
		replayed = append(replayed, key(m))
	}
	slices.Sort(replayed)
	for i, v := range viewers {
		var live []string
		for _, m := range seen(v) {
			live = append(live, key(m))
		}
		slices.Sort(live)
		if !slices.Equal(live, replayed) {
			t.Errorf("viewer %d saw:\n%s\nreplay:\n%s", i, strings.Join(live, "\n"), strings.Join(replayed, "\n"))
		}
	}
	if last := got.Msgs[len(got.Msgs)-1]; last.Action != "live_stop" || last.OffsetMS != stopped.DurationMS {
		t.Errorf("last replayed message %+v, want the live_stop notice at %d", last, stopped.DurationMS)
	}

	// A window returns just its part.
	mid := got.Msgs[len(got.Msgs)/2].OffsetMS
	var part replayJSON
	if st := testutil.APICall(t, "GET", fmt.Sprintf("%s/sessions/%s/replay?from_ms=%d&to_ms=%d", base, s.ID, mid, mid+1), "", "", &part); st != http.StatusOK || len(part.Msgs) == 0 {
		t.Fatalf("one-ms window: %d %+v", st, part)
	}
	for _, m := range part.Msgs {
		if m.OffsetMS != mid {
			t.Errorf("window [%d,%d) returned offset %d", mid, mid+1, m.OffsetMS)
		}
	}

	var list struct {
		Room     string        `json:"room"`
		Sessions []sessionJSON `json:"sessions"`
	}
	if st := testutil.APICall(t, "GET", base+"/sessions", "", "", &list); st != http.StatusOK || len(list.Sessions) != 1 ||
		list.Sessions[0].ID != s.ID || list.Sessions[0].Live || list.Sessions[0].Messages != int64(want) {
		t.Fatalf("sessions: %d %+v", st, list)
	}

	for _, tc := range []struct {
		name, query string
		status      int
		code        string
	}{
		{"window over 60s", "sessions/" + s.ID + "/replay?from_ms=0&to_ms=60001", 400, protocol.CodeInvalidField},
		{"to before from", "sessions/" + s.ID + "/replay?from_ms=10&to_ms=5", 400, protocol.CodeInvalidField},
		{"negative from", "sessions/" + s.ID + "/replay?from_ms=-1", 400, protocol.CodeInvalidField},
		{"bad session id", "sessions/a.b/replay", 400, protocol.CodeInvalidField},
		{"unknown session", "sessions/nope/replay", 404, protocol.CodeNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var a replayJSON
			if st := testutil.APICall(t, "GET", base+"/"+tc.query, "", "", &a); st != tc.status || a.Error.Code != tc.code {
				t.Errorf("%d %q, want %d %q", st, a.Error.Code, tc.status, tc.code)
			}
		})
	}
}
