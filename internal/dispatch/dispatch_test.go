package dispatch

import (
	"encoding/json"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/liveroom/liveroom/internal/bus"
	"github.com/liveroom/liveroom/internal/protocol"
)

func newTestServer(t *testing.T) (*Server, *time.Time) {
	t.Helper()
	s, err := New(Config{NC: &nats.Conn{}})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1000, 0)
	s.nowFn = func() time.Time { return now }
	return s, &now
}

func TestChooseRanksAndFilters(t *testing.T) {
	s, now := newTestServer(t)
	s.Observe(bus.Beat{ID: "busy", URL: "ws://b", State: bus.StateActive, Load: 0.8, Conns: 800})
	s.Observe(bus.Beat{ID: "idle", URL: "ws://i", State: bus.StateActive, Load: 0.1, Conns: 100})
	s.Observe(bus.Beat{ID: "mid", URL: "ws://m", State: bus.StateActive, Load: 0.4, Conns: 400})
	s.Observe(bus.Beat{ID: "drain", URL: "ws://d", State: bus.StateDraining, Load: 0.0})
	*now = now.Add(2 * time.Second)
	s.Observe(bus.Beat{ID: "new", URL: "ws://n", State: bus.StateActive, Load: 0.0, Conns: 0})
	got := s.Choose("r")
	want := []string{"new", "idle", "mid"}
	if len(got) != len(want) {
		t.Fatalf("got %+v", got)
	}
	for i := range want {
		if got[i].ID != want[i] {
			t.Fatalf("got %+v, want order %v", got, want)
		}
	}
	// 1.5 s later the first four are 3.5 s old: stale, never returned.
	*now = now.Add(1500 * time.Millisecond)
	got = s.Choose("r")
	if len(got) != 1 || got[0].ID != "new" {
		t.Fatalf("stale gateways returned: %+v", got)
	}
}

func TestHandler(t *testing.T) {
	s, _ := newTestServer(t)
	h := s.Handler()
	for _, tc := range []struct {
		query  string
		status int
		code   string
	}{
		{"room=a.b", 400, protocol.CodeInvalidRoom},
		{"room=", 400, protocol.CodeInvalidRoom},
		{"room=ok", 503, protocol.CodeUnavailable},
	} {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", "/v1/dispatch?"+tc.query, nil))
		var body struct {
			Error protocol.ErrorBody `json:"error"`
		}
		_ = json.Unmarshal(w.Body.Bytes(), &body)
		if w.Code != tc.status || body.Error.Code != tc.code {
			t.Fatalf("%s: got %d %q", tc.query, w.Code, body.Error.Code)
		}
	}
	s.Observe(bus.Beat{ID: "g", URL: "ws://g/v1/ws", State: bus.StateActive})
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "/v1/dispatch?room=ok", nil))
	var a Answer
	if err := json.Unmarshal(w.Body.Bytes(), &a); err != nil || w.Code != 200 || len(a.Gateways) != 1 || a.Reconnect.BaseMS == 0 {
		t.Fatalf("answer %d %s", w.Code, w.Body)
	}
}
