package dispatch

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/liveroom/liveroom/internal/metrics"

	"github.com/liveroom/liveroom/internal/bus"
)

// Register exposes dispatch decisions and the fleet it sees to reg under
// liveroom_dispatch_*.
func (s *Server) Register(reg prometheus.Registerer) error {
	decisions := prometheus.NewDesc("liveroom_dispatch_decisions_total", "Dispatch answers, by result (offered: gateways listed; wait: every gateway full, ask again; none: no gateway at all).", []string{"result"}, nil)
	requests := prometheus.NewDesc("liveroom_dispatch_requests_total", "Dispatch requests, by who asked (join: a new viewer; retry: asking again after a wait or failure; move: a viewer with since= moving between gateways).", []string{"kind"}, nil)
	gateways := prometheus.NewDesc("liveroom_dispatch_gateways", "Gateways with a fresh beat, by state.", []string{"state"}, nil)
	conns := prometheus.NewDesc("liveroom_dispatch_fleet_connections", "Connections across the gateways with a fresh beat.", nil, nil)
	badBeats := prometheus.NewDesc("liveroom_dispatch_beats_refused_total", "Beats refused because they do not have the documented shape (id, URL, numbers).", nil, nil)
	staleView := prometheus.NewDesc("liveroom_dispatch_stale_view", "1 while dispatch answers from its last good view of the fleet (its NATS connection does not answer).", nil, nil)
	return reg.Register(metrics.Func([]*prometheus.Desc{decisions, requests, gateways, conns, badBeats, staleView}, func(ch chan<- prometheus.Metric) {
		stale := 0.0
		if s.StaleView() {
			stale = 1
		}
		ch <- prometheus.MustNewConstMetric(staleView, prometheus.GaugeValue, stale)
		ch <- prometheus.MustNewConstMetric(badBeats, prometheus.CounterValue, float64(s.view.Refused()))
		ch <- prometheus.MustNewConstMetric(decisions, prometheus.CounterValue, float64(s.answered.Load()), "offered")
		ch <- prometheus.MustNewConstMetric(decisions, prometheus.CounterValue, float64(s.refused.Load()), "none")
		ch <- prometheus.MustNewConstMetric(decisions, prometheus.CounterValue, float64(s.waited.Load()), "wait")
		for k, name := range []string{"join", "retry", "move"} {
			ch <- prometheus.MustNewConstMetric(requests, prometheus.CounterValue, float64(s.requests[k].Load()), name)
		}
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
