package dispatch

import (
	"sort"
	"strings"
	"time"

	"github.com/liveroom/liveroom/internal/protocol"
)

// Weight is one gateway's standing in the draw for a room, as Weights
// reports it. Only gateways that are fresh, active and below the ceiling by
// their beat are listed.
type Weight struct {
	ID  string `json:"id"`
	URL string `json:"url"`
	// BeatLoad is the load of the gateway's last beat, clamped to [0,1].
	BeatLoad float64 `json:"beat_load"`
	// Assigned counts the answers this process gave with this gateway first
	// since that beat; Carried those given before it that the beat's
	// connections do not show yet.
	Assigned int64 `json:"assigned"`
	Carried  int64 `json:"carried,omitempty"`
	// Load is the effective load: BeatLoad + Replicas × (Assigned +
	// Carried) / max_conns.
	Load float64 `json:"load"`
	// Weight is the gateway's weight in the random draw; 0 once its
	// effective load reached the ceiling, which keeps it out of answers
	// until its next beat.
	Weight float64 `json:"weight"`
	// Affinity marks the gateway listed first for this room.
	Affinity bool `json:"affinity,omitempty"`
}

// ranked is a gateway's standing while one answer is made.
type ranked struct {
	g   *gateway
	eff float64
	w   float64
}

// rank appends to buf the fresh, eligible gateways in id order with their
// effective loads and weights, and returns the index of the gateway room
// affinity puts first, or -1. The caller holds s.mu for reading.
func (s *Server) rank(now time.Time, room protocol.Room, buf []ranked) ([]ranked, int) {
	ceiling := s.cfg.LoadCeiling
	hi, sum, open := 0.0, 0.0, 0
	for _, g := range s.order {
		if !g.eligible || !g.Fresh(now) {
			continue
		}
		r := ranked{g: g, eff: g.load + float64(g.assigned.Load()+g.carried)*g.perConn}
		if r.eff < ceiling {
			hi = max(hi, r.eff)
			sum += r.eff
			open++
		}
		buf = append(buf, r)
	}
	// Affinity yields to balance: a gateway loaded above the fleet's mean
	// gets no affinity, so that a gateway that just joined fills up even
	// when every room already has a home (with any margin, a burst of
	// small rooms returns to their old homes before the new gateway has
	// caught up). In a balanced fleet loads hover around the mean and
	// rooms keep gathering.
	affCap := s.cfg.AffinityMaxLoad
	if open > 0 {
		affCap = min(affCap, sum/float64(open)+minFillMargin)
	}
	fill := min(ceiling, (1+s.cfg.FillMargin)*hi+minFillMargin)
	for i := range buf {
		if h := fill - buf[i].eff; buf[i].eff < ceiling {
			buf[i].w = h * h
		}
	}
	if s.cfg.AffinityMaxViewers <= 0 {
		return buf, -1
	}
	aff, affViewers := -1, 0
	for _, rc := range s.rooms[room] {
		id := rc.g.Beat.ID
		i, ok := sort.Find(len(buf), func(i int) int { return strings.Compare(id, buf[i].g.Beat.ID) })
		if !ok || buf[i].g != rc.g || buf[i].w == 0 || buf[i].eff >= affCap {
			continue
		}
		v := rc.n + s.cfg.Replicas*int(rc.assigned.Load())
		if v >= s.cfg.AffinityMaxViewers {
			continue
		}
		// Most viewers of the room first, so that it gathers on one
		// gateway; then the lower load, then the smaller id.
		if aff < 0 || v > affViewers || v == affViewers && (buf[i].eff < buf[aff].eff || buf[i].eff == buf[aff].eff && i < aff) {
			aff, affViewers = i, v
		}
	}
	return buf, aff
}

// Choose answers a client that wants to join room: up to Candidates
// gateways, best first, or none when no gateway may be offered. The first
// one counts as assigned until that gateway's next beat. Safe for concurrent
// use; concurrent calls do not wait for each other.
func (s *Server) Choose(room protocol.Room) []Candidate {
	now := s.viewNow()
	bp, _ := s.scratch.Get().(*[]ranked)
	if bp == nil {
		bp = new([]ranked)
	}
	defer s.scratch.Put(bp)

	s.mu.RLock()
	defer s.mu.RUnlock()
	rs, aff := s.rank(now, room, (*bp)[:0])
	// Keep the grown buffer but not the gateways it points to.
	defer func() { clear(rs); *bp = rs[:0] }()

	n, total := 0, 0.0
	for i := range rs {
		if rs[i].w > 0 {
			n++
			total += rs[i].w
		}
	}
	k := min(n, s.cfg.Candidates)
	if k == 0 {
		return nil
	}
	out := make([]Candidate, 0, k)
	first := -1
	take := func(i int) {
		if first < 0 {
			first = i
		}
		out = append(out, Candidate{ID: rs[i].g.Beat.ID, URL: rs[i].g.Beat.URL, Load: rs[i].eff})
		total -= rs[i].w
		rs[i].w = 0
	}
	if aff >= 0 {
		take(aff)
	}
	for len(out) < k {
		x := s.randFn() * total
		pick := -1
		for i := range rs {
			if rs[i].w <= 0 {
				continue
			}
			// Rounding in total may leave x ≥ 0 past the end: the last
			// positive weight is then the pick.
			pick = i
			if x -= rs[i].w; x < 0 {
				break
			}
		}
		take(pick)
	}
	g := rs[first].g
	g.assigned.Add(1)
	for _, rc := range s.rooms[room] {
		if rc.g == g {
			rc.assigned.Add(1)
			break
		}
	}
	return out
}

// Weights shows how Choose would rank the gateways for room right now:
// every fresh gateway that is active and below the ceiling by its beat, in
// id order, with its effective load and weight. Right after the same beats,
// every dispatch process computes the same weights.
func (s *Server) Weights(room protocol.Room) []Weight {
	now := s.nowFn()
	s.mu.RLock()
	defer s.mu.RUnlock()
	rs, aff := s.rank(now, room, make([]ranked, 0, len(s.order)))
	out := make([]Weight, len(rs))
	for i, r := range rs {
		out[i] = Weight{
			ID: r.g.Beat.ID, URL: r.g.Beat.URL, BeatLoad: r.g.load,
			Assigned: r.g.assigned.Load(), Carried: r.g.carried, Load: r.eff, Weight: r.w, Affinity: i == aff,
		}
	}
	return out
}
