package gateway

import (
	"testing"
	"time"
)

func TestRoomWindowGrowsWithMembers(t *testing.T) {
	s := &Server{cfg: Config{MergeWindow: 50 * time.Millisecond, MaxMergeWindow: 200 * time.Millisecond, RoomWriteBudget: 20000}}
	r := newRoom(s, "x", newHub(1).shards[0])
	for _, tc := range []struct {
		members int
		want    time.Duration
	}{
		{0, 50 * time.Millisecond},
		{1000, 50 * time.Millisecond},
		{1001, 100 * time.Millisecond}, // rounded up to whole ticks
		{2000, 100 * time.Millisecond},
		{2500, 150 * time.Millisecond},
		{4000, 200 * time.Millisecond},
		{100000, 200 * time.Millisecond},
	} {
		if got := r.windowFor(tc.members); got != tc.want {
			t.Errorf("windowFor(%d) = %v, want %v", tc.members, got, tc.want)
		}
	}
	off := &Server{cfg: Config{MergeWindow: 50 * time.Millisecond, MaxMergeWindow: 50 * time.Millisecond, RoomWriteBudget: 20000}}
	if got := newRoom(off, "y", newHub(1).shards[0]).windowFor(100000); got != 50*time.Millisecond {
		t.Errorf("adaptive windows off: %v", got)
	}
}

// TestLargeRoomFlushesEveryFourTicksAndKeepsTheBudget runs the flusher's
// decision over simulated ticks for a room of 5,000 members: it flushes on
// every fourth 50 ms tick (200 ms windows), and sampling still lets exactly
// the viewer budget through.
func TestLargeRoomFlushesEveryFourTicksAndKeepsTheBudget(t *testing.T) {
	s := &Server{cfg: Config{ViewerBudget: 30, MergeWindow: 50 * time.Millisecond, MaxMergeWindow: 200 * time.Millisecond,
		RoomWriteBudget: 20000, ReliableWindow: 16}}
	r := newRoom(s, "big", newHub(1).shards[0])
	r.members = make([]*conn, 5000) // only counted: taken away while flushing
	now := time.Unix(0, 0)
	flushes := 0
	// 10 s at 300 live messages/s; the 201st tick flushes the last window.
	const ticks, perTick = 201, 15
	for range ticks {
		for range perTick {
			r.add(pendingMsg{b: []byte("m"), kind: kindLive})
		}
		now = now.Add(50 * time.Millisecond)
		if r.due(now) {
			r.mu.Lock()
			members := r.members
			r.members = nil // flush writes to members; the count above chose the window
			r.mu.Unlock()
			w := r.windowFor(len(members))
			r.flush(now, nil)
			r.mu.Lock()
			r.members = members
			r.mergeWin = w
			r.mu.Unlock()
			flushes++
		}
	}
	if flushes < ticks/4-1 || flushes > ticks/4+1 {
		t.Fatalf("%d flushes in %d ticks, want ~%d (every 4th)", flushes, ticks, ticks/4)
	}
	kept := ticks*perTick - int(s.stats.DroppedSampled.Load())
	if kept < 300-2 || kept > 300+2 {
		t.Fatalf("%d flushes; %d live messages kept in 10 s, want the budget: 300", flushes, kept)
	}
}
