package autoscale

import (
	"slices"
	"time"

	"github.com/liveroom/liveroom/internal/fleet"
)

// readySamples is how many of the latest measured ready times the estimate
// looks at: the longest of them, so that one quick start does not shorten
// the look-ahead of a fleet whose starts are usually slow.
const readySamples = 3

// readyClock measures how long a new gateway takes to be ready: from the
// actuator asking for it (Member.Since) to the autoscaler receiving its
// first beat, which is when dispatch can offer it too. It measures only
// gateways asked for after the Scaler started (those that already ran have
// no start to measure). Owned by the Scaler's loop.
type readyClock struct {
	// from is when the Scaler started.
	from time.Time
	// done holds the members measured (or found too old to measure), so
	// that each is measured once; it is pruned to the current members.
	done    map[string]bool
	samples []time.Duration // oldest first, at most readySamples
}

// observe measures the members that beat for the first time since the
// last call. Members without an id yet (a pod the ReplicaSet has not
// created) are measured once they have one; a first beat more than timeout
// after Since is no measure of a start (the member was frozen, or
// restarted) and is skipped.
func (r *readyClock) observe(members []Member, view *fleet.View, timeout time.Duration) {
	if r.done == nil {
		r.done = map[string]bool{}
	}
	seen := make(map[string]bool, len(members))
	for _, m := range members {
		if m.ID == "" {
			continue
		}
		seen[m.ID] = true
		if r.done[m.ID] {
			continue
		}
		if m.Since.Before(r.from) {
			r.done[m.ID] = true
			continue
		}
		g, ok := view.Get(m.ID)
		if !ok {
			continue
		}
		r.done[m.ID] = true
		d := g.First.Sub(m.Since)
		if d <= 0 || d > timeout {
			continue
		}
		r.samples = append(r.samples, d)
		if len(r.samples) > readySamples {
			r.samples = r.samples[1:]
		}
	}
	for id := range r.done {
		if !seen[id] {
			delete(r.done, id)
		}
	}
}

// estimate returns the longest of the latest measured ready times, or 0
// when none was measured.
func (r *readyClock) estimate() time.Duration {
	if len(r.samples) == 0 {
		return 0
	}
	return slices.Max(r.samples)
}
