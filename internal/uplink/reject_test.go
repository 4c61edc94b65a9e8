package uplink

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/liveroom/liveroom/internal/auth"
	"github.com/liveroom/liveroom/internal/bus"
	"github.com/liveroom/liveroom/internal/protocol"
	"github.com/liveroom/liveroom/internal/testutil"
)

// TestRejects sends every kind of bad request and checks its status, code
// and field, and that none of them published anything on NATS.
func TestRejects(t *testing.T) {
	e := newEnv(t)
	u := e.start(nil)
	all := e.subscribe(">")

	viewer := testutil.Token(t, "alice", protocol.RoleViewer)
	otherSigner, err := auth.NewSigner([]byte("another-secret-0123456789abcdef"))
	if err != nil {
		t.Fatal(err)
	}
	forged, err := otherSigner.Mint("alice", "alice", protocol.RoleViewer, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	realSigner, err := auth.NewSigner([]byte(testutil.Secret))
	if err != nil {
		t.Fatal(err)
	}
	expired, err := realSigner.Mint("alice", "alice", protocol.RoleViewer, -time.Minute) // beyond the 5s leeway of testutil.Verifier
	if err != nil {
		t.Fatal(err)
	}
	// {"alg":"none"} with valid claims and an empty signature.
	algNone := "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJhbGljZSIsInJvbGUiOiJhZG1pbiIsImV4cCI6NDEwMjQ0NDgwMH0."
	ok := danmaku("hello")
	gk := key("k-1")
	cases := []struct {
		name   string
		req    request
		status int
		code   string
		field  string
	}{
		// Room ids are checked before the token and before anything else.
		{"room with dot", request{room: "a.b"}, 400, protocol.CodeInvalidRoom, "room"},
		{"room with star", request{room: "a*"}, 400, protocol.CodeInvalidRoom, "room"},
		{"room gt", request{room: "%3E"}, 400, protocol.CodeInvalidRoom, "room"},
		{"room 65 chars", request{room: strings.Repeat("a", 65)}, 400, protocol.CodeInvalidRoom, "room"},
		{"room empty", request{room: "<empty>"}, 400, protocol.CodeInvalidRoom, "room"},
		{"room dotdot", request{room: ".."}, 400, protocol.CodeInvalidRoom, "room"},
		{"room escaped slash", request{room: "a%2Fb"}, 400, protocol.CodeInvalidRoom, "room"},
		{"room space", request{room: "a%20b"}, 400, protocol.CodeInvalidRoom, "room"},
		{"room wildcard subject", request{room: "lr.room.*"}, 400, protocol.CodeInvalidRoom, "room"},
		{"room non-ascii", request{room: "%C3%A9"}, 400, protocol.CodeInvalidRoom, "room"},
		{"bad room gift", request{room: "a.b", body: gift("rose", 1), headers: gk}, 400, protocol.CodeInvalidRoom, "room"},
		{"bad room like", request{room: "a.>", body: like(3)}, 400, protocol.CodeInvalidRoom, "room"},
		{"bad room before auth", request{room: "a*", token: "-"}, 400, protocol.CodeInvalidRoom, "room"},

		{"no token", request{token: "-"}, 401, protocol.CodeUnauthorized, ""},
		{"garbage token", request{token: "not.a.jwt"}, 401, protocol.CodeUnauthorized, ""},
		{"token of another signer", request{token: forged}, 401, protocol.CodeUnauthorized, ""},
		{"expired token", request{token: expired}, 401, protocol.CodeUnauthorized, ""},
		{"alg none", request{token: algNone}, 401, protocol.CodeUnauthorized, ""},
		{"basic auth", request{auth: "Basic YWxpY2U6cHc="}, 401, protocol.CodeUnauthorized, ""},
		{"unauthenticated before body checks", request{token: "-", body: "{"}, 401, protocol.CodeUnauthorized, ""},

		{"GET", request{method: http.MethodGet}, 405, protocol.CodeMethodNotAllowed, ""},
		{"PUT", request{method: http.MethodPut}, 405, protocol.CodeMethodNotAllowed, ""},
		{"DELETE", request{method: http.MethodDelete}, 405, protocol.CodeMethodNotAllowed, ""},

		{"body over 4 KiB", request{body: danmaku(strings.Repeat("a", 5000))}, 413, protocol.CodeTooLarge, ""},
		{"body of padding over 4 KiB", request{body: `{"type":"danmaku","text":"hi","pad":"` + strings.Repeat("x", 4100) + `"}`}, 413, protocol.CodeTooLarge, ""},

		{"empty body", request{body: " "}, 400, protocol.CodeInvalidJSON, ""},
		{"truncated JSON", request{body: `{"type":"danmaku"`}, 400, protocol.CodeInvalidJSON, ""},
		{"array", request{body: `[]`}, 400, protocol.CodeInvalidJSON, ""},
		{"string", request{body: `"danmaku"`}, 400, protocol.CodeInvalidJSON, ""},
		{"trailing garbage", request{body: ok + "x"}, 400, protocol.CodeInvalidJSON, ""},
		{"two objects", request{body: ok + ok}, 400, protocol.CodeInvalidJSON, ""},

		{"unknown type", request{body: `{"type":"poke"}`}, 400, protocol.CodeUnknownType, "type"},
		{"missing type", request{body: `{"text":"hi"}`}, 400, protocol.CodeUnknownType, "type"},
		{"numeric type", request{body: `{"type":5,"text":"hi"}`}, 400, protocol.CodeUnknownType, "type"},
		{"null body", request{body: `null`}, 400, protocol.CodeUnknownType, "type"},
		{"type of other case", request{body: `{"type":"Danmaku","text":"hi"}`}, 400, protocol.CodeUnknownType, "type"},

		{"empty text", request{body: danmaku("")}, 400, protocol.CodeInvalidField, "text"},
		{"missing text", request{body: `{"type":"danmaku"}`}, 400, protocol.CodeInvalidField, "text"},
		{"numeric text", request{body: `{"type":"danmaku","text":7}`}, 400, protocol.CodeInvalidField, "text"},
		{"201 runes", request{body: danmaku(strings.Repeat("好", 201))}, 400, protocol.CodeInvalidField, "text"},
		{"invalid UTF-8", request{body: "{\"type\":\"danmaku\",\"text\":\"a\xffb\"}"}, 400, protocol.CodeInvalidField, "text"},
		{"overlong UTF-8", request{body: "{\"type\":\"danmaku\",\"text\":\"\xc0\xaf\"}"}, 400, protocol.CodeInvalidField, "text"},
		{"lone surrogate", request{body: `{"type":"danmaku","text":"a\ud800b"}`}, 400, protocol.CodeInvalidField, "text"},
		{"reversed surrogates", request{body: `{"type":"danmaku","text":"\udc00\ud800"}`}, 400, protocol.CodeInvalidField, "text"},
		{"bell", request{body: `{"type":"danmaku","text":"a\u0007"}`}, 400, protocol.CodeInvalidField, "text"},
		{"newline", request{body: `{"type":"danmaku","text":"a\nb"}`}, 400, protocol.CodeInvalidField, "text"},
		{"tab", request{body: `{"type":"danmaku","text":"a\tb"}`}, 400, protocol.CodeInvalidField, "text"},
		{"DEL", request{body: `{"type":"danmaku","text":"a\u007f"}`}, 400, protocol.CodeInvalidField, "text"},
		{"C1 control", request{body: `{"type":"danmaku","text":"a\u0085"}`}, 400, protocol.CodeInvalidField, "text"},

		{"unknown gift", request{body: gift("yacht", 1), headers: gk}, 400, protocol.CodeUnknownGift, "gift"},
		{"missing gift", request{body: `{"type":"gift","count":1}`, headers: gk}, 400, protocol.CodeUnknownGift, "gift"},
		{"numeric gift", request{body: `{"type":"gift","gift":1}`, headers: gk}, 400, protocol.CodeInvalidField, "gift"},
		{"gift count 0", request{body: gift("rose", 0), headers: gk}, 400, protocol.CodeInvalidField, "count"},
		{"gift count 1000", request{body: gift("rose", 1000), headers: gk}, 400, protocol.CodeInvalidField, "count"},
		{"gift count -1", request{body: gift("rose", -1), headers: gk}, 400, protocol.CodeInvalidField, "count"},
		{"gift count 1.5", request{body: `{"type":"gift","gift":"rose","count":1.5}`, headers: gk}, 400, protocol.CodeInvalidField, "count"},
		{"gift count string", request{body: `{"type":"gift","gift":"rose","count":"1"}`, headers: gk}, 400, protocol.CodeInvalidField, "count"},
		{"gift count huge", request{body: `{"type":"gift","gift":"rose","count":99999999999999999999}`, headers: gk}, 400, protocol.CodeInvalidField, "count"},
		{"like count 0", request{body: like(0)}, 400, protocol.CodeInvalidField, "count"},
		{"like count 1000", request{body: like(1000)}, 400, protocol.CodeInvalidField, "count"},
		{"like count -1", request{body: like(-1)}, 400, protocol.CodeInvalidField, "count"},

		{"missing Idempotency-Key", request{body: gift("rose", 1)}, 400, protocol.CodeMissingIdemKey, HeaderIdempotencyKey},
		{"Idempotency-Key 129 chars", request{body: gift("rose", 1), headers: key(strings.Repeat("k", 129))}, 400, protocol.CodeInvalidField, HeaderIdempotencyKey},
		{"Idempotency-Key non-ASCII", request{body: gift("rose", 1), headers: key("clé")}, 400, protocol.CodeInvalidField, HeaderIdempotencyKey},
	}
	before := u.srv.Stats()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req := tc.req
			switch req.room {
			case "":
				req.room = "r1"
			case "<empty>":
				req.room = ""
			}
			switch req.token {
			case "":
				req.token = viewer
			case "-":
				req.token = ""
			}
			if req.body == "" {
				req.body = ok
			}
			a := u.do(req)
			if a.status != tc.status || a.Error.Code != tc.code || a.Error.Field != tc.field {
				t.Fatalf("got %d %q field %q, want %d %q field %q; body %s",
					a.status, a.Error.Code, a.Error.Field, tc.status, tc.code, tc.field, a.raw)
			}
			if a.Error.Message == "" {
				t.Errorf("error without a message: %s", a.raw)
			}
			if a.ID != "" {
				t.Errorf("rejected request got an id: %s", a.raw)
			}
			if tc.status == http.StatusMethodNotAllowed && a.header.Get("Allow") != http.MethodPost {
				t.Errorf("405 without Allow: POST: %v", a.header)
			}
		})
	}
	for _, m := range e.barrier(u, all) {
		// Usage reports are the uplink's periodic beat, not a request's.
		if m.Subject != bus.UsageSubject {
			t.Errorf("a rejected request published on %s: %s", m.Subject, m.Data)
		}
	}
	after := u.srv.Stats()
	var rejected uint64
	for code, n := range after.Rejected {
		rejected += n - before.Rejected[code]
	}
	if rejected != uint64(len(cases)) || after.Danmaku+after.Gifts+after.LikeRequests != 0 {
		t.Errorf("stats: %d rejections for %d cases, %+v", rejected, len(cases), after)
	}
}

