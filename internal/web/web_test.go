package web

import (
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/liveroom/liveroom/internal/protocol"
	sdk "github.com/liveroom/liveroom/sdk/js"
)

func get(t *testing.T, h http.Handler, method, target string, hdr map[string]string) (*http.Response, string) {
	t.Helper()
	req := httptest.NewRequest(method, target, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	res := rec.Result()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res, string(b)
}

func TestIndex(t *testing.T) {
	h := Handler()
	res, body := get(t, h, "GET", "/", nil)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET / = %d", res.StatusCode)
	}
	if ct := res.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
		t.Errorf("content type %q", ct)
	}
	if cc := res.Header.Get("Cache-Control"); cc != "no-cache" {
		t.Errorf("cache control %q", cc)
	}
	if res.Header.Get("Content-Security-Policy") == "" {
		t.Error("no Content-Security-Policy")
	}
	for _, r := range Suggested {
		if _, err := protocol.ParseRoom(r.ID); err != nil {
			t.Errorf("suggested room %q: %v", r.ID, err)
		}
		if !strings.Contains(body, `href="/room/`+r.ID+`"`) {
			t.Errorf("index has no link to suggested room %q", r.ID)
		}
	}
	if !strings.Contains(body, `<form class="join" action="/" method="get">`) {
		t.Error("index has no room form")
	}
}

func TestIndexForm(t *testing.T) {
	h := Handler()
	tests := []struct {
		name, target string
		status       int
		location     string
		contains     string
	}{
		{"valid", "/?room=lobby", http.StatusSeeOther, "/room/lobby", ""},
		{"trimmed", "/?room=+lobby+", http.StatusSeeOther, "/room/lobby", ""},
		{"with name", "/?room=r1&name=Ann+B", http.StatusSeeOther, "/room/r1?name=Ann+B", ""},
		{"blank name", "/?room=r1&name=+", http.StatusSeeOther, "/room/r1", ""},
		{"invalid", "/?room=no+spaces%21", http.StatusBadRequest, "", `aria-invalid="true"`},
		{"empty", "/?room=", http.StatusBadRequest, "", "Room ids are 1–64 characters"},
		{"escaped echo", "/?room=%3Cscript%3E", http.StatusBadRequest, "", `value="&lt;script&gt;"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, body := get(t, h, "GET", tc.target, nil)
			if res.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", res.StatusCode, tc.status)
			}
			if loc := res.Header.Get("Location"); loc != tc.location {
				t.Errorf("Location %q, want %q", loc, tc.location)
			}
			if !strings.Contains(body, tc.contains) {
				t.Errorf("body lacks %q", tc.contains)
			}
			if strings.Contains(body, "<script>") {
				t.Error("input echoed unescaped")
			}
		})
	}
}

func TestRoomPage(t *testing.T) {
	h := Handler()
	res, body := get(t, h, "GET", "/room/test-room_1", nil)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("status %d", res.StatusCode)
	}
	if ct := res.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
		t.Errorf("content type %q", ct)
	}
	for _, want := range []string{
		`data-room="test-room_1"`,
		`data-state="connecting"`,
		`<title>test-room_1 — liveroom</title>`,
		`id="ticker" aria-live="polite"`,
		`<input id="text"`,
		`<button class="like" id="like" type="button">`,
		`id="online"`,
		`id="status-label"`,
		`class="video"`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("room page lacks %q", want)
		}
	}
	for _, g := range []string{"rose", "heart", "rocket", "castle", "car"} {
		if !regexp.MustCompile(`<button class="gift gift-` + g + `" type="button" data-gift="` + g + `" aria-label="Send a [A-Z][a-z]+">`).MatchString(body) {
			t.Errorf("room page lacks a gift button for %q", g)
		}
	}
	for _, js := range []string{"danmaku.js", "room.js"} {
		if !strings.Contains(body, `<script src="/static/`+js+`?v=`) {
			t.Errorf("room page does not load %s", js)
		}
	}
	// The CSP forbids inline scripts, so there must be none.
	if regexp.MustCompile(`<script>|<script [^>]*>[^<]`).MatchString(body) {
		t.Error("room page has an inline script")
	}
}

