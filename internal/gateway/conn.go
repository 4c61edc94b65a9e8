package gateway

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gobwas/ws"

	"github.com/liveroom/liveroom/internal/auth"
	"github.com/liveroom/liveroom/internal/protocol"
)

// The connection model, chosen for the ≤ 6 KiB per idle connection budget:
//
//   - One goroutine per connection, parked in Go's netpoller through
//     RawConn.Read with no buffer of its own. A read buffer is taken from a
//     pool only when the socket is readable and returned right after.
//   - No writer goroutine. The room flush writes the shared frame bytes
//     straight to the non-blocking socket with one write system call. Only
//     when the kernel buffer is full does the connection keep a backlog (of
//     references to shared frames, never copies) and start a short-lived
//     goroutine that waits for writability and drains it.
//
// Safety of the raw fd: every write and the close decision happen under c.mu,
// and net.Conn.Close is called only after closed was set under c.mu, so the
// fd number cannot be closed (and reused) while a write holds c.mu. Close is
// never called while holding c.mu, because Close waits for goroutines inside
// RawConn callbacks, one of which (drain) takes c.mu.

var readBufPool = sync.Pool{New: func() any { b := make([]byte, 4096); return &b }}

// queued is a frame waiting in a connection's backlog; off bytes of it were
// already written.
type queued struct {
	f   *frame
	off int
}

// conn is one viewer's WebSocket connection.
type conn struct {
	srv  *Server
	nc   net.Conn
	raw  syscall.RawConn
	fd   int
	id   uint64
	room *room
	who  auth.Identity
	ip   netip.Addr // peer address, for the per-address limit (edge.go)

	// idx is the conn's position in room.members; guarded by room.mu.
	idx int

	mu        sync.Mutex
	closed    bool
	closing   bool // last frames queued by finish; closes once they are written
	backlog   []queued
	queued    int   // bytes in backlog
	draining  bool  // a drain goroutine is running
	progress  int64 // unix nanos of the last backlog progress
	drainErr  error
	closeCode ws.StatusCode

	lastRead atomic.Int64 // unix nanos
	pingAt   int64        // unix nanos of the last ping; tick loop only

	// Reader goroutine state.
	partial []byte // bytes of an incomplete client frame
	rbuf    *[]byte
	rn      int
	rerr    error
	readFn  func(fd uintptr) bool
	drainFn func(fd uintptr) bool
}

func newConn(srv *Server, nc net.Conn, who auth.Identity) (*conn, error) {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return nil, errors.New("cannot use connection: not a socket")
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil, err
	}
	c := &conn{srv: srv, nc: nc, raw: raw, who: who, idx: -1}
	if err := raw.Control(func(fd uintptr) { c.fd = int(fd) }); err != nil {
		return nil, err
	}
	c.readFn = c.readReady
	c.drainFn = c.drainReady
	c.lastRead.Store(time.Now().UnixNano())
	return c, nil
}

// sendResult tells the flush what became of one frame.
type sendResult uint8

const (
	sentNow     sendResult = iota // written in full
	sentQueued                    // queued behind earlier frames or a partial write
	sentDropped                   // live frame dropped: backlog full
	sentClosed                    // connection closed (now or before)
)