// TestAcceptsEdgeBodies checks bodies at the edge of the rules are accepted.
func TestAcceptsEdgeBodies(t *testing.T) {
	e := newEnv(t)
	u := e.start(func(c *Config) { c.UserBurst, c.LikeBurst = 100, 2000 })
	for _, body := range []string{
		danmaku(strings.Repeat("好", 200)),
		danmaku("a"),
		danmaku("emoji 🚀 and a pair \U0001F600"),
		`{"type":"danmaku","text":"\ud83d\ude00 escaped pair"}`,
		`{"type":"danmaku","text":"hi","unknown":{"nested":[1,2]},"count":0}`,
		like(1),
		like(999),
		`{"type":"like"}`,
		`{"type":"like","count":null}`,
	} {
		if a := u.post("r1", "alice", "", body, nil); a.status != http.StatusAccepted || a.ID == "" {
			t.Errorf("%s: got %d %s", body, a.status, a.raw)
		}
	}
	for i, body := range []string{gift("rose", 1), gift("car", 999), `{"type":"gift","gift":"heart"}`} {
		k := key(strings.Repeat("~", 128)[:100+i])
		if a := u.post("r1", "alice", "", body, k); a.status != http.StatusAccepted || a.Seq == 0 {
			t.Errorf("%s: got %d %s", body, a.status, a.raw)
		}
	}
}

