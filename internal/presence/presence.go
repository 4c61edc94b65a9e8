// Package presence knows the fleet-wide online count of every room that has
// viewers, for the server API and the index page, without asking anyone.
//
// Where the counts come from: every gateway already publishes, on
// lr.room.<room>.presence, its own viewer count of each room it hosts, when
// it changes (at most once a second) and every 5 s (the gateways of a shared
// room sum each other's). A Tracker subscribes once to lr.room.*.presence
// and keeps the last count of each (room, gateway) pair it heard within TTL.
// Nothing is published for it and nothing is created per room: one core
// subscription per process, and an entry per (room, gateway) pair that
// actually has viewers, which grows with viewers, never with rooms × gateways.
// The alternatives were worse: dispatch's beats carry only a gateway's top
// rooms, and a key-value bucket would turn every count change into a
// replicated write. A fresh Tracker knows every room within one refresh
// (5 s).
package presence

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/liveroom/liveroom/internal/bus"
	"github.com/liveroom/liveroom/internal/protocol"
)

// TTL is how long a gateway's count is trusted without news: three of the
// gateways' 5 s refreshes, as the gateways themselves use.
const TTL = 15 * time.Second

// maxEntries bounds the memory of a Tracker fed by a misbehaving publisher.
const maxEntries = 1 << 20

// Count is a room's fleet-wide online count.
type Count struct {
	Room   string `json:"room"`
	Online int64  `json:"online"`
}

// Tracker sums the gateways' presence reports. Create it with New, Start it,
// Close it. All methods are safe for concurrent use.
type Tracker struct {
	nc  *nats.Conn
	now func() time.Time

	mu      sync.Mutex
	sub     *nats.Subscription
	rooms   map[protocol.Room]map[string]entry
	entries int
}

type entry struct {
	n  int64
	at time.Time
}

// msg is a gateway's report (internal/gateway publishPresence).
type msg struct {
	GW string `json:"gw"`
	N  int64  `json:"n"`
}

// New returns a Tracker reading nc. It does no I/O.
func New(nc *nats.Conn) *Tracker {
	return &Tracker{nc: nc, now: time.Now, rooms: map[protocol.Room]map[string]entry{}}
}

// Start subscribes to every room's presence subject.
func (t *Tracker) Start() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.sub != nil {
		return errors.New("cannot start presence tracker: already started")
	}
	sub, err := t.nc.Subscribe(bus.PresenceWildcard, t.onMsg)
	if err != nil {
		return fmt.Errorf("cannot subscribe to presence: %w", err)
	}
	t.sub = sub
	// Round trip: the subscription is in place when Start returns.
	if err := t.nc.Flush(); err != nil {
		return fmt.Errorf("cannot subscribe to presence: %w", err)
	}
	return nil
}

// Close unsubscribes. Idempotent.
func (t *Tracker) Close() error {
	t.mu.Lock()
	sub := t.sub
	t.sub = nil
	t.mu.Unlock()
	if sub != nil {
		return sub.Unsubscribe()
	}
	return nil
}

func (t *Tracker) onMsg(m *nats.Msg) {
	room, kind, ok := bus.RoomFromSubject(m.Subject)
	var p msg
	if !ok || kind != "presence" || json.Unmarshal(m.Data, &p) != nil || !bus.ValidGatewayID(p.GW) || p.N < 0 {
		return
	}
	t.observe(room, p.GW, p.N)
}

func (t *Tracker) observe(room protocol.Room, gw string, n int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	gws := t.rooms[room]
	_, known := gws[gw]
	if n == 0 {
		if known {
			delete(gws, gw)
			t.entries--
			if len(gws) == 0 {
				delete(t.rooms, room)
			}
		}
		return
	}
	if !known {
		if t.entries >= maxEntries {
			return
		}
		if gws == nil {
			gws = map[string]entry{}
			t.rooms[room] = gws
		}
		t.entries++
	}
	gws[gw] = entry{n: n, at: t.now()}
}

// sumLocked adds room's fresh counts and forgets stale ones; t.mu held.
func (t *Tracker) sumLocked(room protocol.Room, now time.Time) int64 {
	var n int64
	gws := t.rooms[room]
	for gw, e := range gws {
		if now.Sub(e.at) > TTL {
			delete(gws, gw)
			t.entries--
			continue
		}
		n += e.n
	}
	if gws != nil && len(gws) == 0 {
		delete(t.rooms, room)
	}
	return n
}

// Online is room's viewers across every gateway.
func (t *Tracker) Online(room protocol.Room) int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.sumLocked(room, t.now())
}

// Rooms returns the rooms with viewers, most viewers first (then by id),
// at most limit of them (limit <= 0: all), and how many rooms have viewers.
func (t *Tracker) Rooms(limit int) ([]Count, int) {
	now := t.now()
	t.mu.Lock()
	out := make([]Count, 0, len(t.rooms))
	for room := range t.rooms {
		if n := t.sumLocked(room, now); n > 0 {
			out = append(out, Count{Room: string(room), Online: n})
		}
	}
	t.mu.Unlock()
	slices.SortFunc(out, func(a, b Count) int {
		if c := cmp.Compare(b.Online, a.Online); c != 0 {
			return c
		}
		return cmp.Compare(a.Room, b.Room)
	})
	total := len(out)
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, total
}
