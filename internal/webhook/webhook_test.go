package webhook_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/liveroom/liveroom/internal/bus"
	"github.com/liveroom/liveroom/internal/protocol"
	"github.com/liveroom/liveroom/internal/testutil"
	"github.com/liveroom/liveroom/internal/webhook"
)

// receiver is a webhook endpoint that records what it got and answers
// with status() (200 when nil).
type receiver struct {
	t      *testing.T
	secret string
	srv    *httptest.Server

	mu       sync.Mutex
	status   func(id string, attempt int) int
	got      []webhook.Payload
	attempts map[string][]int
	headers  []http.Header
	badSig   int
}

func newReceiver(t *testing.T, secret string) *receiver {
	r := &receiver{t: t, secret: secret, attempts: map[string][]int{}}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		id := req.Header.Get(webhook.HeaderEventID)
		attempt, _ := strconv.Atoi(req.Header.Get(webhook.HeaderAttempt))
		r.mu.Lock()
		defer r.mu.Unlock()
		r.headers = append(r.headers, req.Header.Clone())
		if webhook.VerifyRequest(r.secret, req.Header, body, time.Now(), 0) != nil {
			r.badSig++
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		r.attempts[id] = append(r.attempts[id], attempt)
		st := http.StatusOK
		if r.status != nil {
			st = r.status(id, attempt)
		}
		if st == http.StatusOK {
			var p webhook.Payload
			if err := json.Unmarshal(body, &p); err != nil {
				t.Errorf("payload: %v", err)
			}
			r.got = append(r.got, p)
		}
		w.WriteHeader(st)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) delivered() []webhook.Payload {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]webhook.Payload(nil), r.got...)
}

func setup(t *testing.T) jetstream.JetStream {
	t.Helper()
	_, _, js := testutil.StartBackbone(t)
	return js
}

func publish(t *testing.T, js jetstream.JetStream, m protocol.Message) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := js.PublishMsg(ctx, &nats.Msg{Subject: bus.StoreSubject(protocol.Room(m.Room)), Data: protocol.Encode(m)},
		jetstream.WithMsgID(m.ID)); err != nil {
		t.Fatal(err)
	}
}

func start(t *testing.T, cfg webhook.Config) *webhook.Dispatcher {
	t.Helper()
	d, err := webhook.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := d.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Stop)
	return d
}

func TestSignature(t *testing.T) {
	body := []byte(`{"id":"x"}`)
	sig := webhook.Sign("s3cret", "1700000000", body)
	// Computed independently: printf '1700000000.{"id":"x"}' | openssl dgst -sha256 -hmac s3cret
	const want = "sha256=" + opensslHMAC
	if sig != want {
		t.Fatalf("signature %q, want %q", sig, want)
	}
	if !webhook.Verify("s3cret", "1700000000", body, sig) {
		t.Error("Verify rejects its own signature")
	}
	for name, bad := range map[string]func() bool{
		"other secret":    func() bool { return webhook.Verify("other", "1700000000", body, sig) },
		"other body":      func() bool { return webhook.Verify("s3cret", "1700000000", []byte(`{"id":"y"}`), sig) },
		"other timestamp": func() bool { return webhook.Verify("s3cret", "1700000001", body, sig) },
		"empty sig":       func() bool { return webhook.Verify("s3cret", "1700000000", body, "") },
	} {
		if bad() {
			t.Errorf("%s: verified", name)
		}
	}
}

// opensslHMAC is printf '1700000000.{"id":"x"}' | openssl dgst -sha256 -hmac s3cret.
const opensslHMAC = "2382c1d0968a5e57238c68de957f44d87e83d3049a5588ec251442ca372b8aec"

// TestReplayedDeliveryIsRefused: a captured delivery is refused later,
// whether it is replayed as it was (its timestamp is too old) or with a
// fresh timestamp (its signature no longer matches).
func TestReplayedDeliveryIsRefused(t *testing.T) {
	body := []byte(`{"id":"g1","event":"gift"}`)
	sent := time.Unix(1_700_000_000, 0)
	h := http.Header{}
	ts := strconv.FormatInt(sent.Unix(), 10)
	h.Set(webhook.HeaderTimestamp, ts)
	h.Set(webhook.HeaderSignature, webhook.Sign("s3cret", ts, body))
	if err := webhook.VerifyRequest("s3cret", h, body, sent.Add(10*time.Second), 0); err != nil {
		t.Fatalf("a fresh delivery: %v", err)
	}
	if err := webhook.VerifyRequest("s3cret", h, body, sent.Add(time.Hour), 0); !errors.Is(err, webhook.ErrStale) {
		t.Fatalf("replayed an hour later: %v, want ErrStale", err)
	}
	later := sent.Add(time.Hour)
	h.Set(webhook.HeaderTimestamp, strconv.FormatInt(later.Unix(), 10))
	if err := webhook.VerifyRequest("s3cret", h, body, later, 0); !errors.Is(err, webhook.ErrBadSignature) {
		t.Fatalf("replayed with a fresh timestamp: %v, want ErrBadSignature", err)
	}
	h.Del(webhook.HeaderTimestamp)
	if err := webhook.VerifyRequest("s3cret", h, body, later, 0); err == nil {
		t.Fatal("a delivery without a timestamp verified")
	}
}