func TestNewValidates(t *testing.T) {
	e := newEnv(t)
	u := e.start(nil)
	base := u.srv.cfg
	for name, mod := range map[string]func(*Config){
		"no NC":           func(c *Config) { c.NC = nil },
		"no JS":           func(c *Config) { c.JS = nil },
		"no Verifier":     func(c *Config) { c.Verifier = nil },
		"bad gift name":   func(c *Config) { c.Gifts = []string{"Rose"} },
		"long gift name":  func(c *Config) { c.Gifts = []string{strings.Repeat("a", 33)} },
		"duplicate gift":  func(c *Config) { c.Gifts = []string{"rose", "rose"} },
		"negative rate":   func(c *Config) { c.UserRate = -1 },
		"long limit sync": func(c *Config) { c.FleetInterval = 2 * time.Minute },
		"bad uplink id":   func(c *Config) { c.ID = "up.1" },
		"negative body":   func(c *Config) { c.MaxBody = -1 },
	} {
		cfg := base
		mod(&cfg)
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: New accepted the config", name)
		}
	}
}

// TestMountedInAppMux mounts Handler the way the app does and checks that
// routing, 405 answers and room checks survive the outer mux.
func TestMountedInAppMux(t *testing.T) {
	e := newEnv(t)
	u := e.start(nil)
	outer := http.NewServeMux()
	outer.Handle(SendPath, u.srv.Handler())
	hs := httptest.NewServer(outer)
	t.Cleanup(hs.Close)
	inner := *u
	inner.url = hs.URL
	tok := testutil.Token(t, "alice", protocol.RoleViewer)
	for _, tc := range []struct {
		req    request
		status int
		code   string
	}{
		{request{room: "r1", token: tok, body: danmaku("hi")}, http.StatusAccepted, ""},
		{request{method: http.MethodGet, room: "r1", token: tok}, http.StatusMethodNotAllowed, protocol.CodeMethodNotAllowed},
		{request{room: "a.b", token: tok, body: danmaku("hi")}, http.StatusBadRequest, protocol.CodeInvalidRoom},
	} {
		if a := inner.do(tc.req); a.status != tc.status || a.Error.Code != tc.code {
			t.Errorf("%s %s: got %d %s", tc.req.method, tc.req.room, a.status, a.raw)
		}
	}
}

