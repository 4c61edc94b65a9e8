package bench

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/liveroom/liveroom/internal/bus"
	"github.com/liveroom/liveroom/internal/testutil"
)

// TestBeatsFromNATS: with --nats-url and --nats-key-file the bench reads the
// beats itself, with the monitor credential: it logs every beat of the
// gateways it follows in TS order (not only the latest), leaves out forged
// ones, older ones and other gateways', and adds nothing once closed.
func TestBeatsFromNATS(t *testing.T) {
	e := testutil.StartNATS(t)
	s := DefaultScenario()
	s.NATSURL, s.NATSKeyFile, s.Gateways = e.ClientURL(), testutil.NATSKeyFile(t), []string{"g1", "g2"}
	l, err := startBeats(context.Background(), &s)
	if err != nil {
		t.Fatal(err)
	}
	defer l.close()
	gnc, err := nats.Connect(testutil.NATSURL(t, e, bus.RoleGateway, ""))
	if err != nil {
		t.Fatal(err)
	}
	defer gnc.Close()
	publish := func(subject string, b bus.Beat) {
		t.Helper()
		data, _ := json.Marshal(b)
		if err := gnc.Publish(subject, data); err != nil {
			t.Fatal(err)
		}
	}
	beat := func(id string, ts int64, conns int) bus.Beat {
		return bus.Beat{ID: id, URL: "ws://127.0.0.1:1/v1/ws", State: bus.StateActive, TS: ts, Conns: conns, IntervalMS: 1000}
	}
	publish(bus.BeatSubject("g1"), beat("g1", 1000, 1))
	publish(bus.BeatSubject("g1"), beat("g1", 2000, 2))
	publish(bus.BeatSubject("g1"), beat("g1", 1500, 9))    // older than the last: left out
	publish(bus.BeatSubject("g2"), beat("other", 2000, 9)) // forged: not the subject's id
	publish(bus.BeatSubject("g3"), beat("g3", 2000, 9))    // not followed
	publish(bus.BeatSubject("g2"), beat("g2", 2000, 5))
	testutil.Eventually(t, 5*time.Second, "the beats of g1 and g2", func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		return len(l.by["g1"]) == 2 && len(l.by["g2"]) == 1
	})
	if at := l.latest(1999); len(at) != 1 || at["g1"].Conns != 1 {
		t.Fatalf("latest at 1999: %+v", at)
	}
	if at := l.latest(2000); len(at) != 2 || at["g1"].Conns != 2 || at["g2"].Conns != 5 {
		t.Fatalf("latest at 2000: %+v", at)
	}
	l.close()
	publish(bus.BeatSubject("g2"), beat("g2", 3000, 6))
	if err := gnc.Flush(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // a beat taken after close would be in by now
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.by["g1"]) != 2 || len(l.by["g2"]) != 1 || len(l.by) != 2 {
		t.Fatalf("log %+v", l.by)
	}
}
