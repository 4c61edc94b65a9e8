package role

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/liveroom/liveroom/internal/admin"
	"github.com/liveroom/liveroom/internal/dispatch"
	"github.com/liveroom/liveroom/internal/protocol"
	"github.com/liveroom/liveroom/internal/testutil"
)

// Every component and Host a test starts is closed by it: goleak proves
// that Close waits for every goroutine they started.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func get(t *testing.T, url, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestOperatorViews: dispatch's /v1/gateways and /metrics are operator
// views. On the public address they need an admin token; with an internal
// address they are served there, without one, and not on the public one.
func TestOperatorViews(t *testing.T) {
	_, nc, js := testutil.StartBackbone(t)
	for _, internal := range []bool{false, true} {
		name := "public address, admin token"
		if internal {
			name = "internal address"
		}
		t.Run(name, func(t *testing.T) {
			d := Deps{NC: nc, JS: js, Verifier: testutil.Verifier(t), Logger: testutil.Logger()}
			disp, err := NewDispatch(d, dispatch.Config{}, nil)
			if err != nil {
				t.Fatal(err)
			}
			ln, err := ListenHTTP("127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			cfg := HostConfig{Listener: ln, Operator: adminConfig(d), Logger: d.Logger}
			if internal {
				cfg.InternalAddr = "127.0.0.1:0"
			}
			h, err := StartHost(context.Background(), cfg, disp)
			if err != nil {
				t.Fatal(err)
			}
			defer h.Close()
			public := "http://" + ln.Addr().String()
			admin := testutil.Token(t, "boss", protocol.RoleAdmin)
			viewer := testutil.Token(t, "v", protocol.RoleViewer)
			for _, path := range []string{"/v1/gateways", "/metrics"} {
				if internal {
					if st, _ := get(t, h.InternalURL()+path, ""); st != http.StatusOK {
						t.Fatalf("internal %s: %d", path, st)
					}
					if st, _ := get(t, public+path, admin); st != http.StatusNotFound {
						t.Fatalf("public %s with an internal address: %d, want 404", path, st)
					}
					continue
				}
				if st, _ := get(t, public+path, ""); st != http.StatusUnauthorized {
					t.Fatalf("%s without a token: %d, want 401", path, st)
				}
				if st, _ := get(t, public+path, viewer); st != http.StatusForbidden {
					t.Fatalf("%s with a viewer token: %d, want 403", path, st)
				}
				if st, body := get(t, public+path, admin); st != http.StatusOK {
					t.Fatalf("%s with an admin token: %d %s", path, st, body)
				}
			}
			metricsURL := public + "/metrics"
			if internal {
				metricsURL = h.InternalURL() + "/metrics"
			}
			if _, body := get(t, metricsURL, admin); !strings.Contains(body, "liveroom_dispatch_") {
				t.Fatal("/metrics has no dispatch metric: the component's Register did not reach the Host's registry")
			}
		})
	}
}

// sender is a component that only serves the send path.
type sender struct{ closed bool }

func (s *sender) Start(context.Context) error { return nil }
func (s *sender) Mount(m *Mount) {
	m.Send = http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})
}
func (s *sender) Register(prometheus.Registerer) error { return nil }
func (s *sender) Close() error                         { s.closed = true; return nil }

// TestTwoComponentsServingOneHandler: a process whose components both set
// the same single handler fails to start and closes what it started.
func TestTwoComponentsServingOneHandler(t *testing.T) {
	a, b := &sender{}, &sender{}
	ln, err := ListenHTTP("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, err = StartHost(context.Background(), HostConfig{Listener: ln, Logger: testutil.Logger()}, a, b)
	if err == nil || !strings.Contains(err.Error(), "two components serve the send") {
		t.Fatalf("got %v, want the send path served twice", err)
	}
	if !a.closed || !b.closed {
		t.Fatal("a started component was not closed")
	}
	// The listener was closed with the rest.
	if _, err := ln.Accept(); err == nil {
		t.Fatal("the listener is still open")
	}
}

func adminConfig(d Deps) admin.OperatorConfig { return admin.OperatorConfig{Verifier: d.Verifier} }