// TestGiftAndLikeFloodsAreLimited: one viewer spraying gifts of 999 castles,
// or likes of 999 into hundreds of rooms, gets the per-user budget and then
// 429 with Retry-After; another user is not affected.
func TestGiftAndLikeFloodsAreLimited(t *testing.T) {
	e := newEnv(t)
	u := e.start(func(c *Config) { c.GiftRate, c.GiftBurst, c.LikeRate, c.LikeBurst = 1, 5, 50, 1000 })
	t0 := time.Now()
	var gifts, giftRefused int
	for i := range 40 {
		a := u.post("r1", "mallory", "", gift("castle", 999), key("flood-"+strconv.Itoa(i)))
		switch a.status {
		case http.StatusAccepted:
			gifts++
		case http.StatusTooManyRequests:
			giftRefused++
			if a.Error.Code != protocol.CodeUserRateLimited || a.header.Get("Retry-After") == "" {
				t.Fatalf("gift refusal %s without the code or Retry-After", a.raw)
			}
		default:
			t.Fatalf("gift %d: %d %s", i, a.status, a.raw)
		}
	}
	allowed := 5 + int(time.Since(t0).Seconds()*1) + 1
	if gifts > allowed || giftRefused == 0 {
		t.Fatalf("%d of 40 flooded gifts accepted (%d refused), want at most %d", gifts, giftRefused, allowed)
	}
	t1 := time.Now()
	var likes int64
	for i := range 600 {
		a := u.post("room-"+strconv.Itoa(i), "mallory", "", like(999), nil)
		if a.status == http.StatusAccepted {
			likes += 999
		} else if a.status != http.StatusTooManyRequests {
			t.Fatalf("like %d: %d %s", i, a.status, a.raw)
		}
	}
	if max := 1000 + int64(time.Since(t1).Seconds()*50) + 999; likes > max {
		t.Fatalf("%d likes accepted from one user across 600 rooms, want at most %d", likes, max)
	}
	// Someone else still gifts and likes.
	if a := u.post("r1", "alice", "", gift("rose", 1), key("alice-1")); a.status != http.StatusAccepted {
		t.Fatalf("another user's gift: %d %s", a.status, a.raw)
	}
	if a := u.post("r1", "alice", "", like(10), nil); a.status != http.StatusAccepted {
		t.Fatalf("another user's likes: %d %s", a.status, a.raw)
	}
}
