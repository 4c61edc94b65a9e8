package gateway

import (
	"errors"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
	"golang.org/x/sys/unix"

	"github.com/liveroom/liveroom/internal/auth"
	"github.com/liveroom/liveroom/internal/netfd"
	"github.com/liveroom/liveroom/internal/protocol"
)

// The connection model, chosen for the ≤ 3 KiB per idle connection budget:
//
//   - No goroutine per connection. An established connection is a bare
//     non-blocking socket watched by one of the gateway's pollers
//     (netpoll_linux.go), which read into their own buffer; the
//     connection keeps bytes only for a client frame split across reads.
//   - No writer goroutine. The room flush writes the shared frame bytes
//     straight to the socket with one write system call. Only when the
//     kernel buffer is full does the connection keep a backlog (of
//     references to shared frames, never copies) and ask its poller for
//     writability; the poller drains the backlog.
//   - The handshake leaves nothing behind: the gateway reads and answers it
//     itself (handshake.go) with pooled buffers, then takes the socket out
//     of Go's netpoller.
//
// Safety of the raw fd: every write happens under c.mu after checking
// closed, and the descriptor is closed only by reap, after close set closed
// under c.mu, so it cannot be closed (and its number reused) while a write
// is in progress.

// queued is a frame waiting in a connection's backlog; off bytes of it were
// already written.
type queued struct {
	f   *frame
	off int
}

// conn is one viewer's WebSocket connection.
type conn struct {
	srv  *Server
	fd   int
	gen  uint32  // identifies the connection in epoll events (netpoll)
	poll *poller // set once registered; guarded by mu
	id   uint64
	room *room
	who  auth.Identity
	ip   netip.Addr // peer address, for the per-address limit (edge.go)
	// deflate: the client negotiated permessage-deflate; it gets the
	// compressed variant of room frames that have one.
	deflate bool

	// idx is the conn's position in room.members; guarded by room.mu.
	idx int

	mu        sync.Mutex
	closed    bool
	closing   bool // last frames queued by finish; closes once they are written
	reaped    bool
	outArmed  bool // the poller watches for writability
	backlog   []queued
	queued    int   // bytes in backlog
	progress  int64 // unix nanos of the last backlog progress
	closeCode ws.StatusCode

	lastRead atomic.Int64 // unix nanos
	pingAt   int64        // unix nanos of the last ping; tick loop only

	// Reader state: the handshake goroutine's, then its poller's.
	partial   []byte // bytes of an incomplete client frame
	msg       clientMsg
	inputDone bool // closing: further input is discarded
}

func newConn(srv *Server, fd int, who auth.Identity, deflate bool) *conn {
	c := &conn{srv: srv, fd: fd, who: who, deflate: deflate, idx: -1}
	c.lastRead.Store(time.Now().UnixNano())
	return c
}

// sendResult tells the flush what became of one frame.
type sendResult uint8

const (
	sentNow     sendResult = iota // written in full
	sentQueued                    // queued behind earlier frames or a partial write
	sentDropped                   // live frame dropped: backlog full
	sentClosed                    // connection closed (now or before)
)

// bytes is what c is sent of f: its compressed variant when c negotiated
// compression and f has one.
func (c *conn) bytes(f *frame) []byte {
	if c.deflate && f.z != nil {
		return f.z
	}
	return f.b
}

// send writes f, or queues it if the socket is not keeping up. It never
// blocks on the network.
func (c *conn) send(f *frame) sendResult {
	b := c.bytes(f)
	c.mu.Lock()
	if c.closed || c.closing {
		c.mu.Unlock()
		return sentClosed
	}
	if len(c.backlog) == 0 {
		n, err := netfd.Write(c.fd, b)
		if n == len(b) {
			c.mu.Unlock()
			return sentNow
		}
		if err != nil && err != unix.EAGAIN {
			c.mu.Unlock()
			c.close(ws.StatusGoingAway)
			return sentClosed
		}
		c.backlog = append(c.backlog, queued{f: f, off: max(n, 0)})
		c.queued = len(b)
		c.progress = time.Now().UnixNano()
		c.setWriteLocked(true)
		c.mu.Unlock()
		return sentQueued
	}
	if len(c.backlog) >= c.srv.cfg.QueueFrames || c.queued+len(b) > c.srv.cfg.QueueBytes {
		if f.reliable {
			c.srv.stats.ClosedSlow.Add(1)
			c.finishLocked(errorFrame(protocol.CodeSlowConsumer, "connection too slow for reliable messages; reconnect with since"), closeFrameBytes(ws.StatusPolicyViolation, ""))
			c.mu.Unlock()
			return sentClosed
		}
		c.mu.Unlock()
		return sentDropped
	}
	c.backlog = append(c.backlog, queued{f: f})
	c.queued += len(b)
	c.mu.Unlock()
	return sentQueued
}

// writeBacklog writes what the backlog holds until the socket pushes back;
// its poller calls it when the socket is writable.
func (c *conn) writeBacklog() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	var err error
	for len(c.backlog) > 0 {
		q := &c.backlog[0]
		b := c.bytes(q.f)
		var n int
		n, err = netfd.Write(c.fd, b[q.off:])
		if n > 0 {
			q.off += n
			c.progress = time.Now().UnixNano()
		}
		if q.off == len(b) {
			c.queued -= len(b)
			c.backlog[0] = queued{}
			c.backlog = c.backlog[1:]
			err = nil
			continue
		}
		if err == nil {
			continue // partial write: try again, the next one says EAGAIN
		}
		break
	}
	if err == unix.EAGAIN {
		c.mu.Unlock()
		return
	}
	c.backlog = nil
	c.queued = 0
	c.setWriteLocked(false)
	done := err != nil || c.closing
	c.mu.Unlock()
	if done {
		c.close(ws.StatusGoingAway)
	}
}

