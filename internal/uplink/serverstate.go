package uplink

import (
	"cmp"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/liveroom/liveroom/internal/bus"
	"github.com/liveroom/liveroom/internal/presence"
	"github.com/liveroom/liveroom/internal/protocol"
	"github.com/liveroom/liveroom/internal/session"
)

// RoomState is the body of GET /v1/server/rooms/{room}.
type RoomState struct {
	Room string `json:"room"`
	// Online is the room's viewers across every gateway (presence reports
	// of the last 15 s).
	Online int64 `json:"online"`
	// Likes is the room's like total.
	Likes int64 `json:"likes"`
	// Live is true while the room has a live session, described by Session.
	Live    bool             `json:"live"`
	Session *session.Session `json:"session,omitempty"`
}

// LiveRoom and LiveRooms are the body of GET /v1/server/rooms and GET
// /v1/rooms (the wire types, shared with the Go client).
type (
	LiveRoom  = protocol.LiveRoom
	LiveRooms = protocol.LiveRooms
)

func (a *serverAPI) serveRoom(w http.ResponseWriter, r *http.Request) {
	room, err := protocol.ParseRoom(r.PathValue("room"))
	if err != nil {
		a.s.fail(w, r, badRequest(protocol.CodeInvalidRoom, "room", err.Error()))
		return
	}
	st := RoomState{Room: string(room), Online: a.cfg.Presence.Online(room)}
	if cur, ok := a.s.sessions.Current(room); ok {
		st.Live, st.Session = true, &cur
	}
	kv, err := a.bucket(r.Context(), bus.RoomStateKV, &a.kv)
	if err == nil {
		var e jetstream.KeyValueEntry
		e, err = kv.Get(r.Context(), bus.LikesKey(room))
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
			err = nil
		case err == nil:
			st.Likes, _ = strconv.ParseInt(string(e.Value()), 10, 64)
		}
	}
	if err != nil {
		a.s.log.Warn("cannot read a room's like total", "room", room, "err", err)
		a.s.fail(w, r, unavailable())
		return
	}
	protocol.WriteJSON(w, http.StatusOK, st)
}

func (a *serverAPI) serveRooms(w http.ResponseWriter, r *http.Request) {
	limit := 100
	if q := r.URL.Query().Get("limit"); q != "" {
		n, err := strconv.Atoi(q)
		if err != nil || n < 1 || n > MaxLiveRooms {
			a.s.fail(w, r, badRequest(protocol.CodeInvalidField, "limit", "limit must be an integer 1-"+strconv.Itoa(MaxLiveRooms)))
			return
		}
		limit = n
	}
	protocol.WriteJSON(w, http.StatusOK, liveRooms(a.cfg.Presence, a.s.sessions, limit))
}

// liveRooms merges the rooms with viewers and the rooms with a live session.
func liveRooms(p *presence.Tracker, sessions *session.Cache, limit int) LiveRooms {
	counts, _ := p.Rooms(0)
	byRoom := make(map[string]int, len(counts))
	out := make([]LiveRoom, 0, len(counts))
	for _, c := range counts {
		byRoom[c.Room] = len(out)
		out = append(out, LiveRoom{Room: c.Room, Online: c.Online})
	}
	for _, s := range sessions.Live() {
		i, ok := byRoom[s.Room]
		if !ok {
			i = len(out)
			out = append(out, LiveRoom{Room: s.Room})
		}
		out[i].Live, out[i].Session, out[i].StartedMS = true, s.ID, s.StartedMS
	}
	slices.SortFunc(out, func(a, b LiveRoom) int {
		if c := cmp.Compare(b.Online, a.Online); c != 0 {
			return c
		}
		if c := cmp.Compare(b.StartedMS, a.StartedMS); c != 0 {
			return c
		}
		return cmp.Compare(a.Room, b.Room)
	})
	total := len(out)
	if len(out) > limit {
		out = out[:limit]
	}
	return LiveRooms{Rooms: out, Total: total}
}

// publicRooms caches the public live-room list: it is served to anyone, so
// building it (a pass over every room with viewers, and a sort) happens at
// most once per publicRoomsTTL, whatever the request rate.
type publicRooms struct {
	p   *presence.Tracker
	s   *Server
	mu  sync.Mutex
	at  time.Time
	val LiveRooms
}

// publicRoomsTTL is how stale the public list may be.
const publicRoomsTTL = time.Second

func (c *publicRooms) get() LiveRooms {
	c.mu.Lock()
	defer c.mu.Unlock()
	if now := time.Now(); now.Sub(c.at) >= publicRoomsTTL {
		c.val, c.at = liveRooms(c.p, c.s.sessions, publicLiveRooms), now
	}
	return c.val
}

// PublicRooms serves GET /v1/rooms and feeds the index page: the live rooms
// (at most 50) with their online counts, for anyone, without a token. It
// says what every viewer of those rooms already sees (the room's online
// count) and which rooms have viewers; a platform that wants even that
// private blocks the path at its proxy (docs/SECURITY.md). The list is
// rebuilt at most once a second.
type PublicRooms struct{ c *publicRooms }

// NewPublicRooms returns the public live-room list of s's rooms, counted by p.
func (s *Server) NewPublicRooms(p *presence.Tracker) *PublicRooms {
	return &PublicRooms{c: &publicRooms{p: p, s: s}}
}

// List returns at most limit rooms of the list (limit <= 50).
func (pr *PublicRooms) List(limit int) LiveRooms {
	l := pr.c.get()
	if len(l.Rooms) > limit {
		l.Rooms = l.Rooms[:limit]
	}
	return l
}

// ServeHTTP serves GET /v1/rooms.
func (pr *PublicRooms) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Cache-Control", "public, max-age=2")
	protocol.WriteJSON(w, http.StatusOK, pr.c.get())
}
