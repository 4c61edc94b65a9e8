package client

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/liveroom/liveroom/internal/protocol"
)

func TestDialGatewayFrames(t *testing.T) {
	pongs := make(chan string, 1)
	gw := newFakeGateway(t, "gw-1", func(n int, q url.Values, c *serverConn) {
		c.welcome("r1", 10, 1)
		c.batch("r1", gift("g11", 11))
		c.batch("r1", danmaku("d1"), danmaku("d2"))
		_ = wsutil.WriteServerBinary(c.conn, []byte("ignored"))
		_ = ws.WriteFrame(c.conn, ws.NewPingFrame([]byte("p1")))
		// The client answers pings while it reads; see that the pong comes
		// back with the payload before the test goes on.
		f, err := ws.ReadFrame(c.conn)
		if err == nil && f.Header.Masked {
			f = ws.UnmaskFrameInPlace(f)
		}
		if err != nil || f.Header.OpCode != ws.OpPong {
			pongs <- "no pong"
		} else {
			pongs <- string(f.Payload)
		}
		c.send(`{"type":"reconnect","after_ms":250,"reason":"scale-in"}`)
		c.waitClosed()
	})
	ctx := testCtx(t)
	gc, err := DialGateway(ctx, gw.URL(), "r1", "tok/en+1", 10)
	if err != nil {
		t.Fatal(err)
	}
	defer gc.Close()

	want := []string{protocol.FrameWelcome, protocol.FrameBatch, protocol.FrameBatch, protocol.FrameReconnect}
	var frames []Frame
	for range want {
		f, err := gc.ReadFrame(ctx)
		if err != nil {
			t.Fatalf("frame %d: %v", len(frames), err)
		}
		frames = append(frames, f)
	}
	for i, f := range frames {
		if f.Type != want[i] {
			t.Errorf("frame %d type %q, want %q", i, f.Type, want[i])
		}
	}
	if w := frames[0].Welcome; w == nil || w.Seq != 10 || w.Replayed != 1 || w.Online != 3 {
		t.Errorf("welcome = %+v", frames[0].Welcome)
	}
	if b := frames[1].Batch; len(b.Msgs) != 1 || b.Msgs[0].Seq != 11 || b.Msgs[0].ID != "g11" {
		t.Errorf("batch 1 = %+v", b)
	}
	if b := frames[2].Batch; len(b.Msgs) != 2 || b.Msgs[1].Text != "hi d2" {
		t.Errorf("batch 2 = %+v", b)
	}
	if r := frames[3].Reconnect; r.AfterMS != 250 || r.Reason != "scale-in" {
		t.Errorf("reconnect = %+v", r)
	}
	if got := <-pongs; got != "p1" {
		t.Errorf("pong payload %q, want p1", got)
	}
	q := gw.Queries()[0]
	if q.Get("room") != "r1" || q.Get("token") != "tok/en+1" || q.Get("since") != "10" {
		t.Errorf("query = %v", q)
	}
}

