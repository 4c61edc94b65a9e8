package uplink

import (
	"hash/maphash"
	"math"
	"net/http"
	"sort"
	"time"

	"github.com/liveroom/liveroom/internal/protocol"
	"github.com/liveroom/liveroom/internal/ttlmap"
)

const (
	// limiterShards spreads the per-key limiters over independent locks so
	// that concurrent senders rarely contend.
	limiterShards = 64
	// maxLimitersPerShard bounds memory: 64 × 16384 ≈ 1M keys in one set.
	maxLimitersPerShard = 1 << 14
	// limiterSweepEvery is how often Run evicts idle limiters.
	limiterSweepEvery = 30 * time.Second
	// maxHotPerShard bounds the keys a shard tracks as hot (see fleet.go):
	// 64 × 64 = 4096 per set, of which a report carries the hottest
	// bus.MaxUsageKeys. A key past the bound is simply not reported: it
	// keeps the equal share, which is safe.
	maxHotPerShard = 64
)

// limiterSet holds one token bucket per key (a user or a room): rate tokens
// a second, at most burst, for the whole fleet of uplinks. This uplink holds
// share of them (fleet.go): rate×share a second, burst×share at most; share
// is 1 when the uplink is alone, so alone it is a plain token bucket, the
// algorithm of golang.org/x/time/rate it replaced.
//
// An entry is evicted once it has been idle long enough for its bucket to be
// full again, so eviction loses nothing: a new bucket starts full too. A
// shard full of live keys (a flood of distinct, authenticated keys) drops an
// arbitrary one: its owner gets a fresh bucket, i.e. at most one extra
// burst; memory stays bounded, which matters more. It is safe for
// concurrent use.
type limiterSet struct {
	rate  float64 // tokens per second, fleet-wide
	burst float64 // bucket size, fleet-wide
	idle  time.Duration
	seed  maphash.Seed
	// class is the set's index in the fleet's tables; fleet is nil when
	// fleet-wide limits are off (Config.FleetInterval < 0).
	class int
	fleet *fleet
	m     *ttlmap.Map[string, *limiterEntry]
	// hot[i] holds the entries of m's shard i with hotUntil in the future,
	// at most maxHotPerShard; it is guarded by that shard's lock (m's
	// callbacks hold it, hotKeys takes it with Locked).
	hot [limiterShards]map[string]*limiterEntry
}

// limiterEntry is one key's bucket; every field is guarded by its shard's lock.
type limiterEntry struct {
	tokens float64
	at     time.Time // when tokens was last brought up to date
	last   time.Time // last use, for eviction
	born   time.Time // creation
	share  float64   // this uplink's share of the key's rate and burst
	cold   bool      // share is the equal share of a key nobody reports
	gen    uint64    // the fleet view share was taken from
	// demand is the units asked for (refused ones too) during the fleet's
	// report period numbered period; hotUntil, while in the future, puts
	// the key in the shard's hot set and so in the usage reports.
	demand   float64
	period   uint64
	hotUntil time.Time
}

func newLimiterSet(perSec float64, burst int) *limiterSet {
	// Time to refill an empty bucket, doubled to cover the small debt a
	// request larger than a small share may leave, plus a second of slack.
	refill := time.Duration(float64(burst) / perSec * float64(time.Second))
	seed := maphash.MakeSeed()
	l := &limiterSet{
		rate:  perSec,
		burst: float64(burst),
		idle:  2*refill + time.Second,
		seed:  seed,
	}
	for i := range l.hot {
		l.hot[i] = make(map[string]*limiterEntry)
	}
	l.m = ttlmap.New(ttlmap.Config[string, *limiterEntry]{
		Shards:   limiterShards,
		PerShard: maxLimitersPerShard,
		Hash:     func(k string) uint64 { return maphash.String(seed, k) },
		Expired:  l.evictable,
		OnEvict:  func(shard int, k string, _ *limiterEntry) { delete(l.hot[shard], k) },
	})
	return l
}

// grant is an admitted charge, which refund can hand back.
type grant struct {
	set *limiterSet
	key string
	e   *limiterEntry
	n   float64
}

// refund gives the charge back (the room refused what the user's bucket
// admitted), up to the bucket's size. A bucket evicted meanwhile is not
// refunded (nor recreated).
func (g grant) refund() {
	if g.e == nil {
		return
	}
	g.set.m.Do(g.key, time.Time{}, func(e *limiterEntry, ok bool) (*limiterEntry, ttlmap.Op) {
		if ok && e == g.e {
			e.tokens = min(e.tokens+g.n, max(e.share*g.set.burst, g.n))
		}
		return e, ttlmap.Keep
	})
}

