package kubernetes

import (
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/liveroom/liveroom/internal/autoscale"
	"github.com/liveroom/liveroom/internal/bus"
	"github.com/liveroom/liveroom/internal/dispatch"
	"github.com/liveroom/liveroom/internal/gateway"
	"github.com/liveroom/liveroom/internal/testutil"
	"github.com/liveroom/liveroom/internal/uplink"
)

// descNames is a Registerer that records the names of the metrics each
// collector describes, whether or not they have a value yet.
type descNames map[string]bool

var fqName = regexp.MustCompile(`fqName: "([^"]+)"`)

func (n descNames) Register(c prometheus.Collector) error {
	ch := make(chan *prometheus.Desc)
	go func() { c.Describe(ch); close(ch) }()
	for d := range ch {
		if m := fqName.FindStringSubmatch(d.String()); m != nil {
			n[m[1]] = true
		}
	}
	return nil
}

func (n descNames) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		_ = n.Register(c)
	}
}

func (n descNames) Unregister(prometheus.Collector) bool { return true }

// exportedMetrics lists every liveroom_* metric the roles register.
func exportedMetrics(t *testing.T) descNames {
	t.Helper()
	e := testutil.StartNATS(t)
	nc, err := bus.Connect(testutil.NATSURL(t, e, bus.RoleAll, ""), "dashboard-test", testutil.Logger())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	v := testutil.Verifier(t)
	names := descNames{}
	g, err := gateway.New(gateway.Config{NC: nc, JS: js, Verifier: v, PublicURL: "ws://127.0.0.1:1/v1/ws", Logger: testutil.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	u, err := uplink.New(uplink.Config{NC: nc, JS: js, Verifier: v, Logger: testutil.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	d, err := dispatch.New(dispatch.Config{NC: nc, Logger: testutil.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	s, err := autoscale.New(autoscale.Config{NC: nc, Actuator: &autoscale.DryRun{}, Logger: testutil.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []interface {
		Register(prometheus.Registerer) error
	}{g, u, d, s} {
		if err := r.Register(names); err != nil {
			t.Fatal(err)
		}
	}
	return names
}

// TestDashboardQueriesExportedMetrics: the Grafana dashboard parses, and
// every liveroom_* metric its queries use is one a role exports.
func TestDashboardQueriesExportedMetrics(t *testing.T) {
	b, err := os.ReadFile("grafana/liveroom.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Title  string `json:"title"`
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	if err := dec.Decode(&dash); err != nil {
		t.Fatalf("dashboard: %v", err)
	}
	names := exportedMetrics(t)
	used := regexp.MustCompile(`liveroom_[a-z_]+`)
	n := 0
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			for _, m := range used.FindAllString(tg.Expr, -1) {
				n++
				base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(m, "_bucket"), "_sum"), "_count")
				if !names[m] && !names[base] {
					t.Errorf("panel %q queries %s, which no role exports", p.Title, m)
				}
			}
		}
	}
	t.Logf("%d panels, %d metric references, all exported", len(dash.Panels), n)
}
