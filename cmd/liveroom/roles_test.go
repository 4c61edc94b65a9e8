package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func TestRoleUsage(t *testing.T) {
	for _, tt := range []struct {
		role string
		want []string
	}{
		{"gateway", []string{"usage: liveroom gateway [flags]", "WebSockets (GET /v1/ws)", "example:\n  export LIVEROOM_JWT_SECRET", "liveroom gateway --nats-url", "flags:", "-merge-window"}},
		{"uplink", []string{"usage: liveroom uplink [flags]", "POST /v1/rooms/{room}/messages", "example:", "liveroom uplink --nats-url", "flags:", "-user-rate"}},
		{"dispatch", []string{"usage: liveroom dispatch [flags]", "GET /v1/dispatch?room=R", "example:", "liveroom dispatch --nats-url", "flags:", "-replicas"}},
	} {
		t.Run(tt.role, func(t *testing.T) {
			var out, errOut bytes.Buffer
			if err := run(context.Background(), []string{tt.role, "-h"}, &out, &errOut); err != nil {
				t.Fatal(err)
			}
			got := errOut.String()
			if strings.Contains(got, "Usage of") {
				t.Fatalf("bare flag package usage:\n%s", got)
			}
			for _, w := range tt.want {
				if !strings.Contains(got, w) {
					t.Fatalf("usage does not mention %q:\n%s", w, got)
				}
			}
		})
	}
}