func TestAdminPage(t *testing.T) {
	h := Handler()
	res, body := get(t, h, "GET", "/admin", nil)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("status %d", res.StatusCode)
	}
	if csp := res.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") {
		t.Errorf("CSP %q", csp)
	}
	for _, want := range []string{
		`<title>Operator dashboard — liveroom</title>`,
		`<input id="token" name="token" type="password"`,
		`id="dev-token"`,
		`<tbody id="gw-body">`,
		`<canvas id="c-msgs"`, `<canvas id="c-delay"`, `<canvas id="c-drops"`,
		`id="as-timeline"`,
		`<form class="mod-form" id="mod-form"`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("admin page lacks %q", want)
		}
	}
	for _, asset := range []string{"charts.js", "admin.js", "admin.css"} {
		if !strings.Contains(body, `/static/`+asset+`?v=`) {
			t.Errorf("admin page does not load %s", asset)
		}
	}
	if regexp.MustCompile(`<script>|<script [^>]*>[^<]|style="`).MatchString(body) {
		t.Error("admin page has an inline script or style")
	}
}

func TestBadRoom(t *testing.T) {
	h := Handler()
	for _, target := range []string{
		"/room/",
		"/room/has%20space",
		"/room/a.b",
		"/room/a%2Fb",
		"/room/" + strings.Repeat("x", 65),
		"/room/%C3%A9t%C3%A9",
		"/room/%3Cb%3Ehi%3C%2Fb%3E",
	} {
		t.Run(target, func(t *testing.T) {
			res, body := get(t, h, "GET", target, nil)
			if res.StatusCode != http.StatusBadRequest {
				t.Fatalf("status %d, want 400", res.StatusCode)
			}
			if ct := res.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
				t.Errorf("content type %q", ct)
			}
			if !strings.Contains(body, "<h1>Not a room</h1>") || !strings.Contains(body, `href="/"`) {
				t.Errorf("400 page is not the human one:\n%s", body)
			}
			if strings.Contains(body, "<b>hi") {
				t.Error("room id echoed unescaped")
			}
		})
	}
	// The longest valid id is still a room.
	if res, _ := get(t, h, "GET", "/room/"+strings.Repeat("x", 64), nil); res.StatusCode != http.StatusOK {
		t.Errorf("64-character room: status %d", res.StatusCode)
	}
}

func TestNotFound(t *testing.T) {
	h := Handler()
	for _, target := range []string{"/nope", "/room/a/b", "/static/nope.js", "/static/", "/rooms/x", "/v1/unknown", "/static/../web.go"} {
		t.Run(target, func(t *testing.T) {
			res, body := get(t, h, "GET", target, nil)
			if res.StatusCode == http.StatusMovedPermanently || res.StatusCode == http.StatusTemporaryRedirect {
				return // ServeMux cleans ../ with a redirect, which is fine
			}
			if res.StatusCode != http.StatusNotFound {
				t.Fatalf("status %d, want 404", res.StatusCode)
			}
			if !strings.Contains(body, "<h1>Page not found</h1>") {
				t.Errorf("404 page is not the human one:\n%s", body)
			}
		})
	}
}

func TestMethodNotAllowed(t *testing.T) {
	h := Handler()
	for _, target := range []string{"/", "/room/lobby", "/static/app.css", "/nope"} {
		res, _ := get(t, h, "POST", target, nil)
		if res.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("POST %s = %d, want 405", target, res.StatusCode)
		}
		if allow := res.Header.Get("Allow"); allow != "GET, HEAD" {
			t.Errorf("POST %s: Allow %q", target, allow)
		}
	}
	if res, _ := get(t, h, "HEAD", "/room/lobby", nil); res.StatusCode != http.StatusOK {
		t.Errorf("HEAD /room/lobby = %d", res.StatusCode)
	}
}

