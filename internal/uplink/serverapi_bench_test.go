package uplink

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

// BenchmarkServerGift is one paid gift through the server API (order
// record, store, order mark: three JetStream round trips) next to a user's
// gift (one), over loopback HTTP and an embedded NATS.
func BenchmarkServerGift(b *testing.B) {
	se := newServerEnv(b, time.Minute)
	b.Run("paid", func(b *testing.B) {
		b.ReportAllocs()
		for i := range b.N {
			st, _, raw := se.call("POST", "/v1/server/rooms/r1/gifts", `{"user":"u1","gift":"rose","order_id":"bench-`+strconv.Itoa(i)+`-`+strconv.FormatInt(time.Now().UnixNano(), 36)+`"}`)
			if st != 202 {
				b.Fatalf("%d %s", st, raw)
			}
		}
	})
	up := se.env.start(func(c *Config) { c.ClientGifts = true; c.GiftRate, c.GiftBurst = 1e9, 1e9 })
	b.Run("user", func(b *testing.B) {
		b.ReportAllocs()
		for i := range b.N {
			if a := up.post("r1", "u1", "viewer", gift("rose", 1), key("k"+strconv.Itoa(i)+strconv.FormatInt(time.Now().UnixNano(), 36))); a.status != 202 {
				b.Fatalf("%d %s", a.status, a.raw)
			}
		}
	})
}

// BenchmarkAnnounce100Rooms is one announcement to 100 rooms: the stores
// are in flight together.
func BenchmarkAnnounce100Rooms(b *testing.B) {
	se := newServerEnv(b, time.Minute)
	rooms := make([]string, 100)
	for i := range rooms {
		rooms[i] = `"room-` + strconv.Itoa(i) + `"`
	}
	body := `{"rooms":[` + strings.Join(rooms, ",") + `],"text":"the show starts soon"}`
	b.ReportAllocs()
	for range b.N {
		if st, _, raw := se.call("POST", "/v1/server/announcements", body); st != 200 {
			b.Fatalf("%d %s", st, raw)
		}
	}
}
