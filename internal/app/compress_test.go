package app

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/liveroom/liveroom/client"
	"github.com/liveroom/liveroom/internal/protocol"
	"github.com/liveroom/liveroom/internal/testutil"
)

// TestGoClientCompression runs serve with the Go client on both sides of
// permessage-deflate: the default Dialer negotiates it and reads compressed
// frames, a Dialer with NoCompression is not offered it and reads the same
// messages plain.
func TestGoClientCompression(t *testing.T) {
	n := startNodeWith(t, func(c *Config) {
		c.JWTSecret = testutil.Secret
		c.Gateway.ViewerBudget = 1e6 // every message to every viewer: frames of many
		// Every frame compressed, however few messages a loaded machine
		// lets into one window: the test is about reading them.
		c.Gateway.CompressMinBytes = -1
		c.Uplink.UserRate, c.Uplink.UserBurst = 1000, 1000
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const room = "zip"
	ans, err := client.Dispatch(ctx, nil, n.URL(), room)
	if err != nil || len(ans.Gateways) == 0 {
		t.Fatalf("dispatch: %+v %v", ans, err)
	}
	dial := func(d client.Dialer, user string) *client.GatewayConn {
		gc, err := d.DialGateway(ctx, ans.Gateways[0].URL, room, testutil.Token(t, user, protocol.RoleViewer), 0)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = gc.Close() })
		if f, err := gc.ReadFrame(ctx); err != nil || f.Welcome == nil {
			t.Fatalf("welcome: %+v %v", f, err)
		}
		return gc
	}
	zipped := dial(client.Dialer{}, "zipped")
	plain := dial(client.Dialer{NoCompression: true}, "plain")
	if !zipped.Compressed() || plain.Compressed() {
		t.Fatalf("compression negotiated: default %v, NoCompression %v; want true, false", zipped.Compressed(), plain.Compressed())
	}
	before := n.Gateway().Stats().FramesCompressed.Load()
	s := &client.Sender{BaseURL: n.URL(), Token: testutil.Token(t, "sender", protocol.RoleViewer)}
	const sent = 40
	for i := range sent {
		if _, err := s.Danmaku(ctx, room, "弹幕 number "+strconv.Itoa(i)+": long enough that a window of them is worth compressing"); err != nil {
			t.Fatal(err)
		}
	}
	read := func(gc *client.GatewayConn) []string {
		var ids []string
		for len(ids) < sent {
			f, err := gc.ReadFrame(ctx)
			if err != nil {
				t.Fatalf("after %d messages: %v", len(ids), err)
			}
			if f.Batch == nil {
				continue
			}
			for _, m := range f.Batch.Msgs {
				if m.Type == protocol.TypeDanmaku {
					ids = append(ids, m.ID)
				}
			}
		}
		return ids
	}
	zids, pids := read(zipped), read(plain)
	for i := range zids {
		if zids[i] != pids[i] {
			t.Fatalf("message %d: %s compressed, %s plain", i, zids[i], pids[i])
		}
	}
	// The gateway counts a chunk's frames after writing them all: the
	// client may have read them before the count moves.
	testutil.Eventually(t, 5*time.Second, "a frame counted as written compressed (else the test did not cover decompression)",
		func() bool { return n.Gateway().Stats().FramesCompressed.Load() > before })
}
