package gctune

import (
	"context"
	"runtime"
	"runtime/metrics"
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

var sink [][]byte

func released() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/released:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// TestQuietProcessReturnsMemory: garbage left by a burst goes back to the
// operating system once the process is quiet, and not while it allocates.
func TestQuietProcessReturnsMemory(t *testing.T) {
	defer func(d time.Duration) { tick = d }(tick)
	tick = 20 * time.Millisecond
	tn, err := New(Config{Percent: 400, QuietFor: 500 * time.Millisecond, MinRelease: 8 << 20, Logger: testutil.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	if err := tn.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Busy: allocating far above QuietRate for a while releases nothing.
	stop := time.Now().Add(400 * time.Millisecond)
	for time.Now().Before(stop) {
		sink = append(sink[:0], make([]byte, 1<<20))
		runtime.Gosched()
	}
	busyReleases := tn.releasesNow()
	// A burst of garbage, then quiet.
	for range 64 {
		sink = append(sink, make([]byte, 1<<20))
	}
	sink = nil
	before := released()
	testutil.Eventually(t, 10*time.Second, "memory returned after the burst", func() bool { return tn.releasesNow() > busyReleases })
	if err := tn.Close(); err != nil {
		t.Fatal(err)
	}
	if busyReleases != 0 {
		t.Errorf("%d releases while allocating, want none", busyReleases)
	}
	if after := released(); after <= before {
		t.Errorf("released heap memory went from %d to %d bytes", before, after)
	}
}