// close closes the connection with a WebSocket close frame; idempotent.
// Its poller then reaps it: closes the descriptor and removes it from its
// room.
func (c *conn) close(code ws.StatusCode) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	c.closeCode = code
	if len(c.backlog) == 0 && !c.closing {
		// Best effort: the socket is writable, say goodbye.
		_, _ = netfd.Write(c.fd, closeFrameBytes(code, ""))
	}
	c.backlog = nil
	c.queued = 0
	p := c.poll
	c.mu.Unlock()
	if p != nil {
		p.reapLater(c)
	}
	// Not registered yet: the handshake goroutine reaps it when it tries.
}

// reap forgets a closed connection and closes its descriptor; idempotent.
// It must not be called with a room lock held (it leaves the room).
func (s *Server) reap(c *conn) {
	c.mu.Lock()
	if c.reaped || !c.closed {
		c.mu.Unlock()
		return
	}
	c.reaped = true
	c.mu.Unlock()
	if s.poll != nil {
		s.poll.forget(c)
	}
	_ = unix.Close(c.fd) // also leaves its epoll set
	s.removeConn(c)
	s.connWG.Done()
}

// closeWith sends an error frame and a close frame, then closes.
func (c *conn) closeWith(code, msg string) {
	status := ws.StatusPolicyViolation
	if code == protocol.CodeFrameTooLarge {
		status = ws.StatusMessageTooBig
	}
	c.finish(errorFrame(code, msg), closeFrameBytes(status, ""))
}

// finish queues the last frames of a connection and closes it once they
// are written (or after WriteTimeout if the peer does not read them).
func (c *conn) finish(last ...[]byte) {
	c.mu.Lock()
	c.finishLocked(last...)
	c.mu.Unlock()
}

// finishLocked drops the queued frames that have not started to go out
// (a frame half written must be completed, or the stream is corrupt),
// queues last, and arranges the close; c.mu held.
func (c *conn) finishLocked(last ...[]byte) {
	if c.closed || c.closing {
		return
	}
	c.closing = true
	keep := 0
	if len(c.backlog) > 0 && c.backlog[0].off > 0 {
		keep = 1
	}
	clear(c.backlog[keep:])
	c.backlog = c.backlog[:keep]
	c.queued = 0
	for _, q := range c.backlog {
		c.queued += len(c.bytes(q.f))
	}
	for _, b := range last {
		c.backlog = append(c.backlog, queued{f: &frame{b: b}})
		c.queued += len(b)
	}
	c.progress = time.Now().UnixNano()
	// The poller writes them as soon as the socket is writable (at once,
	// usually), then closes.
	c.setWriteLocked(true)
	time.AfterFunc(c.srv.cfg.WriteTimeout, func() { c.close(ws.StatusGoingAway) })
}

func errorFrame(code, msg string) []byte {
	return textFrame(protocol.Encode(protocol.ErrorFrame{Type: protocol.FrameError, Error: protocol.ErrorBody{Code: code, Message: msg}}))
}

func (c *conn) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// stalled reports whether queued frames made no progress since before.
func (c *conn) stalled(before int64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.backlog) > 0 && c.progress < before
}

// handle parses the client frames in b; false means the conn is closing or
// closed (its input is no longer read). Called by the handshake goroutine,
// then only by the conn's poller.
func (c *conn) handle(b []byte) bool {
	if len(c.partial) > 0 {
		c.partial = append(c.partial, b...)
		b = c.partial
	}
	limit := c.srv.cfg.ReadLimit
	for len(b) > 0 {
		// A fragment may only carry what the message has left of the limit.
		f, n, err := parseClientFrame(b, limit-c.msg.size)
		if err == nil && n > 0 {
			if f.op.IsControl() {
				if f.rsv1 {
					err = errCompressedBit
				}
			} else {
				err = c.msg.add(f, limit, c.deflate)
			}
		}
		if err != nil {
			c.srv.stats.ClosedBadFrame.Add(1)
			switch {
			case errors.Is(err, errTooLarge):
				c.closeWith(protocol.CodeFrameTooLarge, "client message exceeds the read limit")
			default:
				c.closeWith(protocol.CodeProtocol, err.Error())
			}
			c.partial = nil
			return false
		}
		if n == 0 {
			break
		}
		switch f.op {
		case ws.OpPing:
			c.send(&frame{b: ws.MustCompileFrame(ws.NewPongFrame(append([]byte(nil), f.payload...)))})
		case ws.OpClose:
			c.close(ws.StatusNormalClosure)
			c.partial = nil
			return false
		default:
			// Pongs refresh lastRead; text and binary messages carry nothing
			// the gateway acts on (sends go through the uplink's HTTP API).
		}
		b = b[n:]
	}
	if len(b) == 0 {
		c.partial = nil
	} else {
		// b may alias the poller's read buffer or the old partial: copy.
		c.partial = append([]byte(nil), b...)
	}
	return true
}