// TestRedirectIsNotFollowed: an endpoint answering 307 to an internal
// address gets no second POST there; the attempt counts as failed and is
// retried at the endpoint itself. Logs and dead letters show its URL
// without user info or query.
func TestRedirectIsNotFollowed(t *testing.T) {
	js := setup(t)
	var internal atomic.Int32
	inside := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { internal.Add(1) }))
	defer inside.Close()
	var hits atomic.Int32
	bouncer := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		http.Redirect(w, r, inside.URL+"/steal", http.StatusTemporaryRedirect)
	}))
	defer bouncer.Close()
	u, _ := url.Parse(bouncer.URL)
	u.User = url.UserPassword("hook", "pa55word")
	u.RawQuery = "token=t0ps3cret"
	var logs testutil.SyncBuffer
	d := start(t, webhook.Config{JS: js, Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		MaxAttempts: 2, Backoff: webhook.Duration(50 * time.Millisecond),
		Endpoints: []webhook.Endpoint{{URL: u.String(), Events: []string{"*"}, Secret: "s"}}})
	publish(t, js, protocol.Message{ID: "g-redirect", Type: protocol.TypeGift, Room: "r1", User: "u", TS: time.Now().UnixMilli(), Gift: "rose", Count: 1})
	testutil.Eventually(t, 10*time.Second, "the event is dead-lettered", func() bool { return d.Stats().Dead == 1 })
	if n := internal.Load(); n != 0 {
		t.Fatalf("the redirect was followed %d times", n)
	}
	if n := hits.Load(); n != 2 {
		t.Fatalf("the endpoint was tried %d times, want 2 (MaxAttempts)", n)
	}
	for _, secret := range []string{"pa55word", "t0ps3cret"} {
		if strings.Contains(logs.String(), secret) {
			t.Fatalf("a log line shows the endpoint's credential %q:\n%s", secret, logs.String())
		}
	}
	if !strings.Contains(logs.String(), "dead-lettered") {
		t.Fatalf("no dead-letter log line:\n%s", logs.String())
	}
}

// TestDeliveryByEventType: each endpoint gets the events it subscribed to,
// signed, with the headers; events nobody wants are skipped.
func TestDeliveryByEventType(t *testing.T) {
	js := setup(t)
	gifts := newReceiver(t, "gift-secret")
	all := newReceiver(t, "all-secret")
	start(t, webhook.Config{JS: js, Logger: testutil.Logger(), Endpoints: []webhook.Endpoint{
		{URL: gifts.srv.URL, Events: []string{"gift"}, Secret: "gift-secret"},
		{URL: all.srv.URL, Events: []string{"*"}, Secret: "all-secret"},
	}})
	now := time.Now().UnixMilli()
	publish(t, js, protocol.Message{ID: "g1", Type: protocol.TypeGift, Room: "r1", User: "u", TS: now, Gift: "rose", Count: 2})
	publish(t, js, protocol.Message{ID: "n1", Type: protocol.TypeNotice, Room: "r1", TS: now, Action: "live_start", Session: "s1"})
	publish(t, js, protocol.Message{ID: "n2", Type: protocol.TypeNotice, Room: "r1", TS: now, Action: "mute", User: "bad"})
	publish(t, js, protocol.Message{ID: "n3", Type: protocol.TypeNotice, Room: "r1", TS: now, Text: "plain notice"})
	publish(t, js, protocol.Message{ID: "g2", Type: protocol.TypeGift, Room: "r2", User: "u", TS: now, Gift: "car", Count: 1})

	testutil.Eventually(t, 10*time.Second, "deliveries", func() bool {
		return len(gifts.delivered()) == 2 && len(all.delivered()) == 4
	})
	time.Sleep(300 * time.Millisecond) // nothing more may come
	// Deliveries run concurrently (Config.Concurrency): compare as sets.
	events := func(r *receiver) string {
		var s []string
		for _, p := range r.delivered() {
			s = append(s, p.ID+":"+p.Event)
		}
		slices.Sort(s)
		return strings.Join(s, " ")
	}
	if got := events(gifts); got != "g1:gift g2:gift" {
		t.Errorf("gift endpoint got %s", got)
	}
	if got := events(all); got != "g1:gift g2:gift n1:live_start n2:moderation" {
		t.Errorf("* endpoint got %s", got)
	}
	p := gifts.delivered()[0]
	if p.ID != "g1" {
		p = gifts.delivered()[1]
	}
	var m protocol.Message
	if err := json.Unmarshal(p.Message, &m); err != nil || m.Gift != "rose" || m.Count != 2 || p.Room != "r1" || p.Seq != 1 {
		t.Errorf("payload %+v message %+v err %v", p, m, err)
	}
	gifts.mu.Lock()
	h := gifts.headers[0]
	if h.Get(webhook.HeaderEventID) != "g1" {
		h = gifts.headers[1]
	}
	gifts.mu.Unlock()
	if h.Get(webhook.HeaderEventID) != "g1" || h.Get(webhook.HeaderEvent) != "gift" || h.Get(webhook.HeaderTimestamp) == "" || h.Get("Content-Type") != "application/json" {
		t.Errorf("headers %v", h)
	}
	if gifts.badSig+all.badSig != 0 {
		t.Errorf("bad signatures: %d", gifts.badSig+all.badSig)
	}
}

