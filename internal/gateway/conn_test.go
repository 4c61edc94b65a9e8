package gateway

import (
	"bytes"
	"io"
	"net"
	"testing"
	"time"

	"github.com/liveroom/liveroom/internal/netfd"
)

// tcpPair returns the server side as a registered conn of s and the raw
// client side.
func tcpPair(t *testing.T, s *Server) (*conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	srv, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	fd, err := netfd.Detach(srv)
	if err != nil {
		t.Fatal(err)
	}
	c := pollConn(t, s, fd, false)
	t.Cleanup(func() {
		c.close(1000)
		client.Close()
	})
	return c, client
}

func TestSendQueueDropsLiveAndClosesOnReliable(t *testing.T) {
	s := testServer(t, Config{QueueFrames: 4, QueueBytes: 1 << 20, WriteTimeout: 10 * time.Second})
	c, client := tcpPair(t, s)
	live := &frame{b: make([]byte, 64<<10), msgs: 1}
	// Fill the kernel buffers: the peer never reads.
	queuedAt := -1
	for i := 0; i < 10000; i++ {
		if r := c.send(live); r == sentQueued {
			queuedAt = i
			break
		}
	}
	if queuedAt < 0 {
		t.Fatal("socket never pushed back")
	}
	for range 3 {
		if r := c.send(live); r != sentQueued {
			t.Fatalf("send with room in the queue = %v, want queued", r)
		}
	}
	if r := c.send(live); r != sentDropped {
		t.Fatalf("live frame on a full queue = %v, want dropped", r)
	}
	if r := c.send(&frame{b: []byte("gift"), reliable: true, msgs: 1}); r != sentClosed {
		t.Fatalf("reliable frame on a full queue = %v, want closed", r)
	}
	if s.stats.ClosedSlow.Load() != 1 {
		t.Fatal("slow close not counted")
	}
	if r := c.send(live); r != sentClosed {
		t.Fatalf("send on a closing connection = %v", r)
	}
	// The peer reads what was queued, then an error frame saying why, then
	// the connection ends.
	_ = client.SetReadDeadline(time.Now().Add(10 * time.Second))
	all, _ := io.ReadAll(client)
	tail := all[max(0, len(all)-200):]
	if !bytes.Contains(tail, []byte(`"code":"slow_consumer"`)) {
		t.Fatalf("no slow_consumer error frame before the close; tail %q", tail)
	}
	if !c.isClosed() {
		t.Fatal("connection not closed after its last frames")
	}
	s.connWG.Wait() // reaped
}

func TestBacklogDrainsInOrderWhenPeerReads(t *testing.T) {
	s := testServer(t, Config{QueueFrames: 1000, QueueBytes: 64 << 20})
	c, client := tcpPair(t, s)
	const n = 400
	var want int
	for i := range n {
		b := make([]byte, 32<<10)
		for j := range b {
			b[j] = byte(i)
		}
		want += len(b)
		if r := c.send(&frame{b: b, msgs: 1}); r != sentNow && r != sentQueued {
			t.Fatalf("frame %d: %v", i, r)
		}
	}
	_ = client.SetReadDeadline(time.Now().Add(20 * time.Second))
	buf := make([]byte, 64<<10)
	got := 0
	for got < want {
		k, err := client.Read(buf)
		if err != nil {
			t.Fatalf("after %d of %d bytes: %v", got, want, err)
		}
		for j := 0; j < k; j++ {
			if exp := byte((got + j) / (32 << 10)); buf[j] != exp {
				t.Fatalf("byte %d is from frame %d, want %d: frames out of order", got+j, buf[j], exp)
			}
		}
		got += k
	}
	c.mu.Lock()
	left := len(c.backlog)
	c.mu.Unlock()
	if left != 0 {
		t.Fatalf("%d frames still queued after the peer read everything", left)
	}
}

// TestSamplingHoldsTheBudgetExactly feeds a room 300 live messages per
// second for 10 simulated seconds and counts what the budget lets through:
// the budget per second on average, not fewer (fractional allowances carry
// over) and not more.
func TestSamplingHoldsTheBudgetExactly(t *testing.T) {
	for _, budget := range []float64{30, 10, 7.5, 100} {
		s := &Server{cfg: Config{ViewerBudget: budget, MergeWindow: 50 * time.Millisecond, ReliableWindow: 16}}
		r := newRoom(s, "x", newHub(1).shards[0])
		now := time.Unix(0, 0)
		const windows, perWindow = 200, 15 // 10 s at 300/s
		for range windows {
			for range perWindow {
				r.add(pendingMsg{b: []byte("m"), kind: kindLive})
			}
			now = now.Add(50 * time.Millisecond)
			r.flush(now, nil)
		}
		kept := windows*perWindow - int(s.stats.DroppedSampled.Load())
		if want := int(budget * 10); kept < want-2 || kept > want+2 {
			t.Errorf("budget %v/s: %d kept in 10 s, want %d", budget, kept, want)
		}
	}
}

func TestSamplingKeepsTheNewest(t *testing.T) {
	s := &Server{cfg: Config{ViewerBudget: 30, MergeWindow: 50 * time.Millisecond}}
	r := newRoom(s, "x", newHub(1).shards[0])
	var msgs []pendingMsg
	for i := range 10 {
		msgs = append(msgs, pendingMsg{b: []byte{byte('0' + i)}, kind: kindLive})
	}
	r.allow = 3
	kept, _ := r.sample(msgs)
	got := ""
	for _, k := range kept {
		got += string(k)
	}
	if got != "789" {
		t.Fatalf("kept %q, want the newest three: 789", got)
	}
}
