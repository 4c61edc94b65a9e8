package uplink

import (
	"fmt"
	"hash/maphash"
	"net/http"
	"sync"
	"time"

	"github.com/liveroom/liveroom/internal/auth"
	"github.com/liveroom/liveroom/internal/moderation"
	"github.com/liveroom/liveroom/internal/protocol"
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
			return protocol.Errorf(http.StatusForbidden, protocol.CodeRoomClosed, "", "the room is closed")
		}
		sanctionable := moderation.Sanctionable(id)
		if b, ok := c.Banned(room, id.User, now); ok && sanctionable {
			return protocol.Errorf(http.StatusForbidden, protocol.CodeBanned, "",
				fmt.Sprintf("you are banned from this room until %s", time.UnixMilli(b.UntilMS).UTC().Format(time.RFC3339))).WithUntil(b.UntilMS)
		}
		if req.Type == protocol.TypeDanmaku {
			if m, ok := c.Muted(room, id.User, now); ok && sanctionable {
				return protocol.Errorf(http.StatusForbidden, protocol.CodeMuted, "",
					fmt.Sprintf("you are muted in this room until %s", time.UnixMilli(m.UntilMS).UTC().Format(time.RFC3339))).WithUntil(m.UntilMS)
			}
			exempt := moderation.Exempt(c, room, id)
			if st.MuteAll && !exempt {
				return protocol.Errorf(http.StatusForbidden, protocol.CodeMutedAll, "", "only the anchor may speak in this room now")
			}
			if st.SlowModeS > 0 && !exempt {
				if wait := s.admitSlow(room, id.User, now, time.Duration(st.SlowModeS)*time.Second); wait > 0 {
					return protocol.Errorf(http.StatusTooManyRequests, protocol.CodeSlowMode, "",
						fmt.Sprintf("slow mode: one comment every %d s", st.SlowModeS)).WithRetry(wait.Milliseconds())
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
// of limiterShards shards.
type slowMode struct {
	seed     maphash.Seed
	perShard int
	shards   [limiterShards]slowShard
}

type slowShard struct {
	mu   sync.Mutex
	last map[string]time.Time
}

func newSlowMode() *slowMode {
	s := &slowMode{seed: maphash.MakeSeed(), perShard: maxLimitersPerShard}
	for i := range s.shards {
		s.shards[i].last = map[string]time.Time{}
	}
	return s
}

// admit records a comment at now and returns 0, or how long the user must
// still wait.
func (s *slowMode) admit(room protocol.Room, user protocol.User, now time.Time, interval time.Duration) time.Duration {
	key := string(room) + "|" + string(user)
	sh := &s.shards[maphash.String(s.seed, key)%uint64(len(s.shards))]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	last, ok := sh.last[key]
	if ok && now.Sub(last) < interval {
		return interval - now.Sub(last)
	}
	if !ok && len(sh.last) >= s.perShard {
		sh.sweepLocked(now)
		if len(sh.last) >= s.perShard {
			// A flood of distinct, authenticated senders: forget an
			// arbitrary one, who may then speak once early; memory stays
			// bounded, which matters more.
			for k := range sh.last {
				delete(sh.last, k)
				break
			}
		}
	}
	sh.last[key] = now
	return 0
}

// wait returns how long user must still wait in room, without recording
// anything: 0 when this uplink remembers no comment within interval.
func (s *slowMode) wait(room protocol.Room, user protocol.User, now time.Time, interval time.Duration) time.Duration {
	key := string(room) + "|" + string(user)
	sh := &s.shards[maphash.String(s.seed, key)%uint64(len(s.shards))]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if last, ok := sh.last[key]; ok && now.Sub(last) < interval {
		return interval - now.Sub(last)
	}
	return 0
}

// set records that user last spoke in room at t (as another uplink, the
// pair's owner, said), within the same memory bound as admit.
func (s *slowMode) set(room protocol.Room, user protocol.User, t time.Time) {
	key := string(room) + "|" + string(user)
	sh := &s.shards[maphash.String(s.seed, key)%uint64(len(s.shards))]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if _, ok := sh.last[key]; !ok && len(sh.last) >= s.perShard {
		sh.sweepLocked(t)
		for k := range sh.last {
			if len(sh.last) < s.perShard {
				break
			}
			delete(sh.last, k)
		}
	}
	if last, ok := sh.last[key]; !ok || t.After(last) {
		sh.last[key] = t
	}
}

// sweep forgets entries older than the longest slow-mode interval.
func (s *slowMode) sweep(now time.Time) int {
	n := 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		n += sh.sweepLocked(now)
		sh.mu.Unlock()
	}
	return n
}

func (sh *slowShard) sweepLocked(now time.Time) int {
	n := 0
	for k, t := range sh.last {
		if now.Sub(t) > moderation.MaxSlowModeS*time.Second {
			delete(sh.last, k)
			n++
		}
	}
	return n
}
