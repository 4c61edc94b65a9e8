package admin_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/liveroom/liveroom/internal/admin"
	"github.com/liveroom/liveroom/internal/announce"
	"github.com/liveroom/liveroom/internal/bus"
	"github.com/liveroom/liveroom/internal/protocol"
	"github.com/liveroom/liveroom/internal/testutil"
)

// TestAnnouncementsEndpoint: only an admin token may list, announce or
// delete; viewers and anchors are refused; bad bodies get a 400 naming the
// field; what is announced is listed, shown in the stats, and deleted.
func TestAnnouncementsEndpoint(t *testing.T) {
	_, _, js := testutil.StartBackbone(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := announce.Open(ctx, announce.Config{JS: js, Logger: testutil.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	h := admin.Handler(admin.Config{Verifier: testutil.Verifier(t), Logger: testutil.Logger(), Announcements: st,
		Gateways: func() []bus.Beat { return nil }})
	none := admin.Handler(admin.Config{Verifier: testutil.Verifier(t), Logger: testutil.Logger()})
	adminTok := testutil.Token(t, "op", protocol.RoleAdmin)
	viewer := testutil.Token(t, "v", protocol.RoleViewer)
	anchor := testutil.Token(t, "a", protocol.RoleAnchor)
	at := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	good := `{"room":"star","viewers":5000,"at":"` + at + `","note":"cup final"}`
	do := func(h http.Handler, method, path, token, body string) (int, string, http.Header) {
		req := httptest.NewRequest(method, path, strings.NewReader(body))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		b, _ := io.ReadAll(rec.Body)
		return rec.Code, string(b), rec.Header()
	}
	code := func(body string) string {
		var e struct {
			Error protocol.ErrorBody `json:"error"`
		}
		_ = json.Unmarshal([]byte(body), &e)
		return e.Error.Code + "/" + e.Error.Field
	}
	for _, tc := range []struct {
		name, method, path, token, body string
		status                          int
		code                            string
	}{
		{"no token", "POST", admin.AnnouncementsPath, "", good, 401, protocol.CodeUnauthorized + "/"},
		{"viewer announces", "POST", admin.AnnouncementsPath, viewer, good, 403, protocol.CodeForbidden + "/"},
		{"anchor announces", "POST", admin.AnnouncementsPath, anchor, good, 403, protocol.CodeForbidden + "/"},
		{"viewer lists", "GET", admin.AnnouncementsPath, viewer, "", 403, protocol.CodeForbidden + "/"},
		{"anchor deletes", "DELETE", admin.AnnouncementsPath + "/an-x", anchor, "", 403, protocol.CodeForbidden + "/"},
		{"no token deletes", "DELETE", admin.AnnouncementsPath + "/an-x", "", "", 401, protocol.CodeUnauthorized + "/"},
		{"put", "PUT", admin.AnnouncementsPath, adminTok, good, 405, protocol.CodeMethodNotAllowed + "/"},
		{"get one", "GET", admin.AnnouncementsPath + "/an-x", adminTok, "", 405, protocol.CodeMethodNotAllowed + "/"},
		{"lookalike path", "GET", admin.AnnouncementsPath + "x", adminTok, "", 404, protocol.CodeNotFound + "/"},
		{"not json", "POST", admin.AnnouncementsPath, adminTok, "{", 400, protocol.CodeInvalidJSON + "/"},
		{"viewers as a string", "POST", admin.AnnouncementsPath, adminTok, `{"room":"star","viewers":"many","at":"` + at + `"}`, 400, protocol.CodeInvalidJSON + "/"},
		{"time not RFC 3339", "POST", admin.AnnouncementsPath, adminTok, `{"room":"star","viewers":1,"at":"tomorrow"}`, 400, protocol.CodeInvalidJSON + "/"},
		{"time as a number", "POST", admin.AnnouncementsPath, adminTok, `{"room":"star","viewers":1,"at":5}`, 400, protocol.CodeInvalidJSON + "/"},
		{"an array", "POST", admin.AnnouncementsPath, adminTok, `[1]`, 400, protocol.CodeInvalidJSON + "/"},
		{"unknown field", "POST", admin.AnnouncementsPath, adminTok, `{"room":"star","viewers":1,"at":"` + at + `","x":1}`, 400, protocol.CodeInvalidJSON + "/"},
		{"bad room", "POST", admin.AnnouncementsPath, adminTok, `{"room":"a.b","viewers":1,"at":"` + at + `"}`, 400, protocol.CodeInvalidRoom + "/room"},
		{"no viewers", "POST", admin.AnnouncementsPath, adminTok, `{"room":"star","at":"` + at + `"}`, 400, protocol.CodeInvalidField + "/viewers"},
		{"no time", "POST", admin.AnnouncementsPath, adminTok, `{"room":"star","viewers":3}`, 400, protocol.CodeInvalidField + "/at"},
		{"huge body", "POST", admin.AnnouncementsPath, adminTok, `{"note":"` + strings.Repeat("x", 5000) + `"}`, 413, protocol.CodeTooLarge + "/"},
		{"bad id", "DELETE", admin.AnnouncementsPath + "/a.b", adminTok, "", 400, protocol.CodeInvalidField + "/id"},
		{"unknown id", "DELETE", admin.AnnouncementsPath + "/an-nope", adminTok, "", 404, protocol.CodeNotFound + "/id"},
		{"no store", "GET", admin.AnnouncementsPath, adminTok, "", 404, protocol.CodeNotFound + "/"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hh := h
			if tc.name == "no store" {
				hh = none
			}
			status, body, _ := do(hh, tc.method, tc.path, tc.token, tc.body)
			if status != tc.status || code(body) != tc.code {
				t.Fatalf("got %d %s, want %d %s", status, body, tc.status, tc.code)
			}
			testutil.NoGoInternals(t, tc.name, body)
		})
	}
	if l := st.List(time.Now()); len(l) != 0 {
		t.Fatalf("refused calls stored %+v", l)
	}

	status, body, hdr := do(h, "POST", admin.AnnouncementsPath, adminTok, good)
	var a announce.Announcement
	if err := json.Unmarshal([]byte(body), &a); status != 201 || err != nil || a.Room != "star" || a.Viewers != 5000 || a.By != "op" ||
		a.Note != "cup final" || hdr.Get("Location") != admin.AnnouncementsPath+"/"+a.ID {
		t.Fatalf("announce: %d %s %v", status, body, hdr)
	}
	status, body, _ = do(h, "GET", admin.AnnouncementsPath, adminTok, "")
	var list admin.AnnouncementList
	if err := json.Unmarshal([]byte(body), &list); status != 200 || err != nil || len(list.Announcements) != 1 || list.Announcements[0].ID != a.ID {
		t.Fatalf("list: %d %s", status, body)
	}
	status, body, _ = do(h, "GET", admin.StatsPath, adminTok, "")
	var stats admin.Stats
	if err := json.Unmarshal([]byte(body), &stats); status != 200 || err != nil || len(stats.Announcements) != 1 || stats.Announcements[0].ID != a.ID {
		t.Fatalf("stats: %d %s", status, body)
	}
	if status, body, _ = do(h, "DELETE", admin.AnnouncementsPath+"/"+a.ID, viewer, ""); status != 403 {
		t.Fatalf("viewer deletes: %d %s", status, body)
	}
	if status, body, _ = do(h, "DELETE", admin.AnnouncementsPath+"/"+a.ID, adminTok, ""); status != 204 {
		t.Fatalf("delete: %d %s", status, body)
	}
	if status, _, _ = do(h, "DELETE", admin.AnnouncementsPath+"/"+a.ID, adminTok, ""); status != 404 {
		t.Fatalf("delete again: %d", status)
	}
}
