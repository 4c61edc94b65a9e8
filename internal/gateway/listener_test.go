package gateway

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/liveroom/liveroom/internal/protocol"
	"github.com/liveroom/liveroom/internal/testutil"
)

// TestUpgradeThroughNetHTTP covers the other front end: a gateway served
// by net/http alone (Handler, a hijack), and, behind Server.Listener, an
// upgrade on a kept-alive connection whose first request was another one.
func TestUpgradeThroughNetHTTP(t *testing.T) {
	t.Run("Handler only", func(t *testing.T) {
		e := newEnv(t)
		e.viaHTTP = true
		g := e.gateway(nil)
		v := g.dial(t, "nh", "v1", "")
		defer v.close()
		v.welcome(t)
		sent := e.danmaku("nh", "through net/http", false)
		if b := v.batch(t, 10*time.Second); len(b.Msgs) != 1 || b.Msgs[0].ID != sent.ID {
			t.Fatalf("got %+v, want %s", b.Msgs, sent.ID)
		}
	})
	t.Run("upgrade after another request", func(t *testing.T) {
		e := newEnv(t)
		g := e.gateway(nil)
		addr := g.http.Listener.Addr().String()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		rd := bufio.NewReader(c)
		fmt.Fprintf(c, "GET /nothing HTTP/1.1\r\nHost: %s\r\n\r\n", addr)
		resp, err := http.ReadResponse(rd, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Fatalf("first request: %d", resp.StatusCode)
		}
		tok := testutil.Token(t, "v2", protocol.RoleViewer)
		fmt.Fprintf(c, "GET /v1/ws?room=ka&token=%s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
			"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n", tok, addr)
		resp, err = http.ReadResponse(rd, nil)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Sec-WebSocket-Accept") != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
			t.Fatalf("upgrade: %d %v", resp.StatusCode, resp.Header)
		}
		v := &viewer{conn: c, rd: rd}
		v.welcome(t)
	})
}

// emfileListener fails its first n accepts with EMFILE, recording when
// each was called, then passes through.
type emfileListener struct {
	net.Listener
	mu    sync.Mutex
	n     int
	calls []time.Time
}

func (l *emfileListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	l.calls = append(l.calls, time.Now())
	fail := len(l.calls) <= l.n
	l.mu.Unlock()
	if fail {
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: syscall.EMFILE}
	}
	return l.Listener.Accept()
}

// TestAcceptBacksOffOnEMFILE: out of descriptors, the accept loop waits
// longer and longer between attempts instead of spinning, and serves again
// once accept works.
func TestAcceptBacksOffOnEMFILE(t *testing.T) {
	e := newEnv(t)
	g := e.gateway(nil)
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	const failures = 5
	el := &emfileListener{Listener: inner, n: failures}
	ln := g.Listener(el)
	srv := &http.Server{Handler: g.Handler()}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	defer func() {
		_ = srv.Close()
		<-served
	}()
	// A handshake that succeeds after the failures.
	g2 := &gw{Server: g.Server, ws: "ws://" + inner.Addr().String() + "/v1/ws"}
	v := g2.dial(t, "emfile", "v1", "")
	defer v.close()
	v.welcome(t)
	el.mu.Lock()
	calls := append([]time.Time(nil), el.calls...)
	el.mu.Unlock()
	if len(calls) < failures+1 {
		t.Fatalf("%d accept calls, want at least %d", len(calls), failures+1)
	}
	want := acceptBackoffMin
	for i := 1; i <= failures; i++ {
		if gap := calls[i].Sub(calls[i-1]); gap < want {
			t.Fatalf("retry %d came %v after the failure, want a backoff of at least %v", i, gap, want)
		}
		want = min(2*want, acceptBackoffMax)
	}
	if n := g.Stats().AcceptErrors.Load(); n != failures {
		t.Fatalf("%d accept errors counted, want %d", n, failures)
	}
}
