package uplink

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/liveroom/liveroom/internal/metrics"
)

// Register exposes the uplink's counters and send latency to reg under
// liveroom_uplink_*. Counters are read from Stats at scrape time.
func (s *Server) Register(reg prometheus.Registerer) error {
	accepted := prometheus.NewDesc("liveroom_uplink_sends_accepted_total", "Sends answered 202, by class.", []string{"class"}, nil)
	rejected := prometheus.NewDesc("liveroom_uplink_sends_rejected_total", "Sends answered with an error, by error code.", []string{"code"}, nil)
	dups := prometheus.NewDesc("liveroom_uplink_gift_duplicates_total", "Gift sends JetStream recognised as retries of a stored gift.", nil, nil)
	likes := prometheus.NewDesc("liveroom_uplink_likes_total", "Likes received (the sum of like counts).", nil, nil)
	likeMsgs := prometheus.NewDesc("liveroom_uplink_like_aggregates_published_total", "Like aggregates published to rooms.", nil, nil)
	likeErrs := prometheus.NewDesc("liveroom_uplink_like_flush_errors_total", "Like flushes that could not store their totals (kept for the next window).", nil, nil)
	pending := prometheus.NewDesc("liveroom_uplink_likes_pending", "Likes waiting for the next aggregate.", nil, nil)
	c := metrics.Func([]*prometheus.Desc{accepted, rejected, dups, likes, likeMsgs, likeErrs, pending}, func(ch chan<- prometheus.Metric) {
		st := s.Stats()
		ch <- prometheus.MustNewConstMetric(accepted, prometheus.CounterValue, float64(st.Danmaku), "live")
		ch <- prometheus.MustNewConstMetric(accepted, prometheus.CounterValue, float64(st.Gifts), "reliable")
		ch <- prometheus.MustNewConstMetric(accepted, prometheus.CounterValue, float64(st.LikeRequests), "aggregate")
		for code, n := range st.Rejected {
			ch <- prometheus.MustNewConstMetric(rejected, prometheus.CounterValue, float64(n), code)
		}
		ch <- prometheus.MustNewConstMetric(dups, prometheus.CounterValue, float64(st.GiftDuplicates))
		ch <- prometheus.MustNewConstMetric(likes, prometheus.CounterValue, float64(st.Likes))
		ch <- prometheus.MustNewConstMetric(likeMsgs, prometheus.CounterValue, float64(st.LikeMessages))
		ch <- prometheus.MustNewConstMetric(likeErrs, prometheus.CounterValue, float64(st.LikeFlushErrors))
		ch <- prometheus.MustNewConstMetric(pending, prometheus.GaugeValue, float64(st.LikesPending))
	})
	lat := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "liveroom_uplink_send_duration_seconds",
		Help:    "Time to answer a send, by class (gifts include the JetStream store).",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .02, .05, .1, .25, .5, 1, 2.5, 5},
	}, []string{"class"})
	for _, col := range []prometheus.Collector{c, lat, s.fleetCollector()} {
		if err := reg.Register(col); err != nil {
			return err
		}
	}
	s.latency = map[string]prometheus.Observer{
		"danmaku": lat.WithLabelValues("live"),
		"gift":    lat.WithLabelValues("reliable"),
		"like":    lat.WithLabelValues("aggregate"),
	}
	return nil
}

// observe records the latency of a send of type typ that started at start.
func (s *Server) observe(typ string, start time.Time) {
	if o := s.latency[typ]; o != nil {
		o.Observe(time.Since(start).Seconds())
	}
}
