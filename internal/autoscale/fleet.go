package autoscale

import (
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/liveroom/liveroom/internal/bus"
)

// forgetAfter is how long a silent gateway is remembered: long enough to
// count it as silent in the decisions and metrics, short enough that a
// fleet with churn does not grow the map for ever.
const forgetAfter = 2 * time.Minute

// Fleet keeps the latest beat of every gateway. It is safe for concurrent
// use; the zero value is ready.
type Fleet struct {
	mu sync.Mutex
	m  map[string]GatewayLoad
}

// Observe records b, received at at.
func (f *Fleet) Observe(b bus.Beat, at time.Time) {
	if !bus.ValidGatewayID(b.ID) {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.m == nil {
		f.m = map[string]GatewayLoad{}
	}
	g := FromBeat(b, at)
	if old, ok := f.m[b.ID]; ok && old.Started.Equal(g.Started) {
		g.FirstBeat = old.FirstBeat
	}
	f.m[b.ID] = g
}

// Loads returns the latest beat of every gateway heard from within
// forgetAfter, by id, and forgets the others.
func (f *Fleet) Loads(now time.Time) []GatewayLoad {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]GatewayLoad, 0, len(f.m))
	for id, g := range f.m {
		if now.Sub(g.LastBeat) > forgetAfter {
			delete(f.m, id)
			continue
		}
		out = append(out, g)
	}
	slices.SortFunc(out, func(a, b GatewayLoad) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// Get returns the latest beat of gateway id.
func (f *Fleet) Get(id string) (GatewayLoad, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	g, ok := f.m[id]
	return g, ok
}
