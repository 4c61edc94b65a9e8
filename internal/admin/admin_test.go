package admin_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/liveroom/liveroom/internal/admin"
	"github.com/liveroom/liveroom/internal/bus"
	"github.com/liveroom/liveroom/internal/protocol"
	"github.com/liveroom/liveroom/internal/testutil"
)

func TestComputeStats(t *testing.T) {
	beats := []bus.Beat{
		{ID: "gw-b", State: bus.StateDraining, Conns: 10, MsgsOut: 300, FramesOut: 30, Dropped: 2, CPU: 0.5, RSS: 100,
			DelayP50MS: 20, DelayP99MS: 90, RoomConns: map[string]int{"lobby": 6, "music": 4}},
		{ID: "gw-a", State: bus.StateActive, Conns: 5, MsgsOut: 100, FramesOut: 10, Dropped: 1, CPU: 0.25, RSS: 50,
			DelayP50MS: 10, DelayP99MS: 40, RoomConns: map[string]int{"lobby": 5}},
		{ID: "gw-c", State: bus.StateActive}, // idle: no delay figures
	}
	st := admin.ComputeStats(beats, time.UnixMilli(1234))
	tt := st.Totals
	if tt.Gateways != 3 || tt.Active != 2 || tt.Draining != 1 || tt.Conns != 15 || tt.MsgsOut != 400 || tt.FramesOut != 40 ||
		tt.Dropped != 3 || tt.CPU != 0.75 || tt.RSS != 150 || st.TS != 1234 {
		t.Errorf("totals %+v", tt)
	}
	if tt.DelayP99MS != 90 {
		t.Errorf("p99 %v, want the worst gateway's 90", tt.DelayP99MS)
	}
	if want := (300*20 + 100*10) / 400.0; tt.DelayP50MS != want {
		t.Errorf("p50 %v, want the msgs-weighted %v", tt.DelayP50MS, want)
	}
	if len(st.Fleet) != 3 || st.Fleet[0].ID != "gw-a" || st.Fleet[2].ID != "gw-c" {
		t.Errorf("gateways not sorted by id: %+v", st.Fleet)
	}
	if len(st.Rooms) != 2 || st.Rooms[0] != (admin.RoomStat{Room: "lobby", Viewers: 11, Gateways: 2}) || st.Rooms[1].Room != "music" {
		t.Errorf("rooms %+v", st.Rooms)
	}
	if empty := admin.ComputeStats(nil, time.Now()); empty.Fleet == nil || empty.Rooms == nil {
		t.Error("an empty fleet must encode as [] not null")
	}
}

func TestStatsEndpoint(t *testing.T) {
	beats := []bus.Beat{{ID: "gw-1", State: bus.StateActive, Conns: 3, RoomConns: map[string]int{"lobby": 3}}}
	h := admin.Handler(admin.Config{Verifier: testutil.Verifier(t), Logger: testutil.Logger(), Gateways: func() []bus.Beat { return beats }})
	noBeats := admin.Handler(admin.Config{Verifier: testutil.Verifier(t), Logger: testutil.Logger()})
	adminTok := testutil.Token(t, "op", protocol.RoleAdmin)
	tests := []struct {
		name    string
		h       http.Handler
		method  string
		token   string
		status  int
		errCode string
	}{
		{"admin", h, http.MethodGet, adminTok, 200, ""},
		{"no token", h, http.MethodGet, "", 401, protocol.CodeUnauthorized},
		{"viewer", h, http.MethodGet, testutil.Token(t, "v", protocol.RoleViewer), 403, protocol.CodeForbidden},
		{"post", h, http.MethodPost, adminTok, 405, protocol.CodeMethodNotAllowed},
		{"no beats here", noBeats, http.MethodGet, adminTok, 404, protocol.CodeNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(tc.method, admin.StatsPath, nil)
			if tc.token != "" {
				req.Header.Set("Authorization", "Bearer "+tc.token)
			}
			rec := httptest.NewRecorder()
			tc.h.ServeHTTP(rec, req)
			if rec.Code != tc.status {
				t.Fatalf("status %d, want %d: %s", rec.Code, tc.status, rec.Body)
			}
			if tc.errCode != "" {
				var e struct {
					Error struct{ Code string } `json:"error"`
				}
				if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Error.Code != tc.errCode {
					t.Errorf("error %s, want code %s", rec.Body, tc.errCode)
				}
				return
			}
			var st admin.Stats
			if err := json.Unmarshal(rec.Body.Bytes(), &st); err != nil {
				t.Fatal(err)
			}
			if st.Totals.Conns != 3 || len(st.Fleet) != 1 || len(st.Rooms) != 1 || st.Rooms[0].Room != "lobby" {
				t.Errorf("stats %s", rec.Body)
			}
		})
	}
}
