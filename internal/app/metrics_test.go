package app

import (
	"context"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/liveroom/liveroom/client"
	"github.com/liveroom/liveroom/internal/protocol"
	"github.com/liveroom/liveroom/internal/testutil"
)

// TestMetricsExposition scrapes /metrics after some traffic and checks it
// with Prometheus' own parser: it parses, names follow the conventions,
// no label carries a room or user id, and the figures moved.
func TestMetricsExposition(t *testing.T) {
	n := startNode(t, testutil.Secret)
	rec := viewer(t, n, "m1", "watcher")
	s := &client.Sender{BaseURL: n.URL(), Token: testutil.Token(t, "talker", protocol.RoleViewer)}
	ctx := context.Background()
	if _, err := s.Danmaku(ctx, "m1", "hello"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Gift(ctx, "m1", "rose", 1, "k1"); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "delivery", func() bool {
		return rec.count(protocol.TypeGift, "") == 1 && rec.count(protocol.TypeDanmaku, "hello") == 1
	})

	resp, err := adminGet(t, n.URL()+"/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("exposition does not parse: %v", err)
	}
	want := map[string]dto.MetricType{
		"liveroom_gateway_connections":                  dto.MetricType_GAUGE,
		"liveroom_gateway_messages_delivered_total":     dto.MetricType_COUNTER,
		"liveroom_gateway_messages_dropped_total":       dto.MetricType_COUNTER,
		"liveroom_gateway_push_delay_seconds":           dto.MetricType_HISTOGRAM,
		"liveroom_gateway_top_room_viewers":             dto.MetricType_GAUGE,
		"liveroom_uplink_sends_accepted_total":          dto.MetricType_COUNTER,
		"liveroom_uplink_send_duration_seconds":         dto.MetricType_HISTOGRAM,
		"liveroom_uplink_fleet_uplinks":                 dto.MetricType_GAUGE,
		"liveroom_uplink_fleet_reports_total":           dto.MetricType_COUNTER,
		"liveroom_dispatch_decisions_total":             dto.MetricType_COUNTER,
		"liveroom_machine_load_average":                 dto.MetricType_GAUGE,
		"liveroom_machine_network_transmit_bytes_total": dto.MetricType_COUNTER,
		"process_resident_memory_bytes":                 dto.MetricType_GAUGE,
		"process_open_fds":                              dto.MetricType_GAUGE,
		"go_goroutines":                                 dto.MetricType_GAUGE,
	}
	for name, typ := range want {
		f, ok := fams[name]
		if !ok {
			t.Errorf("missing %s", name)
			continue
		}
		if f.GetType() != typ {
			t.Errorf("%s is %v, want %v", name, f.GetType(), typ)
		}
	}
	for name, f := range fams {
		if !strings.HasPrefix(name, "liveroom_") {
			continue
		}
		if f.GetType() == dto.MetricType_COUNTER && !strings.HasSuffix(name, "_total") {
			t.Errorf("counter %s does not end in _total", name)
		}
		if f.GetType() == dto.MetricType_HISTOGRAM && !strings.HasSuffix(name, "_seconds") {
			t.Errorf("histogram %s is not in seconds", name)
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "room" || l.GetName() == "user" || strings.Contains(l.GetValue(), "m1") {
					t.Errorf("%s carries a room or user as a label: %s=%s", name, l.GetName(), l.GetValue())
				}
			}
		}
	}
	value := func(name, label, lv string) float64 {
		for _, m := range fams[name].GetMetric() {
			ok := label == ""
			for _, l := range m.GetLabel() {
				ok = ok || (l.GetName() == label && l.GetValue() == lv)
			}
			if !ok {
				continue
			}
			switch {
			case m.Counter != nil:
				return m.GetCounter().GetValue()
			case m.Gauge != nil:
				return m.GetGauge().GetValue()
			case m.Histogram != nil:
				return float64(m.GetHistogram().GetSampleCount())
			}
		}
		return -1
	}
	if v := value("liveroom_gateway_connections", "", ""); v != 1 {
		t.Errorf("connections %v, want 1", v)
	}
	if v := value("liveroom_uplink_sends_accepted_total", "class", "reliable"); v != 1 {
		t.Errorf("reliable sends %v, want 1", v)
	}
	if v := value("liveroom_gateway_push_delay_seconds", "class", "reliable"); v < 1 {
		t.Errorf("reliable push delays observed %v, want ≥ 1", v)
	}
	if v := value("liveroom_gateway_top_room_viewers", "rank", "1"); v != 1 {
		t.Errorf("top room viewers %v, want 1", v)
	}
}