// TestRetryWithBackoff: an endpoint failing its first attempts gets the
// same event (same id) again, later each time, until it accepts it.
func TestRetryWithBackoff(t *testing.T) {
	js := setup(t)
	r := newReceiver(t, "k")
	var times []time.Time
	r.status = func(id string, attempt int) int {
		times = append(times, time.Now())
		if attempt < 4 {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	}
	d := start(t, webhook.Config{JS: js, Logger: testutil.Logger(), MaxAttempts: 6,
		Backoff: webhook.Duration(100 * time.Millisecond), MaxBackoff: webhook.Duration(time.Second),
		Endpoints: []webhook.Endpoint{{URL: r.srv.URL, Events: []string{"gift"}, Secret: "k"}}})
	publish(t, js, protocol.Message{ID: "g-retry", Type: protocol.TypeGift, Room: "r1", TS: 1, Gift: "rose", Count: 1})
	testutil.Eventually(t, 10*time.Second, "delivered after retries", func() bool { return len(r.delivered()) == 1 })
	// The dispatcher counts a delivery after reading the endpoint's answer:
	// the receiver has recorded it before.
	testutil.Eventually(t, 5*time.Second, "the delivery counted", func() bool { return d.Stats().Delivered == 1 })
	r.mu.Lock()
	defer r.mu.Unlock()
	if got := fmt.Sprint(r.attempts["g-retry"]); got != "[1 2 3 4]" {
		t.Errorf("attempts %s, want [1 2 3 4]", got)
	}
	// Backoff 100, 200, 400 ms: each wait at least the configured one.
	for i, min := range []time.Duration{100, 200, 400} {
		if gap := times[i+1].Sub(times[i]); gap < min*time.Millisecond {
			t.Errorf("retry %d after %v, want at least %v", i+1, gap, min*time.Millisecond)
		}
	}
	if st := d.Stats(); st.Delivered != 1 || st.Failed != 3 || st.Dead != 0 {
		t.Errorf("stats %+v", st)
	}
}

// TestDeadLetter: an endpoint that never accepts gets MaxAttempts tries,
// then a dead-letter record; a healthy endpoint is not held up meanwhile.
func TestDeadLetter(t *testing.T) {
	js := setup(t)
	down := newReceiver(t, "k")
	down.status = func(string, int) int { return http.StatusBadGateway }
	up := newReceiver(t, "k2")
	d := start(t, webhook.Config{JS: js, Logger: testutil.Logger(), MaxAttempts: 3,
		Backoff: webhook.Duration(50 * time.Millisecond), MaxBackoff: webhook.Duration(100 * time.Millisecond),
		Endpoints: []webhook.Endpoint{
			{URL: down.srv.URL, Events: []string{"gift"}, Secret: "k"},
			{URL: up.srv.URL, Events: []string{"gift"}, Secret: "k2"},
		}})
	for i := range 3 {
		publish(t, js, protocol.Message{ID: fmt.Sprintf("g%d", i), Type: protocol.TypeGift, Room: "r1", TS: 1, Gift: "rose", Count: 1})
	}
	testutil.Eventually(t, 5*time.Second, "the healthy endpoint gets every event", func() bool { return len(up.delivered()) == 3 })
	testutil.Eventually(t, 10*time.Second, "dead letters", func() bool { return d.Stats().Dead == 3 })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	dls, err := webhook.DeadLetters(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	if len(dls) != 3 {
		t.Fatalf("%d dead letters, want 3: %+v", len(dls), dls)
	}
	for _, dl := range dls {
		var p webhook.Payload
		if dl.Endpoint != down.srv.URL || dl.Attempts != 3 || dl.LastStatus != http.StatusBadGateway || dl.LastError == "" ||
			dl.Event != "gift" || json.Unmarshal(dl.Payload, &p) != nil || p.ID != dl.EventID {
			t.Errorf("dead letter %+v", dl)
		}
	}
	down.mu.Lock()
	defer down.mu.Unlock()
	for id, a := range down.attempts {
		if fmt.Sprint(a) != "[1 2 3]" {
			t.Errorf("%s: attempts %v, want [1 2 3]", id, a)
		}
	}
}
