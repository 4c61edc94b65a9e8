package client

import (
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestReconnectPolicyDelay(t *testing.T) {
	fixed := func(v float64) func() float64 { return func() float64 { return v } }
	tests := []struct {
		name    string
		policy  ReconnectPolicy
		attempt int
		rnd     float64
		want    time.Duration
	}{
		{name: "first attempt, no jitter drawn", policy: ReconnectPolicy{BaseMS: 500, MaxMS: 15000, Jitter: 0.5}, attempt: 0, rnd: 0, want: 500 * time.Millisecond},
		{name: "doubles", policy: ReconnectPolicy{BaseMS: 500, MaxMS: 15000, Jitter: 0.5}, attempt: 3, rnd: 0, want: 4 * time.Second},
		{name: "capped at max", policy: ReconnectPolicy{BaseMS: 500, MaxMS: 15000, Jitter: 0.5}, attempt: 6, rnd: 0, want: 15 * time.Second},
		{name: "huge attempt does not overflow", policy: ReconnectPolicy{BaseMS: 500, MaxMS: 15000, Jitter: 0.5}, attempt: 1000, rnd: 0, want: 15 * time.Second},
		{name: "full jitter draw takes off the fraction", policy: ReconnectPolicy{BaseMS: 1000, MaxMS: 15000, Jitter: 0.5}, attempt: 0, rnd: 0.5, want: 750 * time.Millisecond},
		{name: "jitter applies after the cap", policy: ReconnectPolicy{BaseMS: 1000, MaxMS: 2000, Jitter: 0.5}, attempt: 5, rnd: 0.5, want: 1500 * time.Millisecond},
		{name: "no jitter", policy: ReconnectPolicy{BaseMS: 1000, MaxMS: 2000, Jitter: 0}, attempt: 0, rnd: 0.9, want: time.Second},
		{name: "zero policy uses defaults", policy: ReconnectPolicy{}, attempt: 1, rnd: 0, want: time.Second},
		{name: "jitter above 1 is clamped", policy: ReconnectPolicy{BaseMS: 1000, MaxMS: 1000, Jitter: 7}, attempt: 0, rnd: 0.5, want: 500 * time.Millisecond},
		{name: "max below base is raised", policy: ReconnectPolicy{BaseMS: 1000, MaxMS: 10, Jitter: 0}, attempt: 4, rnd: 0, want: time.Second},
		{name: "bad random value is ignored", policy: ReconnectPolicy{BaseMS: 1000, MaxMS: 1000, Jitter: 0.5}, attempt: 0, rnd: 3, want: time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.policy.Delay(tt.attempt, fixed(tt.rnd)); got != tt.want {
				t.Errorf("Delay(%d) = %v, want %v", tt.attempt, got, tt.want)
			}
		})
	}
}

func TestReconnectPolicyDelayBounds(t *testing.T) {
	p := ReconnectPolicy{BaseMS: 500, MaxMS: 15000, Jitter: 0.5}
	for attempt := range 10 {
		ceil := min(500*time.Millisecond<<attempt, 15*time.Second)
		for range 200 {
			d := p.Delay(attempt, nil)
			if d > ceil || d < ceil/2 {
				t.Fatalf("attempt %d: delay %v outside [%v, %v]", attempt, d, ceil/2, ceil)
			}
		}
	}
}

func TestDedupe(t *testing.T) {
	d := newDedupe(3)
	for _, id := range []string{"a", "b", "c"} {
		if d.seen(id) {
			t.Fatalf("%s seen on first sight", id)
		}
	}
	if !d.seen("a") || !d.seen("c") {
		t.Fatal("recent ids not remembered")
	}
	if d.seen("d") { // evicts "a", the oldest
		t.Fatal("d seen on first sight")
	}
	if d.seen("a") {
		t.Fatal("a still remembered after eviction")
	}
	// "a" was re-recorded and evicted "b".
	if d.seen("b") {
		t.Fatal("b still remembered after eviction")
	}
	if len(d.set) != 3 {
		t.Fatalf("set holds %d ids, want 3", len(d.set))
	}
	if newDedupe(0).ring == nil || len(newDedupe(0).ring) != DefaultDedupeSize {
		t.Fatal("zero size does not default")
	}
}

