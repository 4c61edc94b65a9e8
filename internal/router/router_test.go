package router

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/liveroom/liveroom/internal/protocol"
)

func TestRouterRoomRoutes(t *testing.T) {
	echo := func(name string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_ = json.NewEncoder(w).Encode(map[string]string{
				"route": name, "room": r.PathValue("room"), "session": r.PathValue("session"),
			})
		})
	}
	rt := New(Config{RoomRoutes: []RoomRoute{
		{Pattern: "live/start", Methods: []string{http.MethodPost}, Handler: echo("start")},
		{Pattern: "sessions", Methods: []string{http.MethodGet}, Handler: echo("list")},
		{Pattern: "sessions/{session}/replay", Methods: []string{http.MethodGet}, Handler: echo("replay")},
	}})
	cases := []struct {
		name, method, path   string
		status               int
		route, room, session string
		code                 string
	}{
		{"start", "POST", "/v1/rooms/r1/live/start", 200, "start", "r1", "", ""},
		{"list", "GET", "/v1/rooms/r-2/sessions", 200, "list", "r-2", "", ""},
		{"replay", "GET", "/v1/rooms/r1/sessions/s9/replay", 200, "replay", "r1", "s9", ""},
		{"wrong method", "GET", "/v1/rooms/r1/live/start", 405, "", "", "", protocol.CodeMethodNotAllowed},
		{"bad room", "POST", "/v1/rooms/a.b/live/start", 400, "", "", "", protocol.CodeInvalidRoom},
		{"escaped slash in room", "POST", "/v1/rooms/a%2Fb/live/start", 400, "", "", "", protocol.CodeInvalidRoom},
		{"wildcard room", "GET", "/v1/rooms/%3E/sessions", 400, "", "", "", protocol.CodeInvalidRoom},
		{"empty session", "GET", "/v1/rooms/r1/sessions//replay", 404, "", "", "", protocol.CodeNotFound},
		{"unknown rest", "GET", "/v1/rooms/r1/nothing", 404, "", "", "", protocol.CodeNotFound},
		{"too many segments", "GET", "/v1/rooms/r1/sessions/s/replay/x", 404, "", "", "", protocol.CodeNotFound},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			rt.ServeHTTP(rec, httptest.NewRequest(tc.method, tc.path, nil))
			if rec.Code != tc.status {
				t.Fatalf("status %d, want %d: %s", rec.Code, tc.status, rec.Body)
			}
			if tc.code != "" {
				var e protocol.ErrorFrame
				if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Error.Code != tc.code {
					t.Fatalf("body %s, want code %s", rec.Body, tc.code)
				}
				return
			}
			var got map[string]string
			if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
				t.Fatal(err)
			}
			if got["route"] != tc.route || got["room"] != tc.room || got["session"] != tc.session {
				t.Fatalf("got %v, want route %s room %s session %s", got, tc.route, tc.room, tc.session)
			}
		})
	}
}
