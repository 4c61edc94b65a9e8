package gateway

import (
	"sync/atomic"
	"time"
)

// delayBoundsMS are the upper bounds (ms) of delayHist's buckets; the last
// bucket holds everything above the last bound. Finer than the Prometheus
// histogram's buckets so that a beat's p50 and p99 are read to a few ms in
// the range that matters (tens of ms) without keeping samples.
var delayBoundsMS = [...]float64{1, 2, 5, 10, 15, 20, 30, 40, 50, 60, 75, 100, 125, 150, 200, 250, 300, 400, 500, 750, 1000, 1500, 2000, 3000, 5000, 10000}

// delayHist counts push delays (all classes) in fixed buckets. It is
// observed once per message and room in the flush (never per viewer) and
// read by the beat loop, which turns the difference between two reads into
// the percentiles of the last beat interval. Safe for concurrent use.
type delayHist struct {
	n [len(delayBoundsMS) + 1]atomic.Int64
}

// delayCounts is a copy of delayHist's bucket counts.
type delayCounts [len(delayBoundsMS) + 1]int64

func (h *delayHist) observe(d time.Duration) {
	ms := float64(d) / float64(time.Millisecond)
	i := 0
	for i < len(delayBoundsMS) && ms > delayBoundsMS[i] {
		i++
	}
	h.n[i].Add(1)
}

func (h *delayHist) snapshot() delayCounts {
	var c delayCounts
	for i := range h.n {
		c[i] = h.n[i].Load()
	}
	return c
}

// quantile returns the q-quantile (0<q<=1) in ms of the delays counted
// between prev and cur, interpolated linearly inside its bucket, and 0 when
// nothing was counted. A delay in the overflow bucket reads as the last
// bound.
func quantile(prev, cur delayCounts, q float64) float64 {
	var total int64
	for i := range cur {
		total += cur[i] - prev[i]
	}
	if total <= 0 {
		return 0
	}
	rank := q * float64(total)
	var seen int64
	for i := range cur {
		n := cur[i] - prev[i]
		if n <= 0 {
			continue
		}
		if float64(seen+n) >= rank {
			if i == len(delayBoundsMS) {
				return delayBoundsMS[len(delayBoundsMS)-1]
			}
			lo := 0.0
			if i > 0 {
				lo = delayBoundsMS[i-1]
			}
			frac := (rank - float64(seen)) / float64(n)
			return lo + frac*(delayBoundsMS[i]-lo)
		}
		seen += n
	}
	return delayBoundsMS[len(delayBoundsMS)-1]
}
