package bench

import "sort"

// Group is what one process saw of the viewers of one room on one gateway,
// counting only the viewers that stayed connected for the whole measurement
// window ("stayed"): they must have received every gift acknowledged in
// that window exactly once, and the same live frames as each other (the
// gateway writes one shared frame to all its viewers of a room).
type Group struct {
	Gateway string `json:"gateway"`
	Room    string `json:"room"`
	// Stayed counts the viewers connected from before the window opened
	// until the report.
	Stayed int `json:"stayed"`
	// Gifts maps a gift id to how many stayed viewers received it.
	Gifts map[string]int `json:"gifts,omitempty"`
	// Doubled counts deliveries of a gift id to a stayed viewer that had
	// already received it.
	Doubled int64 `json:"doubled"`
	// LiveMax is the most in-window live messages one stayed viewer got,
	// LiveSum what they got together.
	LiveMax int64 `json:"live_max"`
	LiveSum int64 `json:"live_sum"`
}

// addGift counts n more stayed viewers that received gift id.
func (g *Group) addGift(id string, n int) {
	if g.Gifts == nil {
		g.Gifts = map[string]int{}
	}
	g.Gifts[id] += n
}

type groupKey struct{ gw, room string }

// mergeGroups adds the groups of b into a (keyed by gateway and room).
func mergeGroups(a []*Group, b []*Group) []*Group {
	idx := map[groupKey]*Group{}
	for _, g := range a {
		idx[groupKey{g.Gateway, g.Room}] = g
	}
	for _, g := range b {
		k := groupKey{g.Gateway, g.Room}
		t := idx[k]
		if t == nil {
			t = &Group{Gateway: g.Gateway, Room: g.Room}
			idx[k] = t
			a = append(a, t)
		}
		t.Stayed += g.Stayed
		t.Doubled += g.Doubled
		t.LiveMax = max(t.LiveMax, g.LiveMax)
		t.LiveSum += g.LiveSum
		for id, n := range g.Gifts {
			t.addGift(id, n)
		}
	}
	sort.Slice(a, func(i, j int) bool {
		if a[i].Room != a[j].Room {
			return a[i].Room < a[j].Room
		}
		return a[i].Gateway < a[j].Gateway
	})
	return a
}

// AckedGift is a gift the uplink accepted (202) during the window.
type AckedGift struct {
	Room string `json:"room"`
	ID   string `json:"id"`
	Seq  uint64 `json:"seq"`
}

// GiftCheck is the exactly-once verdict over (viewer, gift) pairs: every
// acknowledged gift must reach every stayed viewer of its room once.
type GiftCheck struct {
	Acked    int   `json:"acked"`
	Viewers  int   `json:"viewers_checked"`
	Expected int64 `json:"expected_deliveries"`
	Lost     int64 `json:"lost"`
	Doubled  int64 `json:"doubled"`
	// Unacked counts gift ids delivered that the senders never saw
	// acknowledged (e.g. a request that timed out after the store).
	Unacked int `json:"unacked_ids"`
}

// checkGifts compares the acknowledged gifts with what the groups received.
func checkGifts(acked []AckedGift, groups []*Group) GiftCheck {
	byRoom := map[string][]*Group{}
	var c GiftCheck
	for _, g := range groups {
		byRoom[g.Room] = append(byRoom[g.Room], g)
		c.Viewers += g.Stayed
		c.Doubled += g.Doubled
	}
	known := map[string]bool{}
	for _, a := range acked {
		if known[a.ID] {
			continue // an idempotent retry answered with the same id
		}
		known[a.ID] = true
		c.Acked++
		for _, g := range byRoom[a.Room] {
			c.Expected += int64(g.Stayed)
			c.Lost += int64(max(0, g.Stayed-g.Gifts[a.ID]))
		}
	}
	seen := map[string]bool{}
	for _, g := range groups {
		for id := range g.Gifts {
			if !known[id] && !seen[id] {
				seen[id] = true
				c.Unacked++
			}
		}
	}
	return c
}

// LiveCheck estimates live frames dropped for single viewers (a full
// connection queue): every stayed viewer of a group should get what its
// best-served peer got.
type LiveCheck struct {
	Expected int64   `json:"expected"`
	Missing  int64   `json:"missing"`
	Ratio    float64 `json:"ratio"`
}

func checkLive(groups []*Group) LiveCheck {
	var c LiveCheck
	for _, g := range groups {
		c.Expected += int64(g.Stayed) * g.LiveMax
		c.Missing += int64(g.Stayed)*g.LiveMax - g.LiveSum
	}
	if c.Expected > 0 {
		c.Ratio = float64(c.Missing) / float64(c.Expected)
	}
	return c
}
