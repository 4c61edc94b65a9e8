package client

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/liveroom/liveroom/internal/protocol"
)

// fakeUplink answers POST /v1/rooms/{room}/messages with the scripted
// answers in order (the last one repeats) and records every request.
type fakeUplink struct {
	srv     *httptest.Server
	answers []func(w http.ResponseWriter, r *http.Request)

	mu   sync.Mutex
	reqs []recordedReq
}

type recordedReq struct {
	path, auth, key, ctype string
	body                   map[string]any
}

func newFakeUplink(t *testing.T, answers ...func(w http.ResponseWriter, r *http.Request)) *fakeUplink {
	t.Helper()
	u := &fakeUplink{answers: answers}
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, _ := io.ReadAll(r.Body)
		var body map[string]any
		_ = json.Unmarshal(raw, &body)
		u.mu.Lock()
		n := len(u.reqs)
		u.reqs = append(u.reqs, recordedReq{
			path: r.URL.EscapedPath(), auth: r.Header.Get("Authorization"),
			key: r.Header.Get("Idempotency-Key"), ctype: r.Header.Get("Content-Type"), body: body,
		})
		u.mu.Unlock()
		u.answers[min(n, len(u.answers)-1)](w, r)
	}))
	t.Cleanup(u.srv.Close)
	return u
}

func (u *fakeUplink) Requests() []recordedReq {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]recordedReq(nil), u.reqs...)
}

func accepted(id string, seq uint64) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, _ *http.Request) {
		protocol.WriteJSON(w, http.StatusAccepted, map[string]any{"id": id, "seq": seq})
	}
}

func failing(status int, code, field string, retryMS int64) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, _ *http.Request) {
		protocol.WriteError(w, protocol.Errorf(status, code, field, "scripted failure").WithRetry(retryMS))
	}
}

// hangup drops the connection without answering: a network error.
func hangup(w http.ResponseWriter, _ *http.Request) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err == nil {
		_ = conn.Close()
	}
}

func TestGiftRetriesWithTheSameKey(t *testing.T) {
	up := newFakeUplink(t,
		failing(503, protocol.CodeUnavailable, "", 0),
		hangup,
		failing(502, "", "", 0),
		accepted("m1", 77),
	)
	s := &Sender{BaseURL: up.srv.URL, Token: "tok", MaxBackoff: 20 * time.Millisecond}
	res, err := s.Gift(testCtx(t), "r1", "rocket", 3, "")
	if err != nil {
		t.Fatal(err)
	}
	// net/http itself re-sends a request carrying an Idempotency-Key when a
	// reused connection dies before any answer, so the hang-up may cost no
	// attempt of ours; the server sees four requests either way.
	if res.ID != "m1" || res.Seq != 77 || res.Status != 202 || res.Attempts < 3 || res.Attempts > 4 || res.Key == "" {
		t.Errorf("result %+v", res)
	}
	reqs := up.Requests()
	if len(reqs) != 4 {
		t.Fatalf("%d requests, want 4", len(reqs))
	}
	for i, r := range reqs {
		if r.key != res.Key {
			t.Errorf("attempt %d: Idempotency-Key %q, want %q", i, r.key, res.Key)
		}
		if r.path != "/v1/rooms/r1/messages" || r.auth != "Bearer tok" || r.ctype != "application/json" {
			t.Errorf("attempt %d: %+v", i, r)
		}
		if r.body["type"] != "gift" || r.body["gift"] != "rocket" || r.body["count"] != 3.0 {
			t.Errorf("attempt %d: body %v", i, r.body)
		}
	}
}

func TestGiftTwo503ThenAccepted(t *testing.T) {
	up := newFakeUplink(t,
		failing(503, protocol.CodeUnavailable, "", 30),
		failing(503, protocol.CodeUnavailable, "", 30),
		accepted("m2", 8),
	)
	s := &Sender{BaseURL: up.srv.URL, Token: "tok"}
	start := time.Now()
	res, err := s.Gift(testCtx(t), "r1", "rocket", 1, "my-key")
	if err != nil {
		t.Fatal(err)
	}
	if res.ID != "m2" || res.Seq != 8 || res.Attempts != 3 || res.Key != "my-key" {
		t.Errorf("result %+v", res)
	}
	for i, r := range up.Requests() {
		if r.key != "my-key" {
			t.Errorf("attempt %d: key %q", i, r.key)
		}
	}
	// The server asked for 30 ms twice.
	if el := time.Since(start); el < 60*time.Millisecond {
		t.Errorf("retries did not honour the retry hint: done in %v", el)
	}
}

func TestSendNeverRetries4xx(t *testing.T) {
	for _, tt := range []struct {
		name   string
		status int
		code   string
		field  string
	}{
		{name: "bad field", status: 400, code: protocol.CodeInvalidField, field: "count"},
		{name: "muted", status: 403, code: protocol.CodeMuted},
		{name: "rate limited", status: 429, code: protocol.CodeUserRateLimited},
	} {
		t.Run(tt.name, func(t *testing.T) {
			up := newFakeUplink(t, failing(tt.status, tt.code, tt.field, 10), accepted("no", 1))
			s := &Sender{BaseURL: up.srv.URL, Token: "tok"}
			res, err := s.Gift(testCtx(t), "r1", "rocket", 1, "")
			var ae *APIError
			if !errors.As(err, &ae) {
				t.Fatalf("err = %v, want *APIError", err)
			}
			if ae.Status != tt.status || ae.Body.Code != tt.code || ae.Body.Field != tt.field {
				t.Errorf("APIError %+v", ae)
			}
			if res.Attempts != 1 || res.Status != tt.status || len(up.Requests()) != 1 {
				t.Errorf("result %+v after %d requests", res, len(up.Requests()))
			}
		})
	}
}