// send writes f, or queues it if the socket is not keeping up. It never
// blocks on the network.
func (c *conn) send(f *frame) sendResult {
	c.mu.Lock()
	if c.closed || c.closing {
		c.mu.Unlock()
		return sentClosed
	}
	if len(c.backlog) == 0 {
		n, err := writeFD(c.fd, f.b)
		if n == len(f.b) {
			c.mu.Unlock()
			return sentNow
		}
		if err != nil && err != syscall.EAGAIN {
			c.mu.Unlock()
			c.close(ws.StatusGoingAway)
			return sentClosed
		}
		c.backlog = append(c.backlog, queued{f: f, off: max(n, 0)})
		c.queued = len(f.b)
		c.progress = time.Now().UnixNano()
		c.startDrainLocked()
		c.mu.Unlock()
		return sentQueued
	}
	if len(c.backlog) >= c.srv.cfg.QueueFrames || c.queued+len(f.b) > c.srv.cfg.QueueBytes {
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
	c.queued += len(f.b)
	c.mu.Unlock()
	return sentQueued
}

func (c *conn) startDrainLocked() {
	if c.draining {
		return
	}
	c.draining = true
	c.srv.connWG.Add(1)
	go c.drain()
}

// drain waits for writability and empties the backlog, then exits.
func (c *conn) drain() {
	defer c.srv.connWG.Done()
	err := c.raw.Write(c.drainFn)
	c.mu.Lock()
	if err == nil {
		err = c.drainErr
	}
	finished := c.closing
	c.mu.Unlock()
	if err != nil || finished {
		c.close(ws.StatusGoingAway)
	}
}

// drainReady runs inside RawConn.Write: it returns false to wait for
// writability, true when done.
func (c *conn) drainReady(fd uintptr) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(c.backlog) > 0 && !c.closed {
		q := &c.backlog[0]
		n, err := writeFD(int(fd), q.f.b[q.off:])
		if n > 0 {
			q.off += n
			c.progress = time.Now().UnixNano()
		}
		if q.off == len(q.f.b) {
			c.queued -= len(q.f.b)
			c.backlog[0] = queued{}
			c.backlog = c.backlog[1:]
			continue
		}
		if err == nil {
			continue // partial write: try again, the next one says EAGAIN
		}
		if err == syscall.EAGAIN {
			return false
		}
		c.drainErr = err
		break
	}
	c.backlog = nil
	c.queued = 0
	c.draining = false
	return true
}

func writeFD(fd int, b []byte) (int, error) {
	for {
		n, err := syscall.Write(fd, b)
		if err == syscall.EINTR {
			continue
		}
		return n, err
	}
}

// close closes the connection with a WebSocket close frame; idempotent.
// The reader goroutine notices and removes the conn from its room.
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
		_, _ = writeFD(c.fd, closeFrameBytes(code, ""))
	}
	c.backlog = nil
	c.queued = 0
	c.mu.Unlock()
	_ = c.nc.Close()
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
		c.queued += len(q.f.b)
	}
	for _, b := range last {
		c.backlog = append(c.backlog, queued{f: &frame{b: b}})
		c.queued += len(b)
	}
	c.progress = time.Now().UnixNano()
	c.startDrainLocked()
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

// readLoop owns the connection's lifetime: it parses client frames until the
// connection fails or is closed, then removes the conn from its room.
func (c *conn) readLoop() {
	defer c.srv.connWG.Done()
	defer c.srv.removeConn(c)
	for {
		c.rbuf, c.rn, c.rerr = nil, 0, nil
		if err := c.raw.Read(c.readFn); err != nil {
			c.close(ws.StatusGoingAway)
			return
		}
		if c.rerr != nil || c.rn == 0 {
			if c.rbuf != nil {
				readBufPool.Put(c.rbuf)
			}
			c.close(ws.StatusGoingAway)
			return
		}
		c.lastRead.Store(time.Now().UnixNano())
		ok := c.handle((*c.rbuf)[:c.rn])
		readBufPool.Put(c.rbuf)
		if !ok {
			return
		}
	}
}

// readReady runs inside RawConn.Read; it returns false to wait for data.
func (c *conn) readReady(fd uintptr) bool {
	bp := readBufPool.Get().(*[]byte)
	for {
		n, err := syscall.Read(int(fd), *bp)
		if err == syscall.EINTR {
			continue
		}
		if err == syscall.EAGAIN {
			readBufPool.Put(bp)
			return false
		}
		c.rbuf, c.rn, c.rerr = bp, max(n, 0), err
		return true
	}
}

// handle parses the client frames in b; false means the conn was closed.
func (c *conn) handle(b []byte) bool {
	if len(c.partial) > 0 {
		c.partial = append(c.partial, b...)
		b = c.partial
	}
	for len(b) > 0 {
		f, n, err := parseClientFrame(b, c.srv.cfg.ReadLimit)
		if err != nil {
			c.srv.stats.ClosedBadFrame.Add(1)
			if errors.Is(err, errTooLarge) {
				c.closeWith(protocol.CodeFrameTooLarge, "client frame exceeds the read limit")
			} else {
				c.closeWith(protocol.CodeProtocol, err.Error())
			}
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
			return false
		default:
			// Pongs refresh lastRead; text and binary frames carry nothing
			// the gateway acts on (sends go through the uplink's HTTP API).
		}
		b = b[n:]
	}
	if len(b) == 0 {
		c.partial = nil
	} else {
		// b may alias the pooled read buffer or the old partial: copy.
		c.partial = append([]byte(nil), b...)
	}
	return true
}
