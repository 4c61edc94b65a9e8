package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/liveroom/liveroom/internal/bus"
	"github.com/liveroom/liveroom/internal/protocol"
	"github.com/liveroom/liveroom/internal/testutil"
	"github.com/liveroom/liveroom/internal/webhook"
)

// TestArchiveRole runs `liveroom archive` against a NATS server: it serves
// live start and the session list, and forwards live_start to a webhook.
func TestArchiveRole(t *testing.T) {
	e, _, _ := testutil.StartBackbone(t)
	t.Setenv("LIVEROOM_JWT_SECRET", testutil.Secret)
	t.Setenv("LIVEROOM_WEBHOOK_SECRET", "hook-secret")
	var hooks atomic.Int32
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if webhook.VerifyRequest("hook-secret", r.Header, b, time.Now(), 0) == nil && r.Header.Get(webhook.HeaderEvent) == "live_start" {
			hooks.Add(1)
		}
	}))
	defer hs.Close()
	addr := testutil.Addr(testutil.FreePort(t))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var stderr bytes.Buffer
	go func() {
		done <- run(ctx, []string{"archive", "--nats-url", testutil.NATSURL(t, e, bus.RoleArchive, ""), "--addr", addr, "--data-dir", t.TempDir(),
			"--webhook-url", hs.URL, "--webhook-events", "live_start", "--log-level", "error"}, io.Discard, &stderr)
	}()
	base := "http://" + addr
	testutil.WaitHTTP(t, base+"/healthz", 20*time.Second)
	if st := testutil.APICall(t, http.MethodPost, base+"/v1/rooms/r1/live/start", testutil.AnchorToken(t, "star", "r1"), "", nil); st != http.StatusCreated {
		t.Fatalf("live start: %d", st)
	}
	resp, err := http.Get(base + "/v1/rooms/r1/sessions")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), `"live":true`) || !strings.Contains(string(b), `"messages":`) {
		t.Fatalf("sessions: %d %s", resp.StatusCode, b)
	}
	testutil.Eventually(t, 10*time.Second, "live_start webhook", func() bool { return hooks.Load() == 1 })
	// The archive holds the live_start notice; the webhook delivered it.
	want := []string{"liveroom_archive_records_total 1", "liveroom_archive_lost_total 0", `liveroom_webhook_deliveries_total{result="delivered"} 1`}
	// /metrics is an operator view: admin tokens only on the public address.
	if st := testutil.APICall(t, http.MethodGet, base+"/metrics", "", "", nil); st != http.StatusUnauthorized {
		t.Fatalf("/metrics without a token: %d", st)
	}
	if st := testutil.APICall(t, http.MethodGet, base+"/metrics", testutil.Token(t, "v", protocol.RoleViewer), "", nil); st != http.StatusForbidden {
		t.Fatalf("/metrics with a viewer token: %d", st)
	}
	admin := testutil.Token(t, "ops", protocol.RoleAdmin)
	var metrics string
	testutil.Eventually(t, 10*time.Second, "metrics", func() bool {
		resp, err := testutil.AuthGet(base+"/metrics", admin)
		if err != nil {
			return false
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		metrics = string(b)
		for _, w := range want {
			if !strings.Contains(metrics, w) {
				return false
			}
		}
		return true
	})
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("archive role: %v\n%s", err, stderr.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("archive role did not stop")
	}

	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"archive", "-h"}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"usage: liveroom archive [flags]", "GET /v1/rooms/R/sessions/S/replay", "example:", "-webhooks", "-archive-retention"} {
		if !strings.Contains(errOut.String(), want) {
			t.Errorf("usage lacks %q", want)
		}
	}
}
