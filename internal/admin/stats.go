package admin

import (
	"cmp"
	"net/http"
	"slices"
	"time"

	"github.com/liveroom/liveroom/internal/announce"
	"github.com/liveroom/liveroom/internal/bus"
	"github.com/liveroom/liveroom/internal/protocol"
)

// StatsPath is the route of GET /v1/admin/stats.
const StatsPath = "/v1/admin/stats"

// topRooms is how many rooms Stats lists.
const topRooms = 20

// Stats is the body of GET /v1/admin/stats: the fleet as the gateways' latest
// beats describe it. Rates are per second over each gateway's last beat
// interval. It is read-only and computed per request from memory.
type Stats struct {
	TS     int64      `json:"ts"` // Unix ms of the answer
	Totals Totals     `json:"totals"`
	Rooms  []RoomStat `json:"rooms"`    // largest first, at most 20
	Fleet  []bus.Beat `json:"gateways"` // by id
	// Announcements are the announced audiences not yet expired, by start
	// (empty when the process keeps none).
	Announcements []announce.Announcement `json:"announcements"`
}

// Totals sums the fleet's beats.
type Totals struct {
	Gateways   int     `json:"gateways"`
	Active     int     `json:"active"`
	Draining   int     `json:"draining"`
	Conns      int     `json:"conns"`
	MsgsOut    float64 `json:"msgs_out"`
	FramesOut  float64 `json:"frames_out"`
	BytesOut   float64 `json:"bytes_out"`
	Dropped    float64 `json:"dropped"`
	ClosedSlow float64 `json:"closed_slow"`
	// DelayP50MS is the gateways' p50 push delays averaged, weighted by
	// the messages each wrote; DelayP99MS is the highest gateway p99 (a
	// fleet-wide percentile cannot be rebuilt from per-gateway ones, and the
	// worst gateway is what an operator acts on).
	DelayP50MS float64 `json:"delay_p50_ms"`
	DelayP99MS float64 `json:"delay_p99_ms"`
	CPU        float64 `json:"cpu"` // cores
	RSS        int64   `json:"rss"` // bytes
}

// RoomStat is one room's viewers summed over the gateways whose beats list
// it. A beat lists a gateway's 16 largest rooms only, so a small room spread
// over busy gateways may be under-counted or missing.
type RoomStat struct {
	Room     string `json:"room"`
	Viewers  int    `json:"viewers"`
	Gateways int    `json:"gateways"`
}

// ComputeStats builds Stats from beats, at now.
func ComputeStats(beats []bus.Beat, now time.Time) Stats {
	st := Stats{TS: now.UnixMilli(), Fleet: slices.Clone(beats), Rooms: []RoomStat{}, Announcements: []announce.Announcement{}}
	if st.Fleet == nil {
		st.Fleet = []bus.Beat{}
	}
	slices.SortFunc(st.Fleet, func(a, b bus.Beat) int { return cmp.Compare(a.ID, b.ID) })
	t := &st.Totals
	rooms := map[string]*RoomStat{}
	var p50w float64
	for _, b := range st.Fleet {
		t.Gateways++
		if b.State == bus.StateDraining {
			t.Draining++
		} else {
			t.Active++
		}
		t.Conns += b.Conns
		t.MsgsOut += b.MsgsOut
		t.FramesOut += b.FramesOut
		t.BytesOut += b.BytesOut
		t.Dropped += b.Dropped
		t.ClosedSlow += b.ClosedSlow
		t.CPU += b.CPU
		t.RSS += b.RSS
		t.DelayP99MS = max(t.DelayP99MS, b.DelayP99MS)
		if b.DelayP50MS > 0 {
			w := max(b.MsgsOut, 1)
			t.DelayP50MS += w * b.DelayP50MS
			p50w += w
		}
		for id, n := range b.RoomConns {
			r := rooms[id]
			if r == nil {
				r = &RoomStat{Room: id}
				rooms[id] = r
			}
			r.Viewers += n
			r.Gateways++
		}
	}
	if p50w > 0 {
		t.DelayP50MS /= p50w
	}
	for _, r := range rooms {
		st.Rooms = append(st.Rooms, *r)
	}
	slices.SortFunc(st.Rooms, func(a, b RoomStat) int {
		return cmp.Or(cmp.Compare(b.Viewers, a.Viewers), cmp.Compare(a.Room, b.Room))
	})
	if len(st.Rooms) > topRooms {
		st.Rooms = st.Rooms[:topRooms]
	}
	return st
}

func (h *handler) stats(w http.ResponseWriter, r *http.Request) {
	if _, ok := h.authorize(w, r, ActStats); !ok {
		return
	}
	if h.cfg.Gateways == nil {
		protocol.WriteError(w, protocol.Errorf(http.StatusNotFound, protocol.CodeNotFound, "", "this process does not read gateway beats; ask the one that serves /v1/dispatch"))
		return
	}
	now := time.Now()
	st := ComputeStats(h.cfg.Gateways(), now)
	if h.cfg.Announcements != nil {
		st.Announcements = h.cfg.Announcements.List(now)
	}
	protocol.WriteJSON(w, http.StatusOK, st)
}
