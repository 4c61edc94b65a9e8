package gateway

import (
	"bytes"
	"fmt"
	"sort"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/liveroom/liveroom/internal/metrics"
)

// Register exposes the gateway's counters to reg under liveroom_gateway_*.
// Counters are read from Stats at scrape time, so the push path pays
// nothing for them; only the push-delay histogram is observed on the path,
// once per message and room (never per viewer).
func (s *Server) Register(reg prometheus.Registerer) error {
	st := &s.stats
	counter := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "liveroom_gateway_" + name, Help: help}, f)
	}
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "liveroom_gateway_" + name, Help: help}, f)
	}
	load := func(v interface{ Load() int64 }) func() float64 { return func() float64 { return float64(v.Load()) } }
	cs := []prometheus.Collector{
		gauge("connections", "Open viewer connections.", load(&st.Conns)),
		gauge("rooms", "Rooms with at least one local viewer or lingering subscriptions.", func() float64 { return float64(len(s.hub.allRooms(nil))) }),
		gauge("draining", "1 while the gateway drains.", func() float64 {
			if s.State() == "draining" {
				return 1
			}
			return 0
		}),
		counter("connections_accepted_total", "Viewer connections accepted.", load(&st.ConnsTotal)),
		counter("upgrades_rejected_total", "WebSocket upgrades refused (bad request, auth, capacity, draining).", load(&st.Rejected)),
		counter("frames_encoded_total", "Batch frames encoded (once per room and window).", load(&st.FramesEncoded)),
		counter("frames_written_total", "Frames written or queued to viewers.", load(&st.FramesOut)),
		counter("messages_delivered_total", "Messages in the frames written to viewers.", load(&st.MsgsOut)),
		counter("bytes_written_total", "Bytes written or queued to viewers, as written (compressed or not).", load(&st.BytesOut)),
		counter("frames_compressed_total", "Batch frames compressed (once per room and window, when large enough).", load(&st.FramesDeflated)),
		counter("frames_written_compressed_total", "Of the frames written, those written in their compressed form.", load(&st.FramesCompressed)),
		counter("accept_errors_total", "Failed accepts (EMFILE and the like), each followed by a backoff.", load(&st.AcceptErrors)),
		counter("catchup_messages_total", "Reliable messages sent to reconnecting viewers to catch up (since=).", load(&st.Replayed)),
		counter("catchup_messages_from_jetstream_total", "Of the catch-up messages, those read from JetStream rather than memory.", load(&st.ReplayedFromJS)),
		counter("reliable_gaps_total", "Rooms found behind the reliable stream (a gap in the republished sequence, or a check), then repaired.", load(&st.ReliableGaps)),
		counter("reliable_repaired_total", "Reliable messages read by repairs with Direct Get.", load(&st.ReliableRepaired)),
		counter("reliable_repair_requests_total", "Direct Get requests of repairs.", load(&st.RepairRequests)),
		counter("reliable_repair_errors_total", "Direct Get requests of repairs that failed (retried).", load(&st.RepairErrors)),
		counter("heartbeats_total", "Heartbeat frames written to viewers of quiet rooms (one per viewer).", load(&st.Heartbeats)),
		counter("reliable_checks_total", "Checks of every hosted room against the reliable stream.", load(&st.Checks)),
		counter("reliable_check_requests_total", "Multi-last Direct Get requests of checks (one per 256 rooms).", load(&st.CheckRequests)),
		counter("room_start_batches_total", "Batches of rooms started together.", load(&st.StartBatches)),
		counter("room_start_requests_total", "Direct Get requests of room starts (two per batch).", load(&st.StartRequests)),
		counter("history_requests_total", "Direct Get requests reading started rooms' recent danmaku and gifts (one multi-last per batch, then one or a few per room with stored messages).", load(&st.HistoryRequests)),
		counter("history_reads_skipped_total", "History reads of started rooms skipped because the gateway's read rate (100/s) was spent; those rooms start with their last gift and danmaku.", load(&st.HistorySkipped)),
		counter("history_frames_total", "History frames sent to viewers joining without since=.", load(&st.HistoryFrames)),
		counter("drain_notified_total", "Viewers sent a reconnect notice by a drain.", load(&st.DrainNotified)),
		counter("drain_closed_total", "Viewers a drain closed because they had not left.", load(&st.DrainClosed)),
	}
	in := prometheus.NewDesc("liveroom_gateway_messages_received_total", "Messages received from NATS, by class.", []string{"class"}, nil)
	dropped := prometheus.NewDesc("liveroom_gateway_messages_dropped_total", "Messages not delivered to a viewer, by reason.", []string{"reason"}, nil)
	closed := prometheus.NewDesc("liveroom_gateway_connections_closed_total", "Connections the gateway closed, by reason.", []string{"reason"}, nil)
	cs = append(cs, metrics.Func([]*prometheus.Desc{in, dropped, closed}, func(ch chan<- prometheus.Metric) {
		for _, x := range []struct {
			d     *prometheus.Desc
			label string
			v     int64
		}{
			{in, "live", st.LiveIn.Load()}, {in, "reliable", st.ReliableIn.Load()}, {in, "presence", st.PresenceIn.Load()},
			{dropped, "sampled", st.DroppedSampled.Load()}, {dropped, "queue_full", st.DroppedQueueFull.Load()},
			{closed, "slow_consumer", st.ClosedSlow.Load()}, {closed, "idle", st.ClosedIdle.Load()},
			{closed, "stalled", st.ClosedStalled.Load()}, {closed, "bad_frame", st.ClosedBadFrame.Load()},
		} {
			ch <- prometheus.MustNewConstMetric(x.d, prometheus.CounterValue, float64(x.v), x.label)
		}
	}))
	// The largest rooms by local viewers, as ranks: a room id is never a
	// label (unbounded cardinality, and ids may be private).
	top := prometheus.NewDesc("liveroom_gateway_top_room_viewers", "Local viewers of the gateway's largest rooms, by rank (1 = largest).", []string{"rank"}, nil)
	cs = append(cs, metrics.Func([]*prometheus.Desc{top}, func(ch chan<- prometheus.Metric) {
		var sizes []int
		for _, r := range s.hub.allRooms(nil) {
			r.mu.Lock()
			sizes = append(sizes, len(r.members))
			r.mu.Unlock()
		}
		sort.Sort(sort.Reverse(sort.IntSlice(sizes)))
		for i := 0; i < len(sizes) && i < 10; i++ {
			ch <- prometheus.MustNewConstMetric(top, prometheus.GaugeValue, float64(sizes[i]), strconv.Itoa(i+1))
		}
	}))
	delay := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "liveroom_gateway_push_delay_seconds",
		Help:    "Time from the uplink accepting a message to the gateway writing its frame, by class.",
		Buckets: []float64{.005, .01, .025, .05, .075, .1, .15, .25, .5, 1, 2.5, 5, 10},
	}, []string{"class"})
	cs = append(cs, delay)
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("cannot register gateway metrics: %w", err)
		}
	}
	s.delayLive = delay.WithLabelValues("live")
	s.delayReliable = delay.WithLabelValues("reliable")
	s.delayAggregate = delay.WithLabelValues("aggregate")
	return nil
}

var tsKey = []byte(`"ts":`)

// messageTS reads the "ts" field (Unix ms) of an encoded message without
// decoding it; 0 if absent.
func messageTS(b []byte) int64 {
	i := bytes.Index(b, tsKey)
	if i < 0 {
		return 0
	}
	var v int64
	for _, c := range b[i+len(tsKey):] {
		if c < '0' || c > '9' {
			break
		}
		v = v*10 + int64(c-'0')
	}
	return v
}
