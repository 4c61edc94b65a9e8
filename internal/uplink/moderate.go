package uplink

import (
	"hash/maphash"
	"net/http"
	"time"

	"github.com/liveroom/liveroom/internal/auth"
	"github.com/liveroom/liveroom/internal/moderation"
	"github.com/liveroom/liveroom/internal/protocol"
	"github.com/liveroom/liveroom/internal/ttlmap"
)

// moderate applies the room's moderation to a decoded send, from the cache
// (no lookup leaves the process): a closed room and a ban refuse every send;
// a mute, mute-all and slow mode refuse danmaku (gifts and likes of a muted
// user still go through: a mute silences chat, it does not stop payments);
// the word filter masks or refuses danmaku text in place.
func (s *Server) moderate(now time.Time, room protocol.Room, id auth.Identity, req *sendRequest) *protocol.Error {
	if c := s.cfg.Moderation; c != nil {
		st := c.Room(room)
		if st.Closed && id.Role != protocol.RoleAdmin {
			return moderation.RoomClosedError()
		}
		sanctionable := moderation.Sanctionable(id)
		if b, ok := c.Banned(room, id.User, now); ok && sanctionable {
			return moderation.BannedError(b)
		}
		if req.Type == protocol.TypeDanmaku {
			if m, ok := c.Muted(room, id.User, now); ok && sanctionable {
				return moderation.MutedError(m)
			}
			exempt := moderation.Exempt(c, room, id)
			if st.MuteAll && !exempt {
				return moderation.MutedAllError()
			}
			if st.SlowModeS > 0 && !exempt {
				if wait := s.admitSlow(room, id.User, now, time.Duration(st.SlowModeS)*time.Second); wait > 0 {
					return moderation.SlowModeError(st.SlowModeS, wait)
				}
			}
		}
	}
	if req.Type == protocol.TypeDanmaku && s.cfg.Words != nil {
		text, blocked := s.cfg.Words.Check(req.Text)
		if blocked != "" {
			return protocol.Errorf(http.StatusBadRequest, protocol.CodeBlockedWord, "text", "the comment contains a word this platform does not allow")
		}
		req.Text = text
	}
	return nil
}

// slowMode remembers when each user last spoke in each room, for slow mode.
// Behind several uplinks each pair has one owner whose memory decides; the
// others remember the owner's answers (fleet.go, admitSlow).
//
// Its memory is bounded like a limiterSet's: at most perShard entries in each
// of limiterShards shards. A shard full of pairs that spoke within the
// longest interval forgets an arbitrary one, who may then speak once early.
type slowMode struct {
	seed     maphash.Seed
	perShard int
	m        *ttlmap.Map[string, time.Time]
}

func newSlowMode() *slowMode { return newSlowModeBound(maxLimitersPerShard) }

// newSlowModeBound is newSlowMode with perShard entries per shard.
func newSlowModeBound(perShard int) *slowMode {
	seed := maphash.MakeSeed()
	return &slowMode{seed: seed, perShard: perShard, m: ttlmap.New(ttlmap.Config[string, time.Time]{
		Shards:   limiterShards,
		PerShard: perShard,
		Hash:     func(k string) uint64 { return maphash.String(seed, k) },
		// Older than the longest slow-mode interval: remembering it
		// can refuse nothing.
		Expired: func(last, now time.Time) bool { return now.Sub(last) > moderation.MaxSlowModeS*time.Second },
	})}
}

func slowKey(room protocol.Room, user protocol.User) string { return string(room) + "|" + string(user) }

// admit records a comment at now and returns 0, or how long the user must
// still wait.
func (s *slowMode) admit(room protocol.Room, user protocol.User, now time.Time, interval time.Duration) (wait time.Duration) {
	s.m.Do(slowKey(room, user), now, func(last time.Time, ok bool) (time.Time, ttlmap.Op) {
		if ok && now.Sub(last) < interval {
			wait = interval - now.Sub(last)
			return last, ttlmap.Keep
		}
		return now, ttlmap.Store
	})
	return wait
}

// wait returns how long user must still wait in room, without recording
// anything: 0 when this uplink remembers no comment within interval.
func (s *slowMode) wait(room protocol.Room, user protocol.User, now time.Time, interval time.Duration) time.Duration {
	if last, ok := s.m.Get(slowKey(room, user), now); ok && now.Sub(last) < interval {
		return interval - now.Sub(last)
	}
	return 0
}

// set records that user last spoke in room at t (as another uplink, the
// pair's owner, said), within the same memory bound as admit. An older
// answer arriving late never moves the last comment back.
func (s *slowMode) set(room protocol.Room, user protocol.User, t time.Time) {
	s.m.Do(slowKey(room, user), t, func(last time.Time, ok bool) (time.Time, ttlmap.Op) {
		if ok && !t.After(last) {
			return last, ttlmap.Keep
		}
		return t, ttlmap.Store
	})
}

// sweep forgets entries older than the longest slow-mode interval.
func (s *slowMode) sweep(now time.Time) int { return s.m.Sweep(now) }