func TestDialGatewayOmitsZeroSince(t *testing.T) {
	gw := newFakeGateway(t, "gw-1", func(n int, q url.Values, c *serverConn) {
		c.welcome("r1", 0, 0)
		c.waitClosed()
	})
	gc, err := DialGateway(testCtx(t), gw.URL(), "r1", "t", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer gc.Close()
	if _, err := gc.ReadFrame(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	if q := gw.Queries()[0]; q.Has("since") {
		t.Errorf("since sent: %v", q)
	}
}

func TestDialGatewayRefused(t *testing.T) {
	gw := newFakeGateway(t, "gw-1", func(int, url.Values, *serverConn) {})
	gw.refuse = func(int, url.Values) (int, string) { return http.StatusUnauthorized, protocol.CodeUnauthorized }
	_, err := DialGateway(testCtx(t), gw.URL(), "r1", "bad", 0)
	var ae *APIError
	if !errors.As(err, &ae) {
		t.Fatalf("err = %v, want *APIError", err)
	}
	if ae.Status != 401 || ae.Body.Code != protocol.CodeUnauthorized || ae.Body.Message != "refused by test" || !IsFatal(err) {
		t.Errorf("err = %+v", ae)
	}
	if ae.RetryAfter != 10*time.Millisecond {
		t.Errorf("retry after = %v", ae.RetryAfter)
	}
}

func TestDialGatewayUnreachable(t *testing.T) {
	gw := newFakeGateway(t, "gw-1", func(int, url.Values, *serverConn) {})
	u := gw.URL()
	gw.close()
	_, err := DialGateway(testCtx(t), u, "r1", "secret-token", 0)
	if err == nil {
		t.Fatal("dial to a closed server succeeded")
	}
	if IsFatal(err) {
		t.Errorf("network error is fatal: %v", err)
	}
}

func TestReadFrameInterrupts(t *testing.T) {
	gw := newFakeGateway(t, "gw-1", func(n int, q url.Values, c *serverConn) {
		c.welcome("r1", 0, 0)
		c.waitClosed()
	})
	t.Run("context", func(t *testing.T) {
		gc, err := DialGateway(testCtx(t), gw.URL(), "r1", "t", 0)
		if err != nil {
			t.Fatal(err)
		}
		defer gc.Close()
		if _, err := gc.ReadFrame(testCtx(t)); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(testCtx(t))
		time.AfterFunc(20*time.Millisecond, cancel)
		if _, err := gc.ReadFrame(ctx); !errors.Is(err, context.Canceled) {
			t.Errorf("err = %v, want context.Canceled", err)
		}
	})
	t.Run("close", func(t *testing.T) {
		gc, err := DialGateway(testCtx(t), gw.URL(), "r1", "t", 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := gc.ReadFrame(testCtx(t)); err != nil {
			t.Fatal(err)
		}
		time.AfterFunc(20*time.Millisecond, func() { _ = gc.Close() })
		if _, err := gc.ReadFrame(testCtx(t)); !errors.Is(err, ErrClosed) {
			t.Errorf("err = %v, want ErrClosed", err)
		}
		if err := gc.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
	})
	t.Run("read timeout", func(t *testing.T) {
		d := Dialer{ReadTimeout: 50 * time.Millisecond}
		gc, err := d.DialGateway(testCtx(t), gw.URL(), "r1", "t", 0)
		if err != nil {
			t.Fatal(err)
		}
		defer gc.Close()
		if _, err := gc.ReadFrame(testCtx(t)); err != nil {
			t.Fatal(err)
		}
		_, err = gc.ReadFrame(testCtx(t))
		if err == nil || errors.Is(err, ErrClosed) || errors.Is(err, context.Canceled) {
			t.Errorf("err = %v, want a timeout", err)
		}
	})
}

func TestReadFrameServerClose(t *testing.T) {
	gw := newFakeGateway(t, "gw-1", func(n int, q url.Values, c *serverConn) {
		c.send(`{"type":"error","error":{"code":"banned","message":"bye"}}`)
		_ = ws.WriteFrame(c.conn, ws.NewCloseFrame(ws.NewCloseFrameBody(ws.StatusPolicyViolation, "banned")))
		c.waitClosed()
	})
	gc, err := DialGateway(testCtx(t), gw.URL(), "r1", "t", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer gc.Close()
	f, err := gc.ReadFrame(testCtx(t))
	if err != nil || f.Error == nil || f.Error.Error.Code != "banned" {
		t.Fatalf("frame %+v, err %v", f, err)
	}
	_, err = gc.ReadFrame(testCtx(t))
	var ce wsutil.ClosedError
	if !errors.As(err, &ce) || ce.Code != ws.StatusPolicyViolation {
		t.Errorf("err = %v, want a ClosedError", err)
	}
}

func TestReadFrameMaxMessageSize(t *testing.T) {
	gw := newFakeGateway(t, "gw-1", func(n int, q url.Values, c *serverConn) {
		c.batch("r1", Message{ID: "big", Type: "danmaku", Text: string(make([]byte, 2048))})
		c.waitClosed()
	})
	d := Dialer{MaxMessageSize: 1024}
	gc, err := d.DialGateway(testCtx(t), gw.URL(), "r1", "t", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer gc.Close()
	if _, err := gc.ReadFrame(testCtx(t)); !errors.Is(err, wsutil.ErrMessageTooLarge) {
		t.Errorf("err = %v, want ErrMessageTooLarge", err)
	}
}

// TestReadFrameCompressed: frames compressed by the server decode like plain
// ones, interleaved with plain ones, and MaxMessageSize bounds what a
// compressed message inflates to, not only its compressed size.
func TestReadFrameCompressed(t *testing.T) {
	bomb := protocol.Encode(protocol.Batch{Type: protocol.FrameBatch, Room: "r1", Msgs: []Message{{ID: "big", Type: "danmaku", Text: strings.Repeat("a", 1<<20)}}})
	gw := newFakeGateway(t, "gw-1", func(n int, q url.Values, c *serverConn) {
		c.sendCompressed(protocol.Encode(protocol.Welcome{Type: protocol.FrameWelcome, Room: "r1", Seq: 4}))
		c.batch("r1", Message{ID: "plain", Type: "danmaku", Text: "plain"})
		c.sendCompressed(protocol.Encode(protocol.Batch{Type: protocol.FrameBatch, Room: "r1", Msgs: []Message{{ID: "z", Type: "danmaku", Text: "压缩的弹幕"}}}))
		c.sendCompressed(bomb)
		c.waitClosed()
	})
	gw.deflate = true
	d := Dialer{MaxMessageSize: 64 << 10}
	gc, err := d.DialGateway(testCtx(t), gw.URL(), "r1", "t", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer gc.Close()
	if !gc.Compressed() {
		t.Fatal("permessage-deflate not negotiated")
	}
	if f, err := gc.ReadFrame(testCtx(t)); err != nil || f.Welcome == nil || f.Welcome.Seq != 4 {
		t.Fatalf("compressed welcome: %+v %v", f, err)
	}
	for _, want := range []string{"plain", "压缩的弹幕"} {
		f, err := gc.ReadFrame(testCtx(t))
		if err != nil || f.Batch == nil || f.Batch.Msgs[0].Text != want {
			t.Fatalf("got %+v %v, want %q", f, err, want)
		}
	}
	if len(bomb) < 1<<20 {
		t.Fatal("the bomb is small")
	}
	if _, err := gc.ReadFrame(testCtx(t)); !errors.Is(err, errTooLarge) {
		t.Errorf("a 1 MiB message compressed to a few KiB: err = %v, want errTooLarge", err)
	}
}
