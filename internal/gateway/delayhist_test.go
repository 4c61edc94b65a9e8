package gateway

import (
	"math"
	"testing"
	"time"
)

func TestDelayQuantiles(t *testing.T) {
	var h delayHist
	before := h.snapshot()
	if got := quantile(before, h.snapshot(), 0.5); got != 0 {
		t.Errorf("empty interval p50 = %v, want 0", got)
	}
	// 98 fast pushes at 3-5 ms and 2 slow ones at 180 ms.
	for range 98 {
		h.observe(4 * time.Millisecond)
	}
	h.observe(180 * time.Millisecond)
	h.observe(180 * time.Millisecond)
	mid := h.snapshot()
	tests := []struct {
		name   string
		q      float64
		lo, hi float64
	}{
		{"p50 in the 2-5 ms bucket", 0.50, 2, 5},
		{"p99 in the 150-200 ms bucket", 0.99, 150, 200},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := quantile(before, mid, tc.q); got < tc.lo || got > tc.hi || math.IsNaN(got) {
				t.Errorf("quantile(%v) = %v, want in [%v, %v]", tc.q, got, tc.lo, tc.hi)
			}
		})
	}
	// Only the interval counts: a later interval of 1 s pushes ignores the
	// earlier fast ones, and an overflow reads as the last bound.
	h.observe(time.Second)
	h.observe(time.Minute)
	if got := quantile(mid, h.snapshot(), 0.5); got < 750 || got > 1000 {
		t.Errorf("second interval p50 = %v, want in [750, 1000]", got)
	}
	if got := quantile(mid, h.snapshot(), 1); got != 10000 {
		t.Errorf("overflow p100 = %v, want 10000", got)
	}
}