func TestGiftGivesUp(t *testing.T) {
	t.Run("retries exhausted", func(t *testing.T) {
		up := newFakeUplink(t, failing(500, protocol.CodeInternal, "", 0))
		s := &Sender{BaseURL: up.srv.URL, Token: "tok", Retries: 2, MaxBackoff: 5 * time.Millisecond}
		res, err := s.Gift(testCtx(t), "r1", "rocket", 1, "k")
		var ae *APIError
		if !errors.As(err, &ae) || ae.Status != 500 || res.Attempts != 3 {
			t.Errorf("err %v result %+v", err, res)
		}
	})
	t.Run("no retries", func(t *testing.T) {
		up := newFakeUplink(t, failing(500, protocol.CodeInternal, "", 0))
		s := &Sender{BaseURL: up.srv.URL, Token: "tok", Retries: -1}
		if res, err := s.Gift(testCtx(t), "r1", "rocket", 1, "k"); err == nil || res.Attempts != 1 {
			t.Errorf("err %v result %+v", err, res)
		}
	})
	t.Run("retry-after beyond the cap", func(t *testing.T) {
		up := newFakeUplink(t, failing(503, protocol.CodeUnavailable, "", 60_000), accepted("m", 1))
		s := &Sender{BaseURL: up.srv.URL, Token: "tok"}
		res, err := s.Gift(testCtx(t), "r1", "rocket", 1, "k")
		var ae *APIError
		if !errors.As(err, &ae) || ae.RetryAfter != time.Minute || res.Attempts != 1 {
			t.Errorf("err %v result %+v", err, res)
		}
	})
}

func TestDanmakuAndLikeAreSentOnce(t *testing.T) {
	up := newFakeUplink(t, failing(503, protocol.CodeUnavailable, "", 0), accepted("d1", 0))
	s := &Sender{BaseURL: up.srv.URL, Token: "tok"}
	if _, err := s.Danmaku(testCtx(t), "r1", "hello"); err == nil {
		t.Fatal("503 reported as success")
	}
	res, err := s.Like(testCtx(t), "r1", 5)
	if err != nil || res.ID != "d1" || res.Seq != 0 || res.Attempts != 1 || res.Key != "" {
		t.Fatalf("like: %+v %v", res, err)
	}
	reqs := up.Requests()
	if len(reqs) != 2 {
		t.Fatalf("%d requests, want 2", len(reqs))
	}
	if reqs[0].body["type"] != "danmaku" || reqs[0].body["text"] != "hello" || reqs[0].key != "" {
		t.Errorf("danmaku request %+v", reqs[0])
	}
	if reqs[1].body["type"] != "like" || reqs[1].body["count"] != 5.0 {
		t.Errorf("like request %+v", reqs[1])
	}
}

// TestCountOutOfRangeIsNotSent: a gift or like count outside 1-999 is an
// error before any request; a zero is never sent as the server's default of
// one (a paid gift the sender did not mean).
func TestCountOutOfRangeIsNotSent(t *testing.T) {
	up := newFakeUplink(t, accepted("ok", 1))
	s := &Sender{BaseURL: up.srv.URL, Token: "tok"}
	for _, n := range []int{0, -1, MaxCount + 1} {
		if _, err := s.Gift(testCtx(t), "r1", "rose", n, ""); !errors.Is(err, ErrInvalidCount) {
			t.Errorf("gift count %d: err = %v, want ErrInvalidCount", n, err)
		}
		if _, err := s.Like(testCtx(t), "r1", n); !errors.Is(err, ErrInvalidCount) {
			t.Errorf("like count %d: err = %v, want ErrInvalidCount", n, err)
		}
	}
	if reqs := up.Requests(); len(reqs) != 0 {
		t.Fatalf("%d requests sent for invalid counts", len(reqs))
	}
	for _, n := range []int{1, MaxCount} {
		if _, err := s.Like(testCtx(t), "r1", n); err != nil {
			t.Errorf("like count %d: %v", n, err)
		}
	}
	reqs := up.Requests()
	if len(reqs) != 2 || reqs[0].body["count"] != 1.0 || reqs[1].body["count"] != float64(MaxCount) {
		t.Errorf("requests %+v, want counts 1 and %d", reqs, MaxCount)
	}
}

func TestNewIdempotencyKey(t *testing.T) {
	a, b := NewIdempotencyKey(), NewIdempotencyKey()
	if a == b || len(a) != 32 {
		t.Errorf("keys %q %q", a, b)
	}
}

func TestDevToken(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct{ User, Name, Role string }
		if r.URL.Path != "/v1/dev/token" || r.Method != http.MethodPost || json.NewDecoder(r.Body).Decode(&req) != nil {
			protocol.WriteError(w, protocol.Errorf(404, protocol.CodeNotFound, "", "no"))
			return
		}
		if req.User == "nobody" {
			protocol.WriteError(w, protocol.Errorf(403, protocol.CodeDevOnly, "", "dev mode is off"))
			return
		}
		protocol.WriteJSON(w, 200, map[string]string{"token": req.User + "|" + req.Name + "|" + req.Role})
	}))
	defer srv.Close()
	tok, err := DevToken(testCtx(t), srv.URL, "alice", "Alice", "")
	if err != nil || tok != "alice|Alice|viewer" {
		t.Fatalf("token %q err %v", tok, err)
	}
	_, err = DevToken(testCtx(t), srv.URL, "nobody", "", "anchor")
	var ae *APIError
	if !errors.As(err, &ae) || ae.Body.Code != protocol.CodeDevOnly {
		t.Fatalf("err = %v", err)
	}
}