func TestGatewayURL(t *testing.T) {
	tests := []struct {
		name    string
		base    string
		gw      string
		room    string
		token   string
		since   uint64
		resume  bool
		want    url.Values
		wantURL string // scheme://host/path part
		wantErr bool
	}{
		{name: "fresh join omits since", gw: "ws://h:1/v1/ws", room: "r1", token: "t", want: url.Values{"room": {"r1"}, "token": {"t"}}, wantURL: "ws://h:1/v1/ws"},
		{name: "resume sends since", gw: "ws://h:1/v1/ws", room: "r1", token: "t", since: 42, resume: true, want: url.Values{"room": {"r1"}, "token": {"t"}, "since": {"42"}}, wantURL: "ws://h:1/v1/ws"},
		{name: "resume from zero sends since=0", gw: "ws://h:1/v1/ws", room: "r1", token: "t", resume: true, want: url.Values{"room": {"r1"}, "token": {"t"}, "since": {"0"}}, wantURL: "ws://h:1/v1/ws"},
		{name: "escapes", gw: "wss://h/v1/ws", room: "a b&c=d", token: "x.y+z/=", want: url.Values{"room": {"a b&c=d"}, "token": {"x.y+z/="}}, wantURL: "wss://h/v1/ws"},
		{name: "keeps other params, replaces ours", gw: "ws://h/v1/ws?v=2&room=old&since=9", room: "r", token: "t", want: url.Values{"v": {"2"}, "room": {"r"}, "token": {"t"}}, wantURL: "ws://h/v1/ws"},
		{name: "http becomes ws", gw: "http://h:8080/v1/ws", room: "r", token: "t", want: url.Values{"room": {"r"}, "token": {"t"}}, wantURL: "ws://h:8080/v1/ws"},
		{name: "https becomes wss", gw: "https://h/v1/ws", room: "r", token: "t", want: url.Values{"room": {"r"}, "token": {"t"}}, wantURL: "wss://h/v1/ws"},
		{name: "relative resolves against base", base: "https://example.com/prefix/", gw: "/v1/ws", room: "r", token: "t", want: url.Values{"room": {"r"}, "token": {"t"}}, wantURL: "wss://example.com/v1/ws"},
		{name: "relative without base fails", gw: "/v1/ws", room: "r", token: "t", wantErr: true},
		{name: "bad scheme fails", gw: "ftp://h/v1/ws", room: "r", token: "t", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := GatewayURL(tt.base, tt.gw, tt.room, tt.token, tt.since, tt.resume)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("GatewayURL = %q, want an error", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			u, err := url.Parse(got)
			if err != nil {
				t.Fatal(err)
			}
			if q := u.Query(); q.Encode() != tt.want.Encode() {
				t.Errorf("query = %v, want %v", q, tt.want)
			}
			u.RawQuery = ""
			if u.String() != tt.wantURL {
				t.Errorf("URL = %q, want %q", u.String(), tt.wantURL)
			}
		})
	}
}

