package gctune

import (
	"context"
	"runtime/debug"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/liveroom/liveroom/internal/testutil"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestTargetPercent(t *testing.T) {
	const mib = 1 << 20
	cases := []struct {
		percent int
		live    int64
		want    int
	}{
		{400, 8 * mib, 400},   // the send path alone: 32 MiB of headroom
		{400, 16 * mib, 400},  // 64 MiB: at the cap
		{400, 32 * mib, 200},  // connections grew the live heap: 64 MiB of headroom
		{400, 100 * mib, 100}, // never below 100
		{100, 100 * mib, 100}, // a target of 100 or less is left alone
		{50, 8 * mib, 50},
		{400, 0, 400},
	}
	for _, tc := range cases {
		if got := targetPercent(tc.percent, tc.live, 64*mib); got != tc.want {
			t.Errorf("percent %d, live %d MiB: %d, want %d", tc.percent, tc.live/mib, got, tc.want)
		}
	}
}

// TestReleaseOnlyWhenQuiet feeds the Tuner samples of a process: it returns
// memory once the allocation rate has stayed low for QuietFor with enough
// to give back, never while the process allocates, not more often than
// releaseEvery, and it follows the live heap with the target.
func TestReleaseOnlyWhenQuiet(t *testing.T) {
	const mib = 1 << 20
	tn, err := New(Config{Percent: 400, QuietFor: 3 * time.Second, MinRelease: 8 * mib, Logger: testutil.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	var released int
	var percents []int
	tn.release = func() { released++ }
	tn.setPercent = func(p int) { percents = append(percents, p) }
	tn.percent = 400
	now := time.Unix(1_000_000, 0)
	var allocs uint64
	step := func(alloc uint64, live, garbage int64) {
		allocs += alloc
		now = now.Add(time.Second)
		tn.apply(now, sample{allocs: allocs, live: live, objects: live + garbage}, time.Second)
	}
	// A join storm: 10 s at 20 MiB/s, 30 MiB of garbage sitting in the heap.
	for range 10 {
		step(20*mib, 32*mib, 30*mib)
	}
	if released != 0 {
		t.Fatalf("%d releases while the process allocated", released)
	}
	if len(percents) != 1 || percents[0] != 200 {
		t.Fatalf("targets set %v, want [200] for a 32 MiB live heap", percents)
	}
	// Quiet: a few KiB/s. Nothing before QuietFor, then one release.
	for i := range 3 {
		step(4<<10, 32*mib, 30*mib)
		if released != 0 {
			t.Fatalf("released after %d quiet seconds, before QuietFor", i+1)
		}
	}
	step(4<<10, 32*mib, 30*mib)
	if released != 1 {
		t.Fatalf("%d releases after 4 quiet seconds, want 1", released)
	}
	// Still quiet, still garbage (say the release could not give it back):
	// not again before releaseEvery.
	for range int(releaseEvery/time.Second) - 1 {
		step(4<<10, 32*mib, 30*mib)
	}
	if released != 1 {
		t.Fatalf("%d releases within releaseEvery", released)
	}
	step(4<<10, 32*mib, 30*mib)
	if released != 2 {
		t.Fatalf("%d releases after releaseEvery, want 2", released)
	}
	// Quiet with little to give back: nothing.
	for range 20 {
		step(4<<10, 32*mib, 2*mib)
	}
	if released != 2 {
		t.Fatalf("%d releases with 2 MiB to give back", released)
	}
}

// TestStartSetsAndCloseRestores: the running Tuner sets its target and Close
// puts back the one it found.
func TestStartSetsAndCloseRestores(t *testing.T) {
	before := debug.SetGCPercent(150)
	defer debug.SetGCPercent(before)
	tn, err := New(Config{Percent: 400, Logger: testutil.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	if err := tn.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := debug.SetGCPercent(400)
	if err := tn.Close(); err != nil {
		t.Fatal(err)
	}
	if got != 400 && got != targetPercent(400, 1<<30, DefaultMaxHeadroom) {
		t.Fatalf("target while running %d, want 400 (or the capped one)", got)
	}
	if after := debug.SetGCPercent(before); after != 150 {
		t.Fatalf("target after Close %d, want the 150 it found", after)
	}
}
