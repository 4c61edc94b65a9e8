package client

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/liveroom/liveroom/internal/protocol"
)

// expectQuery records a mismatch between a connection's query and what the
// test expects, for the test goroutine to report.
type queryLog struct {
	mu   sync.Mutex
	errs []string
}

func (l *queryLog) expect(n int, q url.Values, key, want string) {
	if got := q.Get(key); got != want || (want == "" && q.Has(key)) {
		l.mu.Lock()
		l.errs = append(l.errs, fmt.Sprintf("connection %d: %s=%q (present %v), want %q", n, key, got, q.Has(key), want))
		l.mu.Unlock()
	}
}

func (l *queryLog) check(t *testing.T) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, e := range l.errs {
		t.Error(e)
	}
}

func TestConnReconnectsThroughDispatchWithoutDuplicates(t *testing.T) {
	const room = "r1"
	var ql queryLog
	notice := Message{ID: "n-a", Type: protocol.TypeNotice, Text: "you were warned", TS: 1}
	gwB := newFakeGateway(t, "gw-b", func(n int, q url.Values, c *serverConn) {
		ql.expect(n, q, "room", room)
		ql.expect(n, q, "token", "tok")
		switch n {
		case 0: // fresh join, then a drain
			ql.expect(n, q, "since", "")
			c.welcome(room, 10, 0)
			c.batch(room, danmaku("d1"), gift("g11", 11))
			c.batch(room, gift("g12", 12), gift("g11", 11))
			c.send(`{"type":"reconnect","after_ms":40}`)
			// A draining gateway still serves until the client moves.
			c.batch(room, gift("g13", 13))
			c.waitClosed()
		case 1: // replay overlapping what was seen, then a non-fatal error
			ql.expect(n, q, "since", "13")
			c.welcome(room, 14, 1)
			// g10 was never delivered (it predates the join) but its
			// sequence is below since: only the sequence check drops it.
			c.batch(room, gift("g10", 10), gift("g12", 12), gift("g13", 13), gift("g14", 14))
			c.batch(room, danmaku("d2"), notice)
			c.batch(room, notice)
			c.send(`{"type":"error","error":{"code":"slow_consumer","message":"too slow"}}`)
		case 2: // a plain drop
			ql.expect(n, q, "since", "14")
			c.welcome(room, 14, 0)
			c.batch(room, gift("g14", 14), gift("g15", 15))
		default:
			ql.expect(n, q, "since", "15")
			c.welcome(room, 15, 0)
			c.batch(room, danmaku("d3"))
			c.waitClosed()
		}
	})
	// gw-a is dispatch's first choice and always refuses: every round
	// falls through to gw-b.
	gwA := newFakeGateway(t, "gw-a", func(int, url.Values, *serverConn) {})
	gwA.refuse = func(int, url.Values) (int, string) { return http.StatusServiceUnavailable, protocol.CodeDraining }
	disp := newFakeDispatch(t, func(int) []Gateway {
		return []Gateway{{ID: "gw-a", URL: gwA.URL(), Load: 0.1}, {ID: "gw-b", URL: gwB.URL(), Load: 0.5}}
	})

	c, err := Connect(testCtx(t), Config{BaseURL: disp.srv.URL, Room: room, Token: "tok"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	want := []string{
		"welcome seq=10",
		"msg danmaku d1", "msg gift g11#11", "msg gift g12#12", "msg gift g13#13",
		"reconnecting", "reconnected seq=14",
		"msg gift g14#14", "msg danmaku d2", "msg notice n-a",
		"reconnecting", "reconnected seq=14",
		"msg gift g15#15",
		"reconnecting", "reconnected seq=15",
		"msg danmaku d3",
	}
	var reconnecting []Event
	for _, ev := range expectEvents(t, c, want) {
		if ev.Kind == EventReconnecting {
			reconnecting = append(reconnecting, ev)
		}
	}
	ql.check(t)

	if !errors.Is(reconnecting[0].Err, ErrDraining) {
		t.Errorf("first drop cause = %v, want ErrDraining", reconnecting[0].Err)
	}
	var fe *FrameError
	if !errors.As(reconnecting[1].Err, &fe) || fe.Body.Code != protocol.CodeSlowConsumer {
		t.Errorf("second drop cause = %v, want slow_consumer", reconnecting[1].Err)
	}
	for i, ev := range reconnecting {
		if ev.Delay < 0 {
			t.Errorf("reconnecting %d: negative delay %v", i, ev.Delay)
		}
		if ev.Attempt != 1 || ev.Gateway != "gw-b" {
			t.Errorf("reconnecting %d: attempt %d gateway %q", i, ev.Attempt, ev.Gateway)
		}
	}
	if n := disp.Calls(); n != 4 {
		t.Errorf("dispatch called %d times, want 4 (once per connection)", n)
	}
	// Each round tried gw-a first, with the same since as gw-b then got.
	qa, qb := gwA.Queries(), gwB.Queries()
	if len(qa) != 4 || len(qb) != 4 {
		t.Fatalf("gw-a saw %d requests, gw-b %d; want 4 each", len(qa), len(qb))
	}
	for i := range qa {
		if qa[i].Encode() != qb[i].Encode() {
			t.Errorf("round %d: gw-a query %v, gw-b query %v", i, qa[i], qb[i])
		}
	}
	if c.LastSeq() != 15 || c.Gateway() != "gw-b" {
		t.Errorf("LastSeq %d Gateway %q", c.LastSeq(), c.Gateway())
	}

	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	for ev := range c.Events() {
		if ev.Kind != EventClosed || !errors.Is(ev.Err, ErrClosed) {
			t.Errorf("after Close: %s %v", describe(ev), ev.Err)
		}
	}
}

func TestConnRetriesWithBackoffUntilAGatewayAccepts(t *testing.T) {
	const room = "r2"
	gw := newFakeGateway(t, "gw-1", func(n int, q url.Values, c *serverConn) {
		c.welcome(room, 5, 0)
		if n == 0 {
			c.batch(room, gift("g6", 6))
			return // drop
		}
		c.batch(room, gift("g7", 7))
		c.waitClosed()
	})
	// Connections 1 and 2 are refused: the client must back off, ask
	// dispatch again and retry.
	gw.refuse = func(n int, _ url.Values) (int, string) {
		if n == 1 || n == 2 {
			return http.StatusServiceUnavailable, protocol.CodeUnavailable
		}
		return 0, ""
	}
	disp := newFakeDispatch(t, func(int) []Gateway { return []Gateway{{ID: "gw-1", URL: gw.URL()}} })
	c, err := Connect(testCtx(t), Config{BaseURL: disp.srv.URL, Room: room, Token: "tok"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	want := []string{"welcome seq=5", "msg gift g6#6", "reconnecting", "reconnecting", "reconnecting", "reconnected seq=5", "msg gift g7#7"}
	var got []string
	var attempts []int
	for range want {
		ev := nextEvent(t, c)
		got = append(got, describe(ev))
		if ev.Kind == EventReconnecting {
			attempts = append(attempts, ev.Attempt)
			if ev.Delay <= 0 || ev.Delay > 20*time.Millisecond {
				t.Errorf("attempt %d: delay %v outside the announced policy (max 20ms)", ev.Attempt, ev.Delay)
			}
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("events:\n got %s\nwant %s", strings.Join(got, ", "), strings.Join(want, ", "))
	}
	if !slices.Equal(attempts, []int{1, 2, 3}) {
		t.Errorf("attempts %v", attempts)
	}
	for i, q := range gw.Queries()[1:] {
		if q.Get("since") != "6" {
			t.Errorf("request %d: since=%q, want 6", i+1, q.Get("since"))
		}
	}
	if n := disp.Calls(); n != 4 {
		t.Errorf("dispatch called %d times, want 4", n)
	}
}

func TestConnStopsOnFatalError(t *testing.T) {
	gw := newFakeGateway(t, "gw-1", func(n int, q url.Values, c *serverConn) {
		c.welcome("r1", 0, 0)
		c.batch("r1", danmaku("d1"))
		c.send(`{"type":"error","error":{"code":"banned","message":"bye"}}`)
	})
	disp := newFakeDispatch(t, func(int) []Gateway { return []Gateway{{ID: "gw-1", URL: gw.URL()}} })
	c, err := Connect(testCtx(t), Config{BaseURL: disp.srv.URL, Room: "r1", Token: "tok"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var last Event
	var n int
	for ev := range c.Events() {
		last = ev
		n++
	}
	if n != 3 || last.Kind != EventClosed || !IsFatal(last.Err) {
		t.Fatalf("%d events, last %s %v", n, describe(last), last.Err)
	}
	var fe *FrameError
	if !errors.As(last.Err, &fe) || fe.Body.Code != protocol.CodeBanned {
		t.Errorf("err = %v", last.Err)
	}
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("Done not closed")
	}
	if disp.Calls() != 1 {
		t.Errorf("dispatch called %d times after a fatal error", disp.Calls())
	}
}

func TestConnectFailures(t *testing.T) {
	refusing := func(status int, code string) *fakeGateway {
		g := newFakeGateway(t, "gw", func(int, url.Values, *serverConn) {})
		g.refuse = func(int, url.Values) (int, string) { return status, code }
		return g
	}
	t.Run("all candidates busy", func(t *testing.T) {
		a, b := refusing(503, protocol.CodeDraining), refusing(503, protocol.CodeUnavailable)
		disp := newFakeDispatch(t, func(int) []Gateway { return []Gateway{{ID: "a", URL: a.URL()}, {ID: "b", URL: b.URL()}} })
		_, err := Connect(testCtx(t), Config{BaseURL: disp.srv.URL, Room: "r1", Token: "tok"})
		if err == nil || IsFatal(err) {
			t.Fatalf("err = %v, want a non-fatal error", err)
		}
		if len(a.Queries()) != 1 || len(b.Queries()) != 1 {
			t.Errorf("candidates tried %d and %d times", len(a.Queries()), len(b.Queries()))
		}
		var ae *APIError
		if !errors.As(err, &ae) || ae.Status != 503 {
			t.Errorf("err = %v, want to wrap the 503s", err)
		}
	})
	t.Run("unauthorized stops at the first candidate", func(t *testing.T) {
		a, b := refusing(401, protocol.CodeUnauthorized), refusing(503, protocol.CodeUnavailable)
		disp := newFakeDispatch(t, func(int) []Gateway { return []Gateway{{ID: "a", URL: a.URL()}, {ID: "b", URL: b.URL()}} })
		_, err := Connect(testCtx(t), Config{BaseURL: disp.srv.URL, Room: "r1", Token: "tok"})
		if !IsFatal(err) {
			t.Fatalf("err = %v, want fatal", err)
		}
		if len(b.Queries()) != 0 {
			t.Error("second candidate tried after a fatal refusal")
		}
	})
	t.Run("no gateway", func(t *testing.T) {
		disp := newFakeDispatch(t, func(int) []Gateway { return nil })
		_, err := Connect(testCtx(t), Config{BaseURL: disp.srv.URL, Room: "r1", Token: "tok"})
		if !errors.Is(err, ErrNoGateway) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("dispatch error", func(t *testing.T) {
		disp := newFakeDispatch(t, func(int) []Gateway { return nil })
		_, err := Connect(testCtx(t), Config{BaseURL: disp.srv.URL + "/nope", Room: "r1", Token: "tok"})
		var ae *APIError
		if !errors.As(err, &ae) || ae.Status != 404 || ae.Body.Code != protocol.CodeNotFound {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("config", func(t *testing.T) {
		for _, cfg := range []Config{
			{Room: "r1", Token: "t"},
			{BaseURL: "http://h", Room: "bad room", Token: "t"},
			{BaseURL: "http://h", Room: "r1"},
		} {
			if _, err := Connect(testCtx(t), cfg); err == nil {
				t.Errorf("config %+v accepted", cfg)
			}
		}
	})
	t.Run("first frame is an error", func(t *testing.T) {
		g := newFakeGateway(t, "gw", func(n int, q url.Values, c *serverConn) {
			c.send(`{"type":"error","error":{"code":"forbidden","message":"room closed"}}`)
		})
		disp := newFakeDispatch(t, func(int) []Gateway { return []Gateway{{ID: "a", URL: g.URL()}} })
		_, err := Connect(testCtx(t), Config{BaseURL: disp.srv.URL, Room: "r1", Token: "tok"})
		var fe *FrameError
		if !errors.As(err, &fe) || !IsFatal(err) {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestConnResumesFromConfiguredSince(t *testing.T) {
	var ql queryLog
	gw := newFakeGateway(t, "gw-1", func(n int, q url.Values, c *serverConn) {
		ql.expect(n, q, "since", "20")
		// The room moved on to 22; the replay must not be dropped because
		// the welcome announces a higher sequence.
		c.welcome("r1", 22, 2)
		c.batch("r1", gift("g21", 21), gift("g22", 22))
		c.waitClosed()
	})
	disp := newFakeDispatch(t, func(int) []Gateway { return []Gateway{{ID: "gw-1", URL: gw.URL()}} })
	c, err := Connect(testCtx(t), Config{BaseURL: disp.srv.URL, Room: "r1", Token: "tok", Since: 20})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var got []string
	for range 3 {
		got = append(got, describe(nextEvent(t, c)))
	}
	if want := []string{"welcome seq=22", "msg gift g21#21", "msg gift g22#22"}; !slices.Equal(got, want) {
		t.Fatalf("events %v, want %v", got, want)
	}
	ql.check(t)
}

func TestConnBlocksInsteadOfDropping(t *testing.T) {
	const total = 300
	gw := newFakeGateway(t, "gw-1", func(n int, q url.Values, c *serverConn) {
		c.welcome("r1", 0, 0)
		for i := 1; i <= total; i++ {
			c.batch("r1", gift(fmt.Sprintf("g%d", i), uint64(i)))
		}
		c.waitClosed()
	})
	disp := newFakeDispatch(t, func(int) []Gateway { return []Gateway{{ID: "gw-1", URL: gw.URL()}} })
	c, err := Connect(testCtx(t), Config{BaseURL: disp.srv.URL, Room: "r1", Token: "tok", Buffer: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if ev := nextEvent(t, c); ev.Kind != EventWelcome {
		t.Fatalf("first event %s", describe(ev))
	}
	for i := 1; i <= total; i++ {
		if i <= 5 {
			time.Sleep(10 * time.Millisecond) // a slow start fills every buffer
		}
		ev := nextEvent(t, c)
		if ev.Kind != EventMessage || ev.Msg.Seq != uint64(i) {
			t.Fatalf("event %d: %s", i, describe(ev))
		}
	}
}

func TestConnCloseWhileConsumerIsAway(t *testing.T) {
	gw := newFakeGateway(t, "gw-1", func(n int, q url.Values, c *serverConn) {
		c.welcome("r1", 0, 0)
		for i := 1; i <= 50; i++ {
			c.batch("r1", danmaku(fmt.Sprintf("d%d", i)))
		}
		c.waitClosed()
	})
	disp := newFakeDispatch(t, func(int) []Gateway { return []Gateway{{ID: "gw-1", URL: gw.URL()}} })
	c, err := Connect(testCtx(t), Config{BaseURL: disp.srv.URL, Room: "r1", Token: "tok", Buffer: 2})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // let the reader block on the full channel
	done := make(chan struct{})
	go func() { _ = c.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close blocked while the reader waited for the consumer")
	}
}

func TestConnOnEvent(t *testing.T) {
	gw := newFakeGateway(t, "gw-1", func(n int, q url.Values, c *serverConn) {
		c.welcome("r1", 3, 0)
		c.batch("r1", gift("g4", 4), gift("g4", 4), danmaku("d"))
		c.waitClosed()
	})
	disp := newFakeDispatch(t, func(int) []Gateway { return []Gateway{{ID: "gw-1", URL: gw.URL()}} })
	var mu sync.Mutex
	var got []string
	c, err := Connect(testCtx(t), Config{
		BaseURL: disp.srv.URL, Room: "r1", Token: "tok",
		OnEvent: func(ev Event) {
			mu.Lock()
			got = append(got, describe(ev))
			mu.Unlock()
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n >= 3 || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	_ = c.Close()
	if _, ok := <-c.Events(); ok {
		t.Error("event sent on the channel although OnEvent is set")
	}
	want := []string{"welcome seq=3", "msg gift g4#4", "msg danmaku d", "closed"}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(got, want) {
		t.Errorf("events %v, want %v", got, want)
	}
}

func TestConnectContextBoundsConnectOnly(t *testing.T) {
	gw := newFakeGateway(t, "gw-1", func(n int, q url.Values, c *serverConn) {
		c.welcome("r1", 0, 0)
		c.waitClosed()
	})
	disp := newFakeDispatch(t, func(int) []Gateway { return []Gateway{{ID: "gw-1", URL: gw.URL()}} })
	ctx, cancel := context.WithCancel(context.Background())
	c, err := Connect(ctx, Config{BaseURL: disp.srv.URL, Room: "r1", Token: "tok"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cancel()
	if ev := nextEvent(t, c); ev.Kind != EventWelcome {
		t.Fatalf("first event %s", describe(ev))
	}
	select {
	case <-c.Done():
		t.Fatal("Conn ended when Connect's context was cancelled")
	case <-time.After(50 * time.Millisecond):
	}
}

// TestConnContinuesAPartialReplay: a gateway that replays only part of what
// the client missed ends with reconnect/replay_continues; the client comes
// back at once with its new since and gets the rest, in order, once.
func TestConnContinuesAPartialReplay(t *testing.T) {
	const room = "r2"
	var ql queryLog
	gw := newFakeGateway(t, "gw-a", func(n int, q url.Values, c *serverConn) {
		switch n {
		case 0:
			ql.expect(n, q, "since", "5")
			c.welcome(room, 9, 2)
			c.batch(room, gift("g6", 6), gift("g7", 7))
			c.send(`{"type":"reconnect","after_ms":0,"reason":"replay_continues"}`)
			c.waitClosed()
		default:
			ql.expect(n, q, "since", "7")
			c.welcome(room, 9, 2)
			c.batch(room, gift("g8", 8), gift("g9", 9))
			c.waitClosed()
		}
	})
	disp := newFakeDispatch(t, func(int) []Gateway { return []Gateway{{ID: "gw-a", URL: gw.URL()}} })
	c, err := Connect(testCtx(t), Config{BaseURL: disp.srv.URL, Room: room, Token: "tok", Since: 5})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	want := []string{"welcome seq=9", "msg gift g6#6", "msg gift g7#7", "reconnecting", "reconnected seq=9", "msg gift g8#8", "msg gift g9#9"}
	var got []string
	for range want {
		ev := nextEvent(t, c)
		got = append(got, describe(ev))
		if ev.Kind == EventReconnecting && (!errors.Is(ev.Err, ErrReplayContinues) || ev.Delay != 0) {
			t.Errorf("reconnecting: cause %v delay %v, want ErrReplayContinues at once", ev.Err, ev.Delay)
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("events:\n got %s\nwant %s", strings.Join(got, ", "), strings.Join(want, ", "))
	}
	ql.check(t)
}

// TestConnWaitsWhileEveryGatewayIsFull: a wait answer from dispatch is no
// error: Connect waits as asked (EventWaiting each time) and asks again
// with attempt=N, and a reconnect does the same with since=, so that
// dispatch counts neither as a new viewer.
func TestConnWaitsWhileEveryGatewayIsFull(t *testing.T) {
	const room = "full"
	gw := newFakeGateway(t, "gw-1", func(n int, q url.Values, c *serverConn) {
		c.welcome(room, 5, 0)
		if n == 0 {
			c.batch(room, gift("g6", 6))
			return // drop
		}
		c.waitClosed()
	})
	disp := newFakeDispatch(t, func(int) []Gateway { return []Gateway{{ID: "gw-1", URL: gw.URL()}} })
	disp.wait = func(call int) int64 {
		if call < 2 || call == 3 {
			return 30
		}
		return 0
	}
	var mu sync.Mutex
	var events []string
	var delays []time.Duration
	start := time.Now()
	c, err := Connect(testCtx(t), Config{BaseURL: disp.srv.URL, Room: room, Token: "tok", OnEvent: func(ev Event) {
		mu.Lock()
		defer mu.Unlock()
		events = append(events, describe(ev))
		if ev.Kind == EventWaiting {
			delays = append(delays, ev.Delay)
		}
	}})
	if err != nil {
		t.Fatalf("Connect through two waits: %v", err)
	}
	defer c.Close()
	if took := time.Since(start); took < 60*time.Millisecond {
		t.Errorf("Connect took %v: it did not wait 2 × 30ms", took)
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		mu.Lock()
		done := slices.Contains(events, "reconnected seq=5")
		mu.Unlock()
		if done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no reconnect within 5s after the drop")
		}
	}
	mu.Lock()
	want := []string{"waiting", "waiting", "welcome seq=5", "msg gift g6#6", "reconnecting", "waiting", "reconnected seq=5"}
	if !slices.Equal(events, want) {
		t.Errorf("events:\n got %v\nwant %v", events, want)
	}
	for _, d := range delays {
		if d != 30*time.Millisecond {
			t.Errorf("waited %v, want the 30ms asked", d)
		}
	}
	mu.Unlock()
	var got []string
	for _, q := range disp.Queries() {
		got = append(got, "since="+q.Get("since")+" attempt="+q.Get("attempt"))
	}
	if want := []string{"since= attempt=", "since= attempt=1", "since= attempt=2", "since=6 attempt=", "since=6 attempt=1"}; !slices.Equal(got, want) {
		t.Errorf("dispatch requests %v, want %v", got, want)
	}
}

func TestDispatchAnswerWait(t *testing.T) {
	for _, tc := range []struct {
		a    DispatchAnswer
		want time.Duration
	}{
		{DispatchAnswer{Gateways: []Gateway{{ID: "g"}}, RetryAfterMS: 500}, 0},
		{DispatchAnswer{RetryAfterMS: 750}, 750 * time.Millisecond},
		{DispatchAnswer{RetryAfterMS: -3}, 0},
		{DispatchAnswer{}, 0},
		{DispatchAnswer{RetryAfterMS: 1e9}, time.Minute},
	} {
		if got := tc.a.Wait(); got != tc.want {
			t.Errorf("%+v: Wait() = %v, want %v", tc.a, got, tc.want)
		}
	}
}

// TestConnLeavesASilentGateway: a gateway that announced heartbeats and then
// hangs (its socket open, nothing written) is left after LivenessFactor
// heartbeat intervals, and the Conn resumes on the next gateway with since;
// a gateway that keeps sending heartbeats in a quiet room is kept.
func TestConnLeavesASilentGateway(t *testing.T) {
	const room = "quiet"
	hung := newFakeGateway(t, "hung", func(n int, q url.Values, c *serverConn) {
		c.send(protocol.Welcome{Type: protocol.FrameWelcome, Room: room, Seq: 2, Gateway: "hung", HeartbeatMS: 100})
		c.batch(room, gift("g3", 3))
		time.Sleep(2 * time.Second) // hangs with the socket open
	})
	alive := newFakeGateway(t, "alive", func(n int, q url.Values, c *serverConn) {
		if q.Get("since") != "3" {
			t.Errorf("resumed with since=%q, want 3", q.Get("since"))
		}
		c.send(protocol.Welcome{Type: protocol.FrameWelcome, Room: room, Seq: 4, Gateway: "alive", HeartbeatMS: 100, Replayed: 1})
		c.batch(room, gift("g4", 4))
		// A quiet room: heartbeats only, for longer than the liveness.
		for range 8 {
			time.Sleep(100 * time.Millisecond)
			c.send(`{"type":"hb"}`)
		}
		c.batch(room, gift("g5", 5))
		c.waitClosed()
	})
	d := newFakeDispatch(t, func(call int) []Gateway {
		if call == 0 {
			return []Gateway{{ID: "hung", URL: hung.URL()}}
		}
		return []Gateway{{ID: "alive", URL: alive.URL()}}
	})
	c, err := Connect(testCtx(t), Config{BaseURL: d.srv.URL, Room: room, Token: "t"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var got []string
	t0 := time.Now()
	var left time.Duration
	for len(got) < 6 {
		ev := nextEvent(t, c)
		if ev.Kind == EventReconnecting && left == 0 {
			left = time.Since(t0)
			if !errors.Is(ev.Err, ErrSilent) {
				t.Errorf("reconnecting because %v, want ErrSilent", ev.Err)
			}
		}
		got = append(got, describe(ev))
	}
	want := "welcome seq=2,msg gift g3#3,reconnecting,reconnected seq=4,msg gift g4#4,msg gift g5#5"
	if s := strings.Join(got, ","); s != want {
		t.Fatalf("events %s\nwant %s", s, want)
	}
	// 1.75 × 100 ms of silence, give or take the scheduler.
	if left < 100*time.Millisecond || left > 2*time.Second {
		t.Errorf("left the silent gateway after %v, want about 175 ms", left)
	}
}

// TestSilentGatewayIsTriedLast: dispatch may still list a hung gateway
// first (its beats have not gone missing yet); the client that left it for
// its silence tries the others before it.
func TestSilentGatewayIsTriedLast(t *testing.T) {
	const room = "quiet"
	hung := newFakeGateway(t, "hung", func(n int, q url.Values, c *serverConn) {
		c.send(protocol.Welcome{Type: protocol.FrameWelcome, Room: room, Seq: 2, Gateway: "hung", HeartbeatMS: 100})
		c.batch(room, gift("g3", 3))
		time.Sleep(2 * time.Second) // hangs with the socket open
	})
	alive := newFakeGateway(t, "alive", func(n int, q url.Values, c *serverConn) {
		c.send(protocol.Welcome{Type: protocol.FrameWelcome, Room: room, Seq: 4, Gateway: "alive", Replayed: 1})
		c.batch(room, gift("g4", 4))
		c.waitClosed()
	})
	d := newFakeDispatch(t, func(call int) []Gateway {
		return []Gateway{{ID: "hung", URL: hung.URL()}, {ID: "alive", URL: alive.URL()}}
	})
	c, err := Connect(testCtx(t), Config{BaseURL: d.srv.URL, Room: room, Token: "t"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var got []string
	for len(got) < 5 {
		got = append(got, describe(nextEvent(t, c)))
	}
	want := "welcome seq=2,msg gift g3#3,reconnecting,reconnected seq=4,msg gift g4#4"
	if s := strings.Join(got, ","); s != want {
		t.Fatalf("events %s\nwant %s", s, want)
	}
	if g := c.Gateway(); g != "alive" {
		t.Fatalf("on %q, want alive", g)
	}
}

// TestHungHandshakeIsHedged: the first candidate is a gateway that hangs (its
// kernel accepts the TCP connection, nobody answers the upgrade); after the
// hedge delay the next candidate is dialed too and wins, long before the
// dial timeout. One at a time (HedgeDelay < 0), the same Connect would wait
// for the dial timeout.
func TestHungHandshakeIsHedged(t *testing.T) {
	const room = "hedge"
	hung, err := net.Listen("tcp", "127.0.0.1:0") // never accepts
	if err != nil {
		t.Fatal(err)
	}
	defer hung.Close()
	alive := newFakeGateway(t, "alive", func(n int, q url.Values, c *serverConn) {
		c.send(protocol.Welcome{Type: protocol.FrameWelcome, Room: room, Seq: 1, Gateway: "alive"})
		c.waitClosed()
	})
	d := newFakeDispatch(t, func(call int) []Gateway {
		return []Gateway{{ID: "hung", URL: "ws://" + hung.Addr().String() + "/v1/ws"}, {ID: "alive", URL: alive.URL()}}
	})
	slow := Dialer{}
	slow.WS.Timeout = time.Minute
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Connect(ctx, Config{BaseURL: d.srv.URL, Room: room, Token: "t", Dialer: slow, HedgeDelay: 200 * time.Millisecond})
	if err != nil {
		t.Fatalf("hedged connect: %v", err)
	}
	if g := c.Gateway(); g != "alive" {
		t.Errorf("connected to %q, want alive", g)
	}
	c.Close()

	// Without hedging the hung gateway holds the join until ctx ends.
	ctx2, cancel2 := context.WithTimeout(context.Background(), time.Second)
	defer cancel2()
	if c, err := Connect(ctx2, Config{BaseURL: d.srv.URL, Room: room, Token: "t", Dialer: slow, HedgeDelay: -1}); err == nil {
		c.Close()
		t.Fatal("one at a time, a hung first candidate did not hold the join")
	}
}

// TestConnHistoryIsContextNotDelivery: the history after a first welcome
// arrives as one EventHistory; its gifts neither move LastSeq nor enter the
// dedupe, so a reconnect asks for since= the welcome's sequence, and a gift
// of the history that a replay carries again is dropped by its sequence
// while a newer one is delivered. A reconnect sends since= and gets no
// history.
func TestConnHistoryIsContextNotDelivery(t *testing.T) {
	const room = "r1"
	var ql queryLog
	hist := []Message{danmaku("d1"), gift("g8", 8), danmaku("d2"), gift("g9", 9)}
	gw := newFakeGateway(t, "gw-a", func(n int, q url.Values, c *serverConn) {
		switch n {
		case 0:
			ql.expect(n, q, "since", "")
			c.send(protocol.Welcome{Type: protocol.FrameWelcome, Room: room, Seq: 10, Gateway: "gw-a", User: "alice", History: len(hist)})
			c.send(protocol.History{Type: protocol.FrameHistory, Room: room, Msgs: hist})
			c.batch(room, danmaku("d3"))
			// Dropped: the client leaves and resumes.
		default:
			ql.expect(n, q, "since", "10")
			c.welcome(room, 11, 2)
			c.batch(room, gift("g9", 9), gift("g11", 11))
			c.waitClosed()
		}
	})
	disp := newFakeDispatch(t, func(int) []Gateway { return []Gateway{{ID: "gw-a", URL: gw.URL(), Load: 0.1}} })
	c, err := Connect(testCtx(t), Config{BaseURL: disp.srv.URL, Room: room, Token: "tok"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	want := []string{
		"welcome seq=10",
		"history d1 g8 d2 g9",
		"msg danmaku d3",
		"reconnecting", "reconnected seq=11",
		"msg gift g11#11",
	}
	expectEvents(t, c, want)
	ql.check(t)
	// The position moves just after the event is handed over.
	for deadline := time.Now().Add(5 * time.Second); c.LastSeq() != 11; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("LastSeq %d, want 11", c.LastSeq())
		}
	}
}
