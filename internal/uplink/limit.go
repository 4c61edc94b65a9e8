package uplink

import (
	"hash/maphash"
	"math"
	"net/http"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/liveroom/liveroom/internal/protocol"
)

const (
	// limiterShards spreads the per-key limiters over independent locks so
	// that concurrent senders rarely contend.
	limiterShards = 64
	// maxLimitersPerShard bounds memory: 64 × 16384 ≈ 1M keys in one set.
	maxLimitersPerShard = 1 << 14
	// limiterSweepEvery is how often Run evicts idle limiters.
	limiterSweepEvery = 30 * time.Second
)

// limiterSet holds one token bucket per key (a user or a room). An entry is
// evicted once it has been idle long enough for its bucket to be full again,
// so eviction loses nothing: a new bucket starts full too. It is safe for
// concurrent use.
type limiterSet struct {
	limit  rate.Limit
	burst  int
	idle   time.Duration
	seed   maphash.Seed
	shards [limiterShards]limiterShard
}

type limiterShard struct {
	mu sync.Mutex
	m  map[string]*limiterEntry
}

type limiterEntry struct {
	lim  *rate.Limiter
	last time.Time // guarded by the shard's mu
}

func newLimiterSet(perSec float64, burst int) *limiterSet {
	// Time to refill an empty bucket, doubled to cover the small debt that
	// concurrent Reserve/Cancel pairs may leave, plus a second of slack.
	refill := time.Duration(float64(burst) / perSec * float64(time.Second))
	l := &limiterSet{
		limit: rate.Limit(perSec),
		burst: burst,
		idle:  2*refill + time.Second,
		seed:  maphash.MakeSeed(),
	}
	for i := range l.shards {
		l.shards[i].m = make(map[string]*limiterEntry)
	}
	return l
}

// get returns key's limiter, creating it with a full bucket. Marking the entry
// used happens under the shard lock, so a concurrent sweep never evicts a
// limiter that is about to be charged.
func (l *limiterSet) get(key string, now time.Time) *rate.Limiter {
	sh := &l.shards[maphash.String(l.seed, key)%limiterShards]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if e, ok := sh.m[key]; ok {
		e.last = now
		return e.lim
	}
	if len(sh.m) >= maxLimitersPerShard {
		sh.sweepLocked(now, l.idle)
		if len(sh.m) >= maxLimitersPerShard {
			// A flood of distinct, authenticated keys: drop an arbitrary
			// entry. Its owner gets a fresh bucket, i.e. at most one extra
			// burst; memory stays bounded, which matters more.
			for k := range sh.m {
				delete(sh.m, k)
				break
			}
		}
	}
	e := &limiterEntry{lim: rate.NewLimiter(l.limit, l.burst), last: now}
	sh.m[key] = e
	return e.lim
}

// sweep evicts entries idle since before now-idle and reports how many.
func (l *limiterSet) sweep(now time.Time) int {
	n := 0
	for i := range l.shards {
		sh := &l.shards[i]
		sh.mu.Lock()
		n += sh.sweepLocked(now, l.idle)
		sh.mu.Unlock()
	}
	return n
}

func (sh *limiterShard) sweepLocked(now time.Time, idle time.Duration) int {
	n := 0
	for k, e := range sh.m {
		if now.Sub(e.last) >= idle {
			delete(sh.m, k)
			n++
		}
	}
	return n
}

// size is the number of live entries.
func (l *limiterSet) size() int {
	n := 0
	for i := range l.shards {
		sh := &l.shards[i]
		sh.mu.Lock()
		n += len(sh.m)
		sh.mu.Unlock()
	}
	return n
}

// admitDanmaku charges one danmaku to user's bucket and then to room's cap.
// The room is checked only once the user bucket has passed, and a room
// rejection hands the user's token back (Reserve then Cancel), so a viewer is
// not punished for a busy room. Reservations that would have to wait are
// cancelled at once: the uplink never delays a request, it answers 429 with
// the wait as Retry-After.
func (s *Server) admitDanmaku(now time.Time, user protocol.User, room protocol.Room) *protocol.Error {
	ur := s.users.get(string(user), now).ReserveN(now, 1)
	if d := ur.DelayFrom(now); !ur.OK() || d > 0 {
		ur.CancelAt(now)
		return protocol.Errorf(http.StatusTooManyRequests, protocol.CodeUserRateLimited, "",
			"you are sending too fast; retry later").WithRetry(retryMS(d))
	}
	rr := s.rooms.get(string(room), now).ReserveN(now, 1)
	if d := rr.DelayFrom(now); !rr.OK() || d > 0 {
		rr.CancelAt(now)
		ur.CancelAt(now)
		return protocol.Errorf(http.StatusTooManyRequests, protocol.CodeRoomRateLimited, "",
			"this room is receiving too many comments; retry later").WithRetry(retryMS(d))
	}
	return nil
}

// admitUser charges n to user's bucket in set; a refusal is a 429 with the
// wait as Retry-After and what, the kind of send, in the message.
func admitUser(set *limiterSet, now time.Time, user protocol.User, n int, what string) *protocol.Error {
	r := set.get(string(user), now).ReserveN(now, n)
	if d := r.DelayFrom(now); !r.OK() || d > 0 {
		r.CancelAt(now)
		return protocol.Errorf(http.StatusTooManyRequests, protocol.CodeUserRateLimited, "",
			"you are sending "+what+" too fast; retry later").WithRetry(retryMS(d))
	}
	return nil
}

// retryMS rounds a wait up to whole milliseconds, at least 1.
func retryMS(d time.Duration) int64 {
	if d == rate.InfDuration || d < 0 {
		return math.MaxInt32
	}
	ms := (d + time.Millisecond - 1) / time.Millisecond
	return max(int64(ms), 1)
}
