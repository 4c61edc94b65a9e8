package uplink

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/liveroom/liveroom/internal/apikey"
	"github.com/liveroom/liveroom/internal/bus"
	"github.com/liveroom/liveroom/internal/presence"
	"github.com/liveroom/liveroom/internal/protocol"
	"github.com/liveroom/liveroom/internal/testutil"
)

// serverEnv is a backbone whose reliable stream forgets message ids after
// dedupe, and an uplink serving the server API with one key.
type serverEnv struct {
	*env
	up  *uplink
	url string
	key string
}

func newServerEnv(t testing.TB, dedupe time.Duration) *serverEnv {
	t.Helper()
	e := &env{t: t, nats: testutil.StartNATS(t)}
	nc, err := nats.Connect(testutil.NATSURL(t, e.nats, bus.RoleAll, ""))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	e.watch = nc
	if e.js, err = jetstream.New(nc); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := bus.EnsureStreams(ctx, e.js, bus.StreamConfig{DedupeWindow: dedupe}); err != nil {
		t.Fatal(err)
	}
	up := e.start(func(c *Config) { c.ClientGifts = false })
	key := apikey.Generate()
	keys, err := apikey.New(apikey.Config{Env: "backend:" + key})
	if err != nil {
		t.Fatal(err)
	}
	pres := presence.New(up.nc)
	if err := pres.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pres.Close() })
	hs := httptest.NewServer(up.srv.ServerHandler(ServerAPIConfig{Keys: keys, Presence: pres}))
	t.Cleanup(hs.Close)
	return &serverEnv{env: e, up: up, url: hs.URL, key: key}
}