func TestEndpointURL(t *testing.T) {
	tests := []struct {
		name string
		base string
		q    url.Values
		segs []string
		want string
	}{
		{name: "plain", base: "http://h:8080", q: url.Values{"room": {"r 1"}}, segs: []string{"v1", "dispatch"}, want: "http://h:8080/v1/dispatch?room=r+1"},
		{name: "trailing slash", base: "http://h:8080/", segs: []string{"v1", "dev", "token"}, want: "http://h:8080/v1/dev/token"},
		{name: "path prefix kept", base: "https://h/live", segs: []string{"v1", "rooms", "r", "messages"}, want: "https://h/live/v1/rooms/r/messages"},
		{name: "segment escaped", base: "http://h", segs: []string{"v1", "rooms", "a/b?c", "messages"}, want: "http://h/v1/rooms/a%2Fb%3Fc/messages"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := endpointURL(tt.base, tt.q, tt.segs...)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
	for _, bad := range []string{"", "h:8080", "ws://h", "http://"} {
		if _, err := endpointURL(bad, nil, "v1"); err == nil {
			t.Errorf("base %q accepted", bad)
		}
	}
}

func TestRedactURL(t *testing.T) {
	got := redactURL("ws://h/v1/ws?room=r&token=secret.jwt")
	if strings.Contains(got, "secret") || !strings.Contains(got, "room=r") {
		t.Errorf("redactURL = %q", got)
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		name string
		in   string
		want time.Duration
	}{
		{name: "absent", in: "", want: 0},
		{name: "seconds", in: "3", want: 3 * time.Second},
		{name: "zero", in: "0", want: 0},
		{name: "negative", in: "-4", want: 0},
		{name: "garbage", in: "soon", want: 0},
		{name: "date", in: now.Add(90 * time.Second).Format(http.TimeFormat), want: 90 * time.Second},
		{name: "past date", in: now.Add(-time.Hour).Format(http.TimeFormat), want: 0},
		{name: "absurd seconds are capped", in: "99999999999999", want: 24 * time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := parseRetryAfter(tt.in, now); got != tt.want {
				t.Errorf("parseRetryAfter(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

func TestNewAPIError(t *testing.T) {
	h := http.Header{}
	h.Set("Retry-After", "2")
	e := newAPIError(429, h, []byte(`{"error":{"code":"user_rate_limited","message":"slow down","retry_after_ms":1500}}`))
	if e.Body.Code != "user_rate_limited" || e.RetryAfter != 1500*time.Millisecond || !e.Temporary() {
		t.Errorf("got %+v", e)
	}
	e = newAPIError(503, h, []byte(`{"error":{"code":"unavailable","message":"later"}}`))
	if e.RetryAfter != 2*time.Second {
		t.Errorf("header ignored: %+v", e)
	}
	e = newAPIError(400, nil, []byte(`{"error":{"code":"invalid_field","message":"too long","field":"text"}}`))
	if e.Body.Field != "text" || e.Temporary() || !IsFatal(e) {
		t.Errorf("got %+v", e)
	}
	if !strings.Contains(e.Error(), "invalid_field (text): too long") {
		t.Errorf("Error() = %q", e.Error())
	}
	e = newAPIError(503, nil, []byte(`{"error":{"code":"unavailable","message":"later","retry_after_ms":250}}`))
	if e.RetryAfter != 250*time.Millisecond || IsFatal(e) {
		t.Errorf("got %+v", e)
	}
	e = newAPIError(502, nil, []byte("<html>bad gateway</html>"))
	if e.Body.Code != "" || e.Body.Message != "<html>bad gateway</html>" {
		t.Errorf("got %+v", e)
	}
}

func TestIsFatal(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{name: "banned frame", err: &FrameError{Body: ErrorBody{Code: "banned"}}, want: true},
		{name: "slow consumer frame", err: &FrameError{Body: ErrorBody{Code: "slow_consumer"}}, want: false},
		{name: "401", err: &APIError{Status: 401}, want: true},
		{name: "503 draining", err: &APIError{Status: 503, Body: ErrorBody{Code: "draining"}}, want: false},
		{name: "429", err: &APIError{Status: 429}, want: false},
		{name: "wrapped", err: errors.Join(errors.New("x"), &APIError{Status: 403}), want: true},
		{name: "network", err: errors.New("connection refused"), want: false},
		{name: "draining", err: ErrDraining, want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := IsFatal(tt.err); got != tt.want {
				t.Errorf("IsFatal = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestDecodeFrame(t *testing.T) {
	tests := []struct {
		name    string
		raw     string
		check   func(Frame) bool
		wantErr bool
	}{
		{name: "welcome", raw: `{"type":"welcome","room":"r","seq":5,"online":2,"likes":9,"gateway":"gw-1","user":"u","replayed":1}`, check: func(f Frame) bool {
			return f.Welcome != nil && f.Welcome.Seq == 5 && f.Welcome.Gateway == "gw-1" && f.Welcome.Replayed == 1
		}},
		{name: "batch", raw: `{"type":"batch","room":"r","msgs":[{"seq":3,"id":"g","type":"gift","ts":1,"gift":"rocket","count":2},{"id":"d","type":"danmaku","ts":2,"text":"hi"}]}`, check: func(f Frame) bool {
			return f.Batch != nil && len(f.Batch.Msgs) == 2 && f.Batch.Msgs[0].Seq == 3 && f.Batch.Msgs[1].Text == "hi"
		}},
		{name: "reconnect", raw: `{"type":"reconnect","after_ms":1500}`, check: func(f Frame) bool { return f.Reconnect != nil && f.Reconnect.AfterMS == 1500 }},
		{name: "error", raw: `{"type":"error","error":{"code":"banned","message":"bye"}}`, check: func(f Frame) bool { return f.Error != nil && f.Error.Error.Code == "banned" }},
		{name: "unknown type is kept raw", raw: `{"type":"future","x":1}`, check: func(f Frame) bool {
			return f.Type == "future" && f.Welcome == nil && f.Batch == nil && string(f.Raw) == `{"type":"future","x":1}`
		}},
		{name: "no type", raw: `{"room":"r"}`, wantErr: true},
		{name: "not json", raw: `hello`, wantErr: true},
		{name: "bad payload", raw: `{"type":"batch","msgs":"no"}`, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := DecodeFrame([]byte(tt.raw))
			if tt.wantErr {
				if err == nil {
					t.Fatalf("decoded %+v, want an error", f)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !tt.check(f) {
				t.Errorf("unexpected frame %+v", f)
			}
		})
	}
}

func FuzzDecodeFrame(f *testing.F) {
	f.Add([]byte(`{"type":"welcome","room":"r","seq":5}`))
	f.Add([]byte(`{"type":"batch","room":"r","msgs":[{"seq":3,"id":"g","type":"gift","ts":1}]}`))
	f.Add([]byte(`{"type":"reconnect","after_ms":-1}`))
	f.Add([]byte(`{"type":"error","error":{"code":"x"}}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		fr, err := DecodeFrame(raw)
		if err != nil {
			return
		}
		set := 0
		for _, ok := range []bool{fr.Welcome != nil, fr.Batch != nil, fr.Reconnect != nil, fr.Error != nil} {
			if ok {
				set++
			}
		}
		if set > 1 || fr.Type == "" {
			t.Fatalf("inconsistent frame %+v", fr)
		}
	})
}
