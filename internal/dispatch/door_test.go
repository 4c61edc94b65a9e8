package dispatch

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/liveroom/liveroom/internal/bus"
	"github.com/liveroom/liveroom/internal/protocol"
	"github.com/liveroom/liveroom/internal/testutil"
)

// ask sends GET /v1/dispatch?query to s and returns the status and answer.
func ask(t *testing.T, s *Server, query string) (int, Answer, protocol.ErrorBody) {
	t.Helper()
	w := httptest.NewRecorder()
	s.Handler().ServeHTTP(w, httptest.NewRequest("GET", "/v1/dispatch?"+query, nil))
	var a Answer
	var e struct {
		Error protocol.ErrorBody `json:"error"`
	}
	if w.Code == 200 {
		if err := json.Unmarshal(w.Body.Bytes(), &a); err != nil {
			t.Fatalf("%s: %v: %s", query, err, w.Body)
		}
	} else {
		_ = json.Unmarshal(w.Body.Bytes(), &e)
	}
	return w.Code, a, e.Error
}

// TestWaitWhenFull: with gateways beating but none below the ceiling,
// dispatch tells the client to wait (200, no gateways, a jittered
// retry_after_ms), not 503; with no gateway at all it is still a 503.
func TestWaitWhenFull(t *testing.T) {
	c := newClock()
	s := newTestServer(t, Config{}, c, 7)
	if code, _, e := ask(t, s, "room=r"); code != 503 || e.Code != protocol.CodeUnavailable || e.RetryAfterMS != 1000 {
		t.Fatalf("no gateway: %d %+v, want 503 unavailable", code, e)
	}
	for name, beats := range map[string][]bus.Beat{
		"at the ceiling": {active("full", 90, 100)},
		"draining only":  {{ID: "d", URL: "ws://d/v1/ws", State: bus.StateDraining, IntervalMS: 1000}},
	} {
		t.Run(name, func(t *testing.T) {
			s := newTestServer(t, Config{}, c, 7)
			for _, b := range beats {
				s.Observe(b)
			}
			seen := map[int64]bool{}
			for range 50 {
				code, a, _ := ask(t, s, "room=r")
				if code != 200 || len(a.Gateways) != 0 || a.Gateways == nil || a.Reconnect.BaseMS != 500 {
					t.Fatalf("answer %d %+v, want a wait", code, a)
				}
				if a.RetryAfterMS < 500 || a.RetryAfterMS > 1000 {
					t.Fatalf("retry_after_ms %d outside [500, 1000]", a.RetryAfterMS)
				}
				seen[a.RetryAfterMS] = true
			}
			if len(seen) < 10 {
				t.Errorf("50 waits drew only %d distinct delays: no jitter", len(seen))
			}
		})
	}
	// Filling up between beats: the first gateway takes clients up to the
	// ceiling by its assignments, then dispatch says wait.
	s = newTestServer(t, Config{}, c, 7)
	s.Observe(active("g", 85, 100))
	admitted, waits := 0, 0
	for range 10 {
		code, a, _ := ask(t, s, "room=r")
		switch {
		case code == 200 && len(a.Gateways) > 0:
			admitted++
		case code == 200 && a.RetryAfterMS > 0:
			waits++
		default:
			t.Fatalf("answer %d %+v", code, a)
		}
	}
	if admitted != 5 || waits != 5 {
		t.Errorf("admitted %d, waited %d: want 5 each (85 %% + 5 clients reach the 90 %% ceiling)", admitted, waits)
	}
	if r := s.door.take(); r.Joins != 10 || r.Admitted != 5 || r.Waited != 5 || r.WaitAnswers != 5 {
		t.Errorf("door %+v", r)
	}
}