// take charges n tokens to key's bucket, creating it full at the current
// share if it is new. It answers the grant, or the wait until n tokens
// would be there (rate.InfDuration-like math.MaxInt64 when n exceeds the
// burst and can never be admitted). It never waits. The bucket is marked
// used under the shard lock, so a concurrent sweep never evicts a bucket
// that is about to be charged.
func (l *limiterSet) take(key string, now time.Time, n int) (g grant, wait time.Duration, ok bool) {
	l.m.Do(key, now, func(e *limiterEntry, found bool) (*limiterEntry, ttlmap.Op) {
		op := ttlmap.Keep
		if !found {
			e, op = l.newEntry(key, now), ttlmap.Store
		}
		g, wait, ok = l.takeLocked(e, key, now, n)
		return e, op
	})
	return g, wait, ok
}

// takeLocked is take on key's entry e, under its shard lock.
func (l *limiterSet) takeLocked(e *limiterEntry, key string, now time.Time, n int) (grant, time.Duration, bool) {
	f := l.fleet
	v := f.current()
	if e.gen != v.gen {
		l.reshare(e, v, key, now)
	}
	l.advance(e, now)
	e.last = now
	need := float64(n)
	shared := v.n > 1 // and so f is not nil
	if shared {
		e.countDemand(f.period.Load(), need)
	}
	if need > l.burst {
		return grant{}, time.Duration(math.MaxInt64), false
	}
	limit := e.share * l.burst
	// A share too small to hold n tokens admits n when its bucket is full
	// and goes into debt: the long-run rate stays rate×share (see
	// docs/OPERATIONS.md for what this adds to the fleet's burst). Alone,
	// limit is the burst and this is exactly "tokens ≥ n".
	ok := e.share > 0 && (e.tokens >= need || (limit < need && e.tokens >= limit))
	overdraft := false
	if !ok && shared && e.cold && now.Sub(e.born) >= 2*f.interval && e.tokens-need >= -l.overdraft(f, e.share) {
		// A key nobody reports may overdraw its equal share by one
		// request, or half an interval at the whole rate if that is
		// more: on average long enough for this uplink's next report
		// to give it the whole rate if the user is only here, so that a
		// user on one uplink is seldom refused below the rate. Not in
		// a key's first two intervals here: a sprayer's first requests
		// are refused at the equal share, which makes the key hot
		// everywhere before it could overdraw anywhere (the worst case
		// is in docs/OPERATIONS.md). It makes the key hot.
		ok, overdraft = true, true
	}
	if ok {
		e.tokens -= need
		if shared && (overdraft || now.Before(e.hotUntil)) {
			// A key in use stays hot, so that the share it holds is
			// still reported and not given back to the others.
			l.markHotLocked(key, e, now.Add(f.hold))
		}
		return grant{set: l, key: key, e: e, n: need}, 0, true
	}
	var wait time.Duration
	switch {
	case e.share <= 0:
		// Nothing here until the next reports give this uplink a share
		// (share 0 only ever comes from a fleet view, so f is not nil).
		wait = f.interval
	default:
		missing := need - e.tokens
		if limit < need {
			missing = limit - e.tokens
		}
		wait = time.Duration(missing / (l.rate * e.share) * float64(time.Second))
	}
	if shared {
		l.markHotLocked(key, e, now.Add(f.hold))
	}
	return grant{}, wait, false
}

// markHotLocked keeps key in its shard's hot set, and so in the usage
// reports, until until. The caller holds the shard's lock.
func (l *limiterSet) markHotLocked(key string, e *limiterEntry, until time.Time) {
	e.hotUntil = until
	if hot := l.hot[l.m.Shard(key)]; len(hot) < maxHotPerShard {
		if _, ok := hot[key]; !ok {
			hot[key] = e
		}
	}
}

// advance refills e up to now at its share of the rate.
func (l *limiterSet) advance(e *limiterEntry, now time.Time) {
	if now.After(e.at) {
		limit := e.share * l.burst
		if e.tokens < limit {
			e.tokens = min(limit, e.tokens+now.Sub(e.at).Seconds()*l.rate*e.share)
		}
		e.at = now
	}
}

// reshare moves e to the share view v gives key: tokens are brought up to
// date at the old share, then cut to the new bucket size, never raised, so
// that a change of shares never creates tokens.
func (l *limiterSet) reshare(e *limiterEntry, v *fleetView, key string, now time.Time) {
	l.advance(e, now)
	wasCold, coldShare := e.cold, e.share
	e.share, e.cold = v.share(l.class, key)
	e.tokens = min(e.tokens, e.share*l.burst)
	if wasCold && !e.cold && e.tokens < 0 {
		// The overdraft of a cold key bought the time for this report;
		// it is not paid back on top. Any other debt (a request larger
		// than a small share) still is.
		e.tokens = min(0, e.tokens+l.overdraft(l.fleet, coldShare))
	}
	e.gen = v.gen
}

