package uplink

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/liveroom/liveroom/internal/bus"
	"github.com/liveroom/liveroom/internal/protocol"
	"github.com/liveroom/liveroom/internal/testutil"
)

// benchServer is a Server on a real embedded NATS whose limits never
// refuse the benchmarks' senders. Run is running when run is true.
func benchServer(b *testing.B, run bool) *Server {
	emb, _, _ := testutil.StartBackbone(b)
	nc, err := nats.Connect(testutil.NATSURL(b, emb, bus.RoleUplink, ""))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		b.Fatal(err)
	}
	s, err := New(Config{NC: nc, JS: js, Verifier: testutil.Verifier(b), Logger: testutil.Logger(),
		UserRate: 1e6, UserBurst: 1e6, RoomRate: 1e9})
	if err != nil {
		b.Fatal(err)
	}
	if run {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- s.Run(ctx) }()
		b.Cleanup(func() { cancel(); <-done })
	}
	return s
}

// BenchmarkSendDanmaku measures the uplink's CPU per accepted danmaku: the
// whole handler (token, decode, rate limits, publish to a real embedded NATS)
// without the HTTP transport, whose cost does not depend on the uplink.
// Senders are spread over 10,000 users so that no limit refuses them.
func BenchmarkSendDanmaku(b *testing.B) {
	s := benchServer(b, true)
	const users = 10000
	tokens := make([]string, users)
	for i := range tokens {
		tokens[i] = "Bearer " + testutil.Token(b, "bu"+strconv.Itoa(i), "viewer")
	}
	h := s.Handler()
	body := danmaku("benchmark comment")
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			i++
			r := httptest.NewRequest(http.MethodPost, "/v1/rooms/bench"+strconv.Itoa(i%100)+"/messages", strings.NewReader(body))
			r.Header.Set("Authorization", tokens[i%users])
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != http.StatusAccepted {
				b.Errorf("status %d: %s", w.Code, w.Body)
				return
			}
		}
	})
	b.StopTimer()
	if err := s.cfg.NC.Flush(); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkAdmitDanmaku measures the rate limiters alone: one user bucket and
// one room bucket charged per send, 10,000 users over 100 rooms.
func BenchmarkAdmitDanmaku(b *testing.B) { benchAdmit(b, benchServer(b, false)) }

// BenchmarkAdmitDanmakuFleet is BenchmarkAdmitDanmaku on an uplink that
// counts three live uplinks: every charge also counts the key's demand.
func BenchmarkAdmitDanmakuFleet(b *testing.B) {
	s := benchServer(b, false)
	now := time.Now()
	for _, id := range []string{"peer-1", "peer-2"} {
		s.fleet.peers[id] = peerState{seen: now, interval: time.Hour}
	}
	s.fleet.rebuild(now)
	if n := s.Fleet().Uplinks; n != 3 {
		b.Fatalf("uplinks %d", n)
	}
	benchAdmit(b, s)
}

func benchAdmit(b *testing.B, s *Server) {
	users := make([]protocol.User, 10000)
	for i := range users {
		users[i] = protocol.User("bu" + strconv.Itoa(i))
	}
	rooms := make([]protocol.Room, 100)
	for i := range rooms {
		rooms[i] = protocol.Room("bench" + strconv.Itoa(i))
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			i++
			if perr := s.admitDanmaku(time.Now(), users[i%len(users)], rooms[i%len(rooms)]); perr != nil {
				b.Errorf("refused: %v", perr)
				return
			}
		}
	})
}
