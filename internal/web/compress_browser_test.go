package web_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/liveroom/liveroom/client"
	"github.com/liveroom/liveroom/internal/app"
	"github.com/liveroom/liveroom/internal/gateway"
	"github.com/liveroom/liveroom/internal/protocol"
	"github.com/liveroom/liveroom/internal/testutil"
)

// TestBrowserReceivesCompressedFrames opens the room page in Chromium, the
// only viewer of its room, on a gateway that compresses every room frame:
// the browser negotiates permessage-deflate on its own (no page code is
// involved), the gateway writes it compressed frames, and the page shows the
// comments they carry.
func TestBrowserReceivesCompressedFrames(t *testing.T) {
	browser := newBrowser(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	n, err := app.New(app.Config{Addr: "127.0.0.1:0", DataDir: t.TempDir(), NATSPort: -1, Logger: testutil.Logger(),
		Gateway: gateway.Config{CompressMinBytes: -1}})
	if err != nil {
		t.Fatalf("app.New: %v", err)
	}
	if err := n.Start(ctx); err != nil {
		t.Fatalf("app.Start: %v", err)
	}
	t.Cleanup(func() { _ = n.Close() })

	v := newTab(t, browser, "viewer")
	var mu sync.Mutex
	var extensions []string
	if err := chromedp.Listen(v.ctx, func(ev any) {
		if e, ok := ev.(*network.EventWebSocketHandshakeResponseReceived); ok && e.Response != nil {
			for k, val := range e.Response.Headers {
				if strings.EqualFold(k, "Sec-WebSocket-Extensions") {
					mu.Lock()
					s, _ := val.(string)
					extensions = append(extensions, s)
					mu.Unlock()
				}
			}
		}
	}); err != nil {
		t.Fatal(err)
	}
	v.do(chromedp.Navigate(n.URL() + "/room/zip-room?name=Zed"))
	v.waitJS(15*time.Second, `window.liveroom.state === 'live'`, "live")

	mu.Lock()
	got := strings.Join(extensions, "; ")
	mu.Unlock()
	if !strings.Contains(got, "permessage-deflate") || !strings.Contains(got, "server_no_context_takeover") {
		t.Fatalf("the gateway answered the browser's handshake with extensions %q, want permessage-deflate with server_no_context_takeover", got)
	}

	before := n.Gateway().Stats().FramesCompressed.Load()
	tok, err := client.DevToken(ctx, n.URL(), "sender", "Sender", protocol.RoleViewer)
	if err != nil {
		t.Fatal(err)
	}
	s := &client.Sender{BaseURL: n.URL(), Token: tok}
	const text = "压缩的弹幕 reached the browser"
	if _, err := s.Danmaku(ctx, "zip-room", text); err != nil {
		t.Fatal(err)
	}
	v.waitJS(10*time.Second, `[...document.querySelectorAll('#comment-log li')].some(li => li.textContent.endsWith(`+jsString(text)+`))`, "the comment in the page")
	if n.Gateway().Stats().FramesCompressed.Load() == before {
		t.Fatal("the comment reached the page, but not in a compressed frame")
	}
	v.checkClean()
}
