package uplink

import (
	"hash/maphash"
	"strconv"
	"testing"
	"time"

	"github.com/liveroom/liveroom/internal/moderation"
	"github.com/liveroom/liveroom/internal/protocol"
)

func TestSlowModeBound(t *testing.T) {
	s := newSlowModeBound(8)
	now := time.Unix(1_700_000_000, 0)
	shardOf := func(user string) uint64 { return maphash.String(s.seed, "r|"+user) % limiterShards }
	added := 0
	for i := 0; added < s.perShard+5; i++ {
		u := "u" + strconv.Itoa(i)
		if shardOf(u) != 0 {
			continue
		}
		if wait := s.admit("r", protocol.User(u), now, time.Minute); wait != 0 {
			t.Fatalf("first comment of %s waits %v", u, wait)
		}
		added++
	}
	if n := s.m.ShardLen(0); n != s.perShard {
		t.Fatalf("shard holds %d entries, bound is %d", n, s.perShard)
	}
	// Expired entries go first when the bound is reached.
	later := now.Add(moderation.MaxSlowModeS*time.Second + time.Second)
	for i := 0; ; i++ {
		u := "fresh" + strconv.Itoa(i)
		if shardOf(u) == 0 {
			s.admit("r", protocol.User(u), later, time.Minute)
			break
		}
	}
	if n := s.m.ShardLen(0); n != 1 {
		t.Fatalf("shard holds %d entries after an insert that found every entry expired", n)
	}
}

func TestSlowModeAdmit(t *testing.T) {
	s := newSlowMode()
	now := time.Unix(1_700_000_000, 0)
	if wait := s.admit("r", "alice", now, 10*time.Second); wait != 0 {
		t.Fatalf("first comment waits %v", wait)
	}
	if wait := s.admit("r", "alice", now.Add(4*time.Second), 10*time.Second); wait != 6*time.Second {
		t.Fatalf("second comment waits %v, want 6s", wait)
	}
	if wait := s.admit("r2", "alice", now.Add(4*time.Second), 10*time.Second); wait != 0 {
		t.Fatalf("another room waits %v", wait)
	}
	if wait := s.admit("r", "alice", now.Add(10*time.Second), 10*time.Second); wait != 0 {
		t.Fatalf("comment after the interval waits %v", wait)
	}
	if n := s.sweep(now.Add(10*time.Second + moderation.MaxSlowModeS*time.Second)); n != 1 {
		t.Fatalf("swept %d, want 1 (r2 only)", n)
	}
}

// TestSlowModeRemembersOwner: a non-owner uplink refuses from the owner's
// last answer without recording anything itself, and never moves a later
// comment back in time.
func TestSlowModeRemembersOwner(t *testing.T) {
	s := newSlowMode()
	now := time.Unix(1_700_000_000, 0)
	if w := s.wait("r", "bob", now, 10*time.Second); w != 0 {
		t.Fatalf("unknown pair waits %v", w)
	}
	s.set("r", "bob", now.Add(-3*time.Second)) // the owner said: spoke 3 s ago
	if w := s.wait("r", "bob", now, 10*time.Second); w != 7*time.Second {
		t.Fatalf("wait %v, want 7s", w)
	}
	s.set("r", "bob", now.Add(-5*time.Second)) // an older answer arriving late
	if w := s.wait("r", "bob", now, 10*time.Second); w != 7*time.Second {
		t.Fatalf("an older answer moved the last comment back: wait %v", w)
	}
	if w := s.wait("r", "bob", now.Add(7*time.Second), 10*time.Second); w != 0 {
		t.Fatalf("after the interval the pair still waits %v", w)
	}
}
