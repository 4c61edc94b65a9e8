package autoscale

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/liveroom/liveroom/internal/metrics"
)

type scalerMetrics struct {
	decisions      *prometheus.CounterVec
	actuatorErrors *prometheus.CounterVec
	removed        prometheus.Counter
	gauges         prometheus.Collector
}

var (
	descDesired   = prometheus.NewDesc("liveroom_autoscale_desired_gateways", "Gateways the latest decision wants, within min and max.", nil, nil)
	descCurrent   = prometheus.NewDesc("liveroom_autoscale_current_gateways", "Gateways counted as capacity: active and beating, or started and not beating yet.", nil, nil)
	descStable    = prometheus.NewDesc("liveroom_autoscale_stable_desired_gateways", "Highest desired count over the stabilisation window (scale-in waits until it is below current).", nil, nil)
	descRaw       = prometheus.NewDesc("liveroom_autoscale_needed_gateways", "Gateways the demand needs in each dimension of the capacity model, look-ahead included, before min and max.", []string{"dimension"}, nil)
	descByState   = prometheus.NewDesc("liveroom_autoscale_gateways", "Gateways by state: active, draining, starting (not beating yet), silent (stopped beating).", []string{"state"}, nil)
	descConns     = prometheus.NewDesc("liveroom_autoscale_demand_connections", "Viewer connections on the fleet (active, draining and recently silent gateways).", nil, nil)
	descCPU       = prometheus.NewDesc("liveroom_autoscale_demand_cpu_cores", "CPU the gateways use, in cores.", nil, nil)
	descBytes     = prometheus.NewDesc("liveroom_autoscale_demand_bytes_out_per_second", "Bytes per second the gateways write to viewers.", nil, nil)
	descMsgs      = prometheus.NewDesc("liveroom_autoscale_demand_messages_out_per_second", "Messages per second the gateways deliver to viewers.", nil, nil)
	descJoin      = prometheus.NewDesc("liveroom_autoscale_join_rate_per_second", "New viewers per second, the larger of the door's and the beats' (source label door, beats, used).", []string{"source"}, nil)
	descAhead     = prometheus.NewDesc("liveroom_autoscale_lookahead_connections", "Connections expected while a new gateway gets ready (join rate × (ready time + interval)), added to the demand.", nil, nil)
	descAnnounced = prometheus.NewDesc("liveroom_autoscale_announced_connections", "Connections the announced audiences in force still expect (added to the demand when above the look-ahead).", nil, nil)
	descReady     = prometheus.NewDesc("liveroom_autoscale_ready_seconds", "Time a new gateway needs to be ready: measured (longest of the last three starts), or the configured one until measured.", nil, nil)
	descWaits     = prometheus.NewDesc("liveroom_autoscale_door_waits_per_second", "Wait answers dispatch gave per second (every gateway full), over the last 5 s.", nil, nil)
	descSpare     = prometheus.NewDesc("liveroom_autoscale_spare_gateways", "Gateways of spare capacity kept beyond the need (the policy).", nil, nil)
	descCapacity  = prometheus.NewDesc("liveroom_autoscale_capacity", "Capacity model: one gateway's limit in each dimension (conns, cpu cores, bytes_out and msgs_out per second); 0 = not limited.", []string{"dimension"}, nil)
	descTarget    = prometheus.NewDesc("liveroom_autoscale_target_utilisation_ratio", "Share of a gateway's capacity the fleet is planned to use.", nil, nil)
	descBounds    = prometheus.NewDesc("liveroom_autoscale_bound_gateways", "Configured bounds of the gateway count.", []string{"bound"}, nil)
	descRemoving  = prometheus.NewDesc("liveroom_autoscale_scale_in_under_way", "1 while a gateway is being drained or removed.", nil, nil)
	gaugeDescList = []*prometheus.Desc{descDesired, descCurrent, descStable, descRaw, descByState, descConns, descCPU, descBytes,
		descMsgs, descJoin, descAhead, descAnnounced, descReady, descWaits, descSpare, descCapacity, descTarget, descBounds, descRemoving}
)

func newScalerMetrics(s *Scaler) *scalerMetrics {
	m := &scalerMetrics{
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "liveroom_autoscale_decisions_total",
			Help: "Decisions made (one per interval), by action (none, scale_out, scale_in) and reason.",
		}, []string{"action", "reason"}),
		actuatorErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "liveroom_autoscale_actuator_errors_total",
			Help: "Failed actuator or drain operations, by operation (members, add, drain, remove).",
		}, []string{"op"}),
		removed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "liveroom_autoscale_gateways_removed_total",
			Help: "Gateways drained and removed by scale-in.",
		}),
	}
	m.gauges = metrics.Func(gaugeDescList, func(ch chan<- prometheus.Metric) {
		s.mu.Lock()
		d, removing := s.latest, s.removing
		s.mu.Unlock()
		p := s.cfg.Policy
		g := func(desc *prometheus.Desc, v float64, labels ...string) {
			ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, v, labels...)
		}
		for _, dim := range Dims {
			g(descCapacity, p.Capacity.limit(dim), dim)
		}
		g(descTarget, p.Capacity.Target)
		g(descBounds, float64(p.Min), "min")
		g(descBounds, float64(p.Max), "max")
		g(descSpare, float64(p.Spare))
		r := 0.0
		if removing != "" {
			r = 1
		}
		g(descRemoving, r)
		if d.At.IsZero() {
			return
		}
		f := d.Figures
		g(descDesired, float64(d.Desired))
		g(descCurrent, float64(d.Current))
		g(descStable, float64(f.Stable))
		for _, dim := range Dims {
			g(descRaw, float64(f.Need[dim]), dim)
		}
		g(descByState, float64(f.Active), "active")
		g(descByState, float64(f.Draining), "draining")
		g(descByState, float64(f.Starting), "starting")
		g(descByState, float64(f.Silent), "silent")
		g(descConns, f.Demand.Conns)
		g(descCPU, f.Demand.CPU)
		g(descBytes, f.Demand.BytesOut)
		g(descMsgs, f.Demand.MsgsOut)
		g(descJoin, f.JoinRate, "used")
		g(descJoin, f.DoorRate, "door")
		g(descJoin, f.BeatRate, "beats")
		g(descAhead, f.Lookahead)
		g(descAnnounced, f.Announced)
		g(descReady, f.ReadyTime)
		g(descWaits, f.Waits)
	})
	return m
}

// Register exposes the autoscaler's metrics (liveroom_autoscale_*) to reg.
func (s *Scaler) Register(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{s.met.decisions, s.met.actuatorErrors, s.met.removed, s.met.gauges} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}