// overdraft is how far below empty a cold key at share may go: one
// request, or half an interval at the rest of the rate if that is more.
func (l *limiterSet) overdraft(f *fleet, share float64) float64 {
	return max(1, l.rate*(1-share)*f.interval.Seconds()/2)
}

// countDemand adds n to the demand of report period p. The demand of past
// periods halves with each period, so that a report carries a smoothed
// demand rather than the noise of one interval's few requests.
func (e *limiterEntry) countDemand(p uint64, n float64) {
	e.demand = e.demandAt(p) + n
	e.period = p
}

// demandAt is the demand as of period p (not before e.period).
func (e *limiterEntry) demandAt(p uint64) float64 {
	if p == e.period {
		return e.demand
	}
	if p-e.period >= 64 {
		return 0
	}
	return e.demand / float64(uint64(1)<<(p-e.period))
}

// newEntry is a new bucket for key, full at the current share.
func (l *limiterSet) newEntry(key string, now time.Time) *limiterEntry {
	v := l.fleet.current()
	share, cold := v.share(l.class, key)
	return &limiterEntry{tokens: share * l.burst, at: now, last: now, born: now, share: share, cold: cold, gen: v.gen}
}

// evictable reports whether e, idle and not hot, has a full bucket again:
// forgetting it then changes nothing. It runs under e's shard lock.
func (l *limiterSet) evictable(e *limiterEntry, now time.Time) bool {
	if now.Sub(e.last) < l.idle || now.Before(e.hotUntil) {
		return false
	}
	l.advance(e, now)
	return e.tokens >= e.share*l.burst // else still paying a debt
}

// sweep evicts entries idle since before now-idle and reports how many.
func (l *limiterSet) sweep(now time.Time) int { return l.m.Sweep(now) }

// size is the number of live entries.
func (l *limiterSet) size() int { return l.m.Len() }

// hotKeys returns the keys hot at now with their demand in report period
// p, the hottest first, at most max of them, and forgets the keys that
// cooled down.
func (l *limiterSet) hotKeys(now time.Time, p uint64, max int) map[string]float64 {
	type kd struct {
		k string
		d float64
	}
	var all []kd
	for i := range l.hot {
		l.m.Locked(i, func() {
			for k, e := range l.hot[i] {
				if !now.Before(e.hotUntil) {
					delete(l.hot[i], k)
					continue
				}
				d := 0.0
				if p >= e.period {
					d = e.demandAt(p)
				}
				all = append(all, kd{k, d})
			}
		})
	}
	if len(all) > max {
		sort.Slice(all, func(i, j int) bool { return all[i].d > all[j].d })
		all = all[:max]
	}
	out := make(map[string]float64, len(all))
	for _, x := range all {
		out[x.k] = x.d
	}
	return out
}

// admitDanmaku charges one danmaku to user's bucket and then to room's cap.
// The room is checked only once the user bucket has passed, and a room
// rejection hands the user's token back, so a viewer is not punished for a
// busy room. The uplink never delays a request: a refusal is a 429 with the
// wait as Retry-After.
func (s *Server) admitDanmaku(now time.Time, user protocol.User, room protocol.Room) *protocol.Error {
	ug, d, ok := s.users.take(string(user), now, 1)
	if !ok {
		return protocol.Errorf(http.StatusTooManyRequests, protocol.CodeUserRateLimited, "",
			"you are sending too fast; retry later").WithRetry(retryMS(d))
	}
	if _, d, ok := s.rooms.take(string(room), now, 1); !ok {
		ug.refund()
		return protocol.Errorf(http.StatusTooManyRequests, protocol.CodeRoomRateLimited, "",
			"this room is receiving too many comments; retry later").WithRetry(retryMS(d))
	}
	return nil
}

// admitUser charges n to user's bucket in set; a refusal is a 429 with the
// wait as Retry-After and what, the kind of send, in the message.
func admitUser(set *limiterSet, now time.Time, user protocol.User, n int, what string) *protocol.Error {
	if _, d, ok := set.take(string(user), now, n); !ok {
		return protocol.Errorf(http.StatusTooManyRequests, protocol.CodeUserRateLimited, "",
			"you are sending "+what+" too fast; retry later").WithRetry(retryMS(d))
	}
	return nil
}

// retryMS rounds a wait up to whole milliseconds, at least 1.
func retryMS(d time.Duration) int64 {
	if d == time.Duration(math.MaxInt64) || d < 0 {
		return math.MaxInt32
	}
	ms := (d + time.Millisecond - 1) / time.Millisecond
	return max(int64(ms), 1)
}
