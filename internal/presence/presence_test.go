package presence

import (
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/liveroom/liveroom/internal/bus"
	"github.com/liveroom/liveroom/internal/protocol"
	"github.com/liveroom/liveroom/internal/testutil"
)

// TestTrackerSumsGatewaysOverNATS: reports from two gateways on the real
// presence subjects add up per room; a zero removes a gateway; a silent
// gateway's count expires after TTL; malformed reports are ignored.
func TestTrackerSumsGatewaysOverNATS(t *testing.T) {
	e, nc, _ := testutil.StartBackbone(t)
	// The tracker runs in the uplink: its credential may subscribe.
	unc, err := nats.Connect(testutil.NATSURL(t, e, bus.RoleUplink, ""))
	if err != nil {
		t.Fatal(err)
	}
	defer unc.Close()
	tr := New(unc)
	now := time.Now()
	tr.now = func() time.Time { return now }
	if err := tr.Start(); err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	pub := func(subj, body string) {
		if err := nc.Publish(subj, []byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	pub(bus.PresenceSubject("a"), `{"gw":"g1","n":3}`)
	pub(bus.PresenceSubject("a"), `{"gw":"g2","n":4}`)
	pub(bus.PresenceSubject("b"), `{"gw":"g1","n":9}`)
	pub(bus.PresenceSubject("c"), `{"gw":"bad gw","n":5}`)
	pub(bus.PresenceSubject("c"), `not json`)
	pub(bus.PresenceSubject("c"), `{"gw":"g1","n":-2}`)
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, "counts", func() bool { return tr.Online("a") == 7 && tr.Online("b") == 9 })
	rooms, total := tr.Rooms(0)
	if total != 2 || len(rooms) != 2 || rooms[0].Room != "b" || rooms[1] != (Count{Room: "a", Online: 7}) {
		t.Fatalf("rooms %+v total %d", rooms, total)
	}
	if top, total := tr.Rooms(1); len(top) != 1 || total != 2 {
		t.Fatalf("limit 1: %+v %d", top, total)
	}
	pub(bus.PresenceSubject("a"), `{"gw":"g2","n":0}`)
	_ = nc.Flush()
	testutil.Eventually(t, 5*time.Second, "g2 left a", func() bool { return tr.Online("a") == 3 })
	now = now.Add(TTL + time.Second)
	if tr.Online("a") != 0 || tr.Online("b") != 0 {
		t.Fatal("stale counts survived the TTL")
	}
	if rooms, total := tr.Rooms(0); total != 0 || len(rooms) != 0 || tr.entries != 0 {
		t.Fatalf("after expiry: %+v, %d entries", rooms, tr.entries)
	}
}

// BenchmarkReport is the cost of one presence report to a Tracker (decode
// and record), which every uplink pays for each report any gateway sends:
// one per hosted (room, gateway) pair every 5 s, and per count change.
func BenchmarkReport(b *testing.B) {
	tr := New(nil)
	msgs := make([]*nats.Msg, 10000)
	for i := range msgs {
		msgs[i] = &nats.Msg{Subject: bus.PresenceSubject(protocol.Room("room-" + strconv.Itoa(i))), Data: []byte(`{"gw":"gw-1a2b3c4d","n":` + strconv.Itoa(i%500+1) + `}`)}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		tr.onMsg(msgs[i%len(msgs)])
	}
}
