package faulttest

import (
	"testing"
	"time"
)

// TestScaleOutFillsTheNewGateway: two gateways hold N viewers each, a third
// starts, and the next 1.5 N viewers arrive through dispatch in one
// concurrent burst; afterwards every gateway is within ±15 % of the mean.
func TestScaleOutFillsTheNewGateway(t *testing.T) {
	if raceEnabled {
		t.Skip("runs without -race (make test runs it)")
	}
	const n = 600
	c := startCluster(t, 1, 1, 1)
	first := connectViewers(t, c, n, 20)
	c.addGateway(t)
	second := connectViewersFrom(t, c, n, n, 20)
	// Wait for a beat so the two gateways hold N each.
	time.Sleep(1500 * time.Millisecond)
	c.addGateway(t)
	burst := connectViewersFrom(t, c, 2*n, n*3/2, 20)

	per := map[string]int{}
	for _, group := range [][]*viewer{first, second, burst} {
		for _, v := range group {
			v.mu.Lock()
			per[v.conn.Gateway()]++
			v.mu.Unlock()
		}
	}
	mean := float64(n*2+n*3/2) / 3
	t.Logf("viewers per gateway after the burst: %v (mean %.0f)", per, mean)
	if len(per) != 3 {
		t.Fatalf("viewers on %d gateways, want 3", len(per))
	}
	for gw, k := range per {
		if dev := (float64(k) - mean) / mean; dev > 0.15 || dev < -0.15 {
			t.Errorf("gateway %s holds %d viewers, %.0f%% off the mean %.0f", gw, k, dev*100, mean)
		}
	}
}
