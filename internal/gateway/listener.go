package gateway

import (
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"syscall"
	"time"

	"github.com/liveroom/liveroom/internal/protocol"
)

// Listener returns the listener the HTTP server sharing ln's address must
// serve: the gateway accepts on ln, reads the first bytes of each
// connection, handshakes a GET /v1/ws itself (handshake.go) and passes every
// other connection on, with the bytes it read, through the returned
// listener. Closing the returned listener closes ln. Call it once per
// listener, after New; the gateway answers upgrades only once started.
//
// Who may use it: whoever may reach the address; the gateway applies the
// same edge checks, token verification and limits as through Handler.
func (s *Server) Listener(ln net.Listener) net.Listener {
	l := &splitListener{Listener: ln, s: s, conns: make(chan net.Conn), done: make(chan struct{}), stopping: make(chan struct{})}
	l.loop.Add(1)
	go l.acceptLoop()
	return l
}

// splitListener is the listener returned by Server.Listener.
type splitListener struct {
	net.Listener
	s     *Server
	conns chan net.Conn // for the HTTP server

	stopping chan struct{} // Close was called
	stopOnce sync.Once
	done     chan struct{} // the accept loop ended; err says why
	err      error
	loop     sync.WaitGroup
}

// Accept returns the next connection that is not a WebSocket upgrade.
func (l *splitListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, l.err
	}
}

// Close stops accepting and closes the underlying listener.
func (l *splitListener) Close() error {
	var err error
	l.stopOnce.Do(func() {
		close(l.stopping)
		err = l.Listener.Close()
		l.loop.Wait()
	})
	return err
}

// acceptBackoff bounds the pause after an accept error such as EMFILE: the
// pending connection stays in the kernel's queue and accept is retried,
// rather than spinning on an error that persists until a descriptor is
// freed.
const (
	acceptBackoffMin = 5 * time.Millisecond
	acceptBackoffMax = time.Second
)

func (l *splitListener) acceptLoop() {
	defer l.loop.Done()
	var delay time.Duration
	var lastLog time.Time
	for {
		nc, err := l.Listener.Accept()
		if err != nil {
			select {
			case <-l.stopping:
				l.fail(net.ErrClosed)
				return
			default:
			}
			if !retryable(err) {
				l.fail(err)
				return
			}
			l.s.stats.AcceptErrors.Add(1)
			delay = min(max(2*delay, acceptBackoffMin), acceptBackoffMax)
			if time.Since(lastLog) > 10*time.Second {
				lastLog = time.Now()
				l.s.log.Warn("cannot accept connections; retrying", "err", err, "backoff", delay)
			}
			select {
			case <-l.stopping:
				l.fail(net.ErrClosed)
				return
			case <-time.After(delay):
			}
			continue
		}
		delay = 0
		if !l.s.beginHandshake(nc) {
			// The gateway is closing: the HTTP server still gets the
			// connection, and GET /v1/ws there answers 503.
			go l.handOff(nc, nil)
			continue
		}
		go l.serveConn(nc)
	}
}

// retryable reports whether an accept error passes: out of descriptors or
// memory, or a connection that died in the queue.
func retryable(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	for _, e := range []error{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.ECONNABORTED, syscall.EINTR} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

func (l *splitListener) fail(err error) {
	l.err = err
	close(l.done)
}

// handOff passes nc, with the bytes pre already read from it, to the HTTP
// server; nc is closed if the server no longer accepts.
func (l *splitListener) handOff(nc net.Conn, pre []byte) {
	var c net.Conn = nc
	if len(pre) > 0 {
		c = &prefixConn{Conn: nc, pre: pre}
	}
	select {
	case l.conns <- c:
	case <-l.done:
		_ = nc.Close()
	}
}

// serveConn reads the start of a new connection and handshakes it or hands
// it off.
func (l *splitListener) serveConn(nc net.Conn) {
	s := l.s
	defer s.endHandshake(nc)
	_ = nc.SetReadDeadline(time.Now().Add(s.cfg.HeaderTimeout))
	bp := headBufs.Get().(*[]byte)
	buf := (*bp)[:0]
	defer func() {
		if bp != nil {
			headBufs.Put(bp) // buf copies what it keeps
		}
	}()
	kind := -1
	for kind < 0 {
		n, err := nc.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if kind = classify(buf); kind < 0 && err != nil {
			_ = nc.Close() // nothing decisive before EOF or the header timeout
			return
		}
	}
	if kind == 0 {
		_ = nc.SetReadDeadline(time.Time{})
		l.handOff(nc, append([]byte(nil), buf...))
		return
	}
	end := headEnd(buf)
	for end < 0 {
		if len(buf) >= s.cfg.MaxHeaderBytes {
			s.stats.Rejected.Add(1)
			s.rejectRaw(nc, errHeadTooLarge)
			return
		}
		if len(buf) == cap(buf) {
			buf = append(buf, make([]byte, min(cap(buf), s.cfg.MaxHeaderBytes))...)[:len(buf)]
		}
		n, err := nc.Read(buf[len(buf):min(cap(buf), s.cfg.MaxHeaderBytes+1)])
		buf = buf[:len(buf)+n]
		if end = headEnd(buf); end < 0 && err != nil {
			_ = nc.Close() // a slow or broken handshake: cut off
			return
		}
	}
	if end > s.cfg.MaxHeaderBytes {
		s.stats.Rejected.Add(1)
		s.rejectRaw(nc, errHeadTooLarge)
		return
	}
	q := upgradeReq{peer: addrOf(nc.RemoteAddr())}
	if perr := parseHead(buf[:end], &q); perr != nil {
		s.stats.Rejected.Add(1)
		s.rejectRaw(nc, perr)
		return
	}
	a, perr := s.admitUpgrade(&q)
	if perr != nil {
		s.rejectRaw(nc, perr)
		return
	}
	_ = nc.SetReadDeadline(time.Now().Add(s.cfg.HeaderTimeout))
	early := append([]byte(nil), buf[end:]...)
	headBufs.Put(bp)
	bp = nil
	s.upgraded(nc, q.key, a, early)
}

var errHeadTooLarge = protocol.Errorf(http.StatusRequestHeaderFieldsTooLarge, protocol.CodeBadRequest, "", "request line and headers are too large")

// prefixConn is a connection whose first bytes were already read.
type prefixConn struct {
	net.Conn
	pre []byte
}

func (c *prefixConn) Read(b []byte) (int, error) {
	if len(c.pre) > 0 {
		n := copy(b, c.pre)
		c.pre = c.pre[n:]
		return n, nil
	}
	return c.Conn.Read(b)
}

// ReadFrom keeps net/http's sendfile path for static files.
func (c *prefixConn) ReadFrom(r io.Reader) (int64, error) { return io.Copy(c.Conn, r) }
