package dispatch

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/liveroom/liveroom/internal/metrics"

	"github.com/liveroom/liveroom/internal/bus"
)

// Register exposes dispatch decisions and the fleet it sees to reg under
// liveroom_dispatch_*.
func (s *Server) Register(reg prometheus.Registerer) error {
	decisions := prometheus.NewDesc("liveroom_dispatch_decisions_total", "Dispatch answers, by result (offered: gateways listed; none: no gateway available).", []string{"result"}, nil)
	gateways := prometheus.NewDesc("liveroom_dispatch_gateways", "Gateways with a fresh beat, by state.", []string{"state"}, nil)
	conns := prometheus.NewDesc("liveroom_dispatch_fleet_connections", "Connections across the gateways with a fresh beat.", nil, nil)
	badBeats := prometheus.NewDesc("liveroom_dispatch_beats_refused_total", "Beats refused because they do not have the documented shape (id, URL, numbers).", nil, nil)
	return reg.Register(metrics.Func([]*prometheus.Desc{decisions, gateways, conns, badBeats}, func(ch chan<- prometheus.Metric) {
		ch <- prometheus.MustNewConstMetric(badBeats, prometheus.CounterValue, float64(s.badBeats.Load()))
		ch <- prometheus.MustNewConstMetric(decisions, prometheus.CounterValue, float64(s.answered.Load()), "offered")
		ch <- prometheus.MustNewConstMetric(decisions, prometheus.CounterValue, float64(s.refused.Load()), "none")
		byState := map[string]int{bus.StateActive: 0, bus.StateDraining: 0}
		total := 0
		for _, b := range s.Gateways() {
			if _, ok := byState[b.State]; ok {
				byState[b.State]++
			}
			total += b.Conns
		}
		for st, n := range byState {
			ch <- prometheus.MustNewConstMetric(gateways, prometheus.GaugeValue, float64(n), st)
		}
		ch <- prometheus.MustNewConstMetric(conns, prometheus.GaugeValue, float64(total))
	}))
}