func (se *serverEnv) call(method, path, body string) (int, ServerResult, string) {
	se.t.Helper()
	req, err := http.NewRequest(method, se.url+path, strings.NewReader(body))
	if err != nil {
		se.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+se.key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		se.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var res ServerResult
	_ = json.Unmarshal(raw, &res)
	if res.Error == nil {
		var e struct {
			Error *protocol.ErrorBody `json:"error"`
		}
		if json.Unmarshal(raw, &e) == nil {
			res.Error = e.Error
		}
	}
	return resp.StatusCode, res, string(raw)
}

// TestPaidOrderOnceAfterTheDedupeWindow: a retry of an order after the
// stream has forgotten the message id is still answered "duplicate" with
// the first seq, and nothing is stored again; the same order id for another
// room is refused.
func TestPaidOrderOnceAfterTheDedupeWindow(t *testing.T) {
	se := newServerEnv(t, time.Second)
	body := `{"user":"fan","gift":"rocket","order_id":"late-retry-1","amount":100,"currency":"JPY"}`
	st, first, raw := se.call("POST", "/v1/server/rooms/r1/gifts", body)
	if st != 202 || first.Seq == 0 || first.Duplicate {
		t.Fatalf("first: %d %s", st, raw)
	}
	time.Sleep(1500 * time.Millisecond) // past the stream's de-duplication window
	st, again, raw := se.call("POST", "/v1/server/rooms/r1/gifts", body)
	if st != 202 || again.ID != first.ID || again.Seq != first.Seq || !again.Duplicate {
		t.Fatalf("late retry: %d %s, want a duplicate of %+v", st, raw, first)
	}
	info, err := se.js.Stream(context.Background(), bus.ReliableStream)
	if err != nil {
		t.Fatal(err)
	}
	if n := info.CachedInfo().State.Msgs; n != 1 {
		t.Fatalf("the stream holds %d messages, want 1", n)
	}
	st, _, raw = se.call("POST", "/v1/server/rooms/r2/gifts", body)
	if st != http.StatusConflict || !strings.Contains(raw, protocol.CodeOrderReused) {
		t.Fatalf("same order, other room: %d %s", st, raw)
	}
}

// TestServerAPIRejects: every malformed call gets its own status and code,
// names its field, and stores nothing.
func TestServerAPIRejects(t *testing.T) {
	se := newServerEnv(t, time.Minute)
	many := make([]string, MaxAnnounceRooms+1)
	for i := range many {
		many[i] = `"r"`
	}
	cases := []struct {
		name, method, path, body string
		status                   int
		code, field              string
	}{
		{"unknown field", "POST", "/v1/server/rooms/r1/gifts", `{"user":"u","gift":"rose","order_id":"o","price":1}`, 400, protocol.CodeInvalidJSON, ""},
		{"twisted key", "POST", "/v1/server/rooms/r1/gifts", `{"user":"u","gift":"rose","GIFT":"castle","order_id":"o"}`, 400, protocol.CodeInvalidJSON, ""},
		{"not json", "POST", "/v1/server/rooms/r1/gifts", `gift please`, 400, protocol.CodeInvalidJSON, ""},
		{"trailing data", "POST", "/v1/server/rooms/r1/gifts", `{"user":"u","gift":"rose","order_id":"o"} {}`, 400, protocol.CodeInvalidJSON, ""},
		{"bad room", "POST", "/v1/server/rooms/a.b/gifts", `{"user":"u","gift":"rose","order_id":"o"}`, 400, protocol.CodeInvalidRoom, "room"},
		{"bad user", "POST", "/v1/server/rooms/r1/gifts", `{"user":"a b","gift":"rose","order_id":"o"}`, 400, protocol.CodeInvalidField, "user"},
		{"no gift", "POST", "/v1/server/rooms/r1/gifts", `{"user":"u","order_id":"o"}`, 400, protocol.CodeUnknownGift, "gift"},
		{"unknown gift", "POST", "/v1/server/rooms/r1/gifts", `{"user":"u","gift":"yacht","order_id":"o"}`, 400, protocol.CodeUnknownGift, "gift"},
		{"count 0", "POST", "/v1/server/rooms/r1/gifts", `{"user":"u","gift":"rose","count":0,"order_id":"o"}`, 400, protocol.CodeInvalidField, "count"},
		{"count 1000", "POST", "/v1/server/rooms/r1/gifts", `{"user":"u","gift":"rose","count":1000,"order_id":"o"}`, 400, protocol.CodeInvalidField, "count"},
		{"no order", "POST", "/v1/server/rooms/r1/gifts", `{"user":"u","gift":"rose"}`, 400, protocol.CodeInvalidField, "order_id"},
		{"order with a newline", "POST", "/v1/server/rooms/r1/gifts", `{"user":"u","gift":"rose","order_id":"a\nb"}`, 400, protocol.CodeInvalidField, "order_id"},
		{"long order", "POST", "/v1/server/rooms/r1/gifts", `{"user":"u","gift":"rose","order_id":"` + strings.Repeat("o", 129) + `"}`, 400, protocol.CodeInvalidField, "order_id"},
		{"negative amount", "POST", "/v1/server/rooms/r1/gifts", `{"user":"u","gift":"rose","order_id":"o","amount":-1,"currency":"USD"}`, 400, protocol.CodeInvalidField, "amount"},
		{"amount without currency", "POST", "/v1/server/rooms/r1/gifts", `{"user":"u","gift":"rose","order_id":"o","amount":5}`, 400, protocol.CodeInvalidField, "currency"},
		{"lowercase currency", "POST", "/v1/server/rooms/r1/gifts", `{"user":"u","gift":"rose","order_id":"o","amount":5,"currency":"usd"}`, 400, protocol.CodeInvalidField, "currency"},
		{"no rooms", "POST", "/v1/server/announcements", `{"rooms":[],"text":"hi"}`, 400, protocol.CodeInvalidField, "rooms"},
		{"1001 rooms", "POST", "/v1/server/announcements", `{"rooms":[` + strings.Join(many, ",") + `],"text":"hi"}`, 400, protocol.CodeInvalidField, "rooms"},
		{"empty text", "POST", "/v1/server/announcements", `{"rooms":["r1"],"text":""}`, 400, protocol.CodeInvalidField, "text"},
		{"long text", "POST", "/v1/server/announcements", `{"rooms":["r1"],"text":"` + strings.Repeat("x", MaxTextRunes+1) + `"}`, 400, protocol.CodeInvalidField, "text"},
		{"control in from", "POST", "/v1/server/announcements", `{"rooms":["r1"],"text":"hi","from":"a\u0007b"}`, 400, protocol.CodeInvalidField, "from"},
		{"notice bad user", "POST", "/v1/server/rooms/r1/users/a%20b/notices", `{"text":"hi"}`, 400, protocol.CodeInvalidField, "user"},
		{"batch of none", "POST", "/v1/server/batch", `{"messages":[]}`, 400, protocol.CodeInvalidField, "messages"},
		{"too large", "POST", "/v1/server/batch", `{"messages":["` + strings.Repeat("x", MaxServerBody) + `"]}`, 413, protocol.CodeTooLarge, ""},
		{"wrong method", "GET", "/v1/server/batch", ``, 405, protocol.CodeMethodNotAllowed, ""},
		{"unknown path", "GET", "/v1/server/orders", ``, 404, protocol.CodeNotFound, ""},
		{"dotted path", "GET", "/v1/server/rooms/../rooms", ``, 404, protocol.CodeNotFound, ""},
		{"bad limit", "GET", "/v1/server/rooms?limit=0", ``, 400, protocol.CodeInvalidField, "limit"},
		{"bad room state", "GET", "/v1/server/rooms/a.b", ``, 400, protocol.CodeInvalidRoom, "room"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st, res, raw := se.call(c.method, c.path, c.body)
			if st != c.status || res.Error == nil || res.Error.Code != c.code || res.Error.Field != c.field {
				t.Fatalf("%d %s, want %d %s (%s)", st, raw, c.status, c.code, c.field)
			}
		})
	}
	info, err := se.js.Stream(context.Background(), bus.ReliableStream)
	if err != nil {
		t.Fatal(err)
	}
	if n := info.CachedInfo().State.Msgs; n != 0 {
		t.Fatalf("refused calls stored %d messages", n)
	}
	// A user's gift is refused by this uplink (ClientGifts off).
	if a := se.up.post("r1", "u1", protocol.RoleViewer, gift("rose", 1), key("k1")); a.status != 403 || a.Error.Code != protocol.CodeClientGiftsOff {
		t.Fatalf("user gift: %d %s", a.status, a.raw)
	}
}