// TestDoorCountsByKind: new viewers are joins; clients asking again
// (attempt ≥ 1) and viewers moving between gateways (since=) are not.
func TestDoorCountsByKind(t *testing.T) {
	c := newClock()
	s := newTestServer(t, Config{}, c, 3)
	s.Observe(active("g", 0, 1000))
	for _, tc := range []struct {
		query  string
		status int
		field  string
	}{
		{"room=r", 200, ""},
		{"room=r&attempt=0", 200, ""},
		{"room=r&attempt=1", 200, ""},
		{"room=r&attempt=3", 200, ""},
		{"room=r&since=0", 200, ""},
		{"room=r&since=41&attempt=2", 200, ""},
		{"room=r&since=-1", 400, "since"},
		{"room=r&since=x", 400, "since"},
		{"room=r&since=1&since=2", 400, "since"},
		{"room=r&attempt=-1", 400, "attempt"},
		{"room=r&attempt=1e3", 400, "attempt"},
		{"room=r&attempt=1000001", 400, "attempt"},
	} {
		code, _, e := ask(t, s, tc.query)
		if code != tc.status || (tc.field != "" && (e.Field != tc.field || e.Code != protocol.CodeInvalidField)) {
			t.Errorf("%s: %d %+v, want %d on %q", tc.query, code, e, tc.status, tc.field)
		}
	}
	r := s.door.take()
	if r.Joins != 2 || r.Admitted != 2 || r.Retries != 2 || r.Moves != 2 || r.Waited != 0 || r.Refused != 0 {
		t.Errorf("door %+v, want 2 joins, 2 retries, 2 moves (bad requests not counted)", r)
	}
	if r2 := s.door.take(); !emptyReport(r2) {
		t.Errorf("take did not reset: %+v", r2)
	}
	if got := [3]int64{s.requests[kindJoin].Load(), s.requests[kindRetry].Load(), s.requests[kindMove].Load()}; got != [3]int64{2, 2, 2} {
		t.Errorf("request metrics %v", got)
	}
}

// TestDoorTakeConcurrent: counts taken while answers are counted are never
// lost nor counted twice, and every report adds up.
func TestDoorTakeConcurrent(t *testing.T) {
	var d doorCounts
	const workers, each = 4, 5000
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				d.count(kindJoin, outcome((i+w)%3))
			}
		})
	}
	var total bus.DoorReport
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	add := func(r bus.DoorReport) {
		if r.Admitted+r.Waited+r.Refused != r.Joins {
			t.Errorf("report does not add up: %+v", r)
		}
		total.Joins += r.Joins
		total.Admitted += r.Admitted
	}
	for running := true; running; {
		select {
		case <-done:
			running = false
		default:
		}
		add(d.take())
	}
	add(d.take())
	if total.Joins != workers*each {
		t.Errorf("joins %d, want %d", total.Joins, workers*each)
	}
}

// TestDoorPublishes runs dispatch on a real NATS server: a burst of joins
// is published within one door interval, followed by one empty report, and
// nothing while no client asks.
func TestDoorPublishes(t *testing.T) {
	e := testutil.StartNATS(t)
	// Dispatch publishes with its own credential; the autoscaler reads
	// with its own: the permission table must let both through.
	nc, err := nats.Connect(testutil.NATSURL(t, e, bus.RoleDispatch, ""))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	anc, err := nats.Connect(testutil.NATSURL(t, e, bus.RoleAutoscale, ""))
	if err != nil {
		t.Fatal(err)
	}
	defer anc.Close()
	reports := make(chan bus.DoorReport, 100)
	sub, err := anc.Subscribe(bus.DoorSubject, func(m *nats.Msg) {
		var r bus.DoorReport
		if json.Unmarshal(m.Data, &r) == nil {
			reports <- r
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := anc.Flush(); err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{NC: nc, Logger: testutil.Logger(), DoorInterval: 50 * time.Millisecond, ID: "d-test"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.Observe(active("g", 0, 1000))
	for range 7 {
		if code, _, _ := ask(t, s, "room=r"); code != 200 {
			t.Fatal(code)
		}
	}
	if code, _, _ := ask(t, s, "room=r&since=3"); code != 200 {
		t.Fatal(code)
	}
	var got bus.DoorReport
	deadline := time.After(5 * time.Second)
	for got.Joins < 7 {
		select {
		case r := <-reports:
			if !r.Valid() || r.ID != "d-test" {
				t.Fatalf("report %+v not valid", r)
			}
			got.Joins += r.Joins
			got.Moves += r.Moves
		case <-deadline:
			t.Fatalf("joins reported %d, want 7", got.Joins)
		}
	}
	// Then one empty report, then silence.
	testutil.Eventually(t, 5*time.Second, "an empty report after the burst", func() bool {
		select {
		case r := <-reports:
			got.Moves += r.Moves
			return emptyReport(r)
		default:
			return false
		}
	})
	if got.Moves != 1 {
		t.Errorf("moves %d, want 1", got.Moves)
	}
	select {
	case r := <-reports:
		t.Errorf("report %+v while no client asked", r)
	case <-time.After(300 * time.Millisecond):
	}
}
