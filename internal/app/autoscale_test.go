package app

import (
	"context"
	"encoding/json"
	"io"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/liveroom/liveroom/client"
	"github.com/liveroom/liveroom/internal/autoscale"
	"github.com/liveroom/liveroom/internal/protocol"
	"github.com/liveroom/liveroom/internal/testutil"
)

// TestNodeWithAutoscale runs a node whose gateways are child processes of
// the real binary: Start returns once the first one beats, viewers reach
// it through dispatch, the node's own /v1/ws points to dispatch, the
// decisions and metrics are served, and Close stops the children.
func TestNodeWithAutoscale(t *testing.T) {
	n, err := New(Config{Addr: "127.0.0.1:0", DataDir: t.TempDir(), NATSPort: -1, JWTSecret: testutil.Secret, Logger: testutil.Logger(),
		Autoscale: AutoscaleConfig{
			Enabled: true, Binary: testutil.Binary(t), Interval: 100 * time.Millisecond,
			Policy:      autoscale.Policy{Min: 1, Max: 2, Capacity: autoscale.Capacity{Conns: 500}},
			GatewayArgs: []string{"--drain-delay=100ms", "--drain-window=200ms"},
		}})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	closed := false
	defer func() {
		if !closed {
			_ = n.Close()
		}
	}()
	if n.Gateway() != nil || n.Scaler() == nil {
		t.Fatal("an autoscaled node has no gateway of its own and a scaler")
	}
	ms, _ := n.procs.Members(context.Background())
	if len(ms) != 1 {
		t.Fatalf("members %+v, want the minimum of 1", ms)
	}
	pid := n.procs.PID(ms[0].ID)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Connect(ctx, client.Config{BaseURL: n.URL(), Room: "demo", Token: testutil.Token(t, "v1", protocol.RoleViewer)})
	if err != nil {
		t.Fatal(err)
	}
	if c.Gateway() != ms[0].ID {
		t.Errorf("viewer on %q, want the child %q", c.Gateway(), ms[0].ID)
	}
	_ = c.Close()

	get := func(path string) (int, string) {
		resp, err := adminGet(t, n.URL()+path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/v1/ws?room=demo"); code != 404 || !strings.Contains(body, "/v1/dispatch") {
		t.Errorf("GET /v1/ws on the node: %d %s", code, body)
	}
	_, body := get(autoscale.DecisionsPath)
	var ans autoscale.DecisionsAnswer
	if err := json.Unmarshal([]byte(body), &ans); err != nil || len(ans.Decisions) == 0 ||
		ans.Decisions[len(ans.Decisions)-1].Action != autoscale.ActionScaleOut || ans.Policy.Actuator != "process" {
		t.Errorf("decisions %s", body)
	}
	testutil.Eventually(t, 5*time.Second, "the autoscaler's metrics count the child", func() bool {
		_, m := get("/metrics")
		return strings.Contains(m, "liveroom_autoscale_current_gateways 1") &&
			strings.Contains(m, `liveroom_autoscale_decisions_total{action="scale_out",reason="min"} 1`)
	})

	_ = n.Close()
	closed = true
	if syscall.Kill(pid, 0) == nil {
		t.Errorf("child %d still runs after Close", pid)
	}
}