func TestStatic(t *testing.T) {
	h := Handler().(*handler)
	tests := []struct{ file, ctype string }{
		{"app.css", "text/css; charset=utf-8"},
		{"room.js", "text/javascript; charset=utf-8"},
		{"danmaku.js", "text/javascript; charset=utf-8"},
		{"favicon.svg", "image/svg+xml"},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			versioned, err := h.staticURL(tc.file)
			if err != nil {
				t.Fatal(err)
			}
			res, body := get(t, h, "GET", versioned, nil)
			if res.StatusCode != http.StatusOK {
				t.Fatalf("GET %s = %d", versioned, res.StatusCode)
			}
			want, _ := fs.ReadFile(staticFS, "static/"+tc.file)
			if body != string(want) {
				t.Error("body differs from the embedded file")
			}
			if ct := res.Header.Get("Content-Type"); ct != tc.ctype {
				t.Errorf("content type %q, want %q", ct, tc.ctype)
			}
			if res.Header.Get("X-Content-Type-Options") != "nosniff" {
				t.Error("no nosniff")
			}
			if cc := res.Header.Get("Cache-Control"); cc != "public, max-age=31536000, immutable" {
				t.Errorf("versioned link: Cache-Control %q", cc)
			}
			etag := res.Header.Get("ETag")
			if etag == "" {
				t.Fatal("no ETag")
			}

			res, _ = get(t, h, "GET", "/static/"+tc.file, nil)
			if cc := res.Header.Get("Cache-Control"); res.StatusCode != http.StatusOK || cc != "no-cache" {
				t.Errorf("unversioned link: %d, Cache-Control %q", res.StatusCode, cc)
			}
			res, _ = get(t, h, "GET", "/static/"+tc.file+"?v=stale", nil)
			if cc := res.Header.Get("Cache-Control"); cc != "no-cache" {
				t.Errorf("stale version: Cache-Control %q", cc)
			}
			res, body = get(t, h, "GET", "/static/"+tc.file, map[string]string{"If-None-Match": etag})
			if res.StatusCode != http.StatusNotModified || body != "" {
				t.Errorf("If-None-Match: %d with %d bytes, want 304", res.StatusCode, len(body))
			}
		})
	}
}

// TestPagesLinkOnlyEmbeddedAssets loads every page and every /static/ link
// in it, and checks nothing points off the origin: the pages must work with
// no internet (no CDN, no web fonts).
func TestPagesLinkOnlyEmbeddedAssets(t *testing.T) {
	h := Handler()
	link := regexp.MustCompile(`(?:src|href)="([^"]*)"`)
	for _, page := range []string{"/", "/room/lobby", "/admin", "/room/bad.id", "/missing"} {
		_, body := get(t, h, "GET", page, nil)
		for _, m := range link.FindAllStringSubmatch(body, -1) {
			u := m[1]
			switch {
			case strings.HasPrefix(u, "/static/"):
				if res, _ := get(t, h, "GET", u, nil); res.StatusCode != http.StatusOK {
					t.Errorf("%s links %s, which answers %d", page, u, res.StatusCode)
				}
			case strings.HasPrefix(u, "/") && !strings.HasPrefix(u, "//"):
			default:
				t.Errorf("%s links off the origin: %q", page, u)
			}
		}
	}
	external := regexp.MustCompile(`(?i)(https?:)?//[a-z0-9.-]+\.[a-z]{2,}/`)
	check := func(p string, b []byte) {
		s := strings.ReplaceAll(string(b), "http://www.w3.org/2000/svg", "") // a namespace, never fetched
		for _, m := range external.FindAllString(s, -1) {
			t.Errorf("%s refers to %s", p, m)
		}
		if strings.Contains(s, "@import") || strings.Contains(s, "@font-face") {
			t.Errorf("%s imports CSS or fonts", p)
		}
	}
	check("sdk/js/liveroom.js", sdk.Module) // served as /static/liveroom.js
	err := fs.WalkDir(staticFS, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, _ := fs.ReadFile(staticFS, p)
		check(p, b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
