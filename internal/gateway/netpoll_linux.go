package gateway

import (
	"encoding/binary"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
	"golang.org/x/sys/unix"

	"github.com/liveroom/liveroom/internal/netfd"
)

// The gateway's own readiness loop. An idle viewer must cost a file
// descriptor and a small struct (the ≤ 3 KiB per idle connection budget),
// not a goroutine parked in Go's netpoller with its stack (2 KiB at least,
// more once it has run the frame parser). So established connections are
// not Go net.Conns at all: each is a bare non-blocking socket in one of a
// few epoll sets, and a poller goroutine per set reads whichever become
// readable into that poller's one buffer.
//
// Level-triggered, with EPOLLIN|EPOLLRDHUP always and EPOLLOUT only while a
// connection has a backlog: a poller reads one buffer's worth per event
// (a client that floods cannot starve the others; the rest is reported
// again), and writability is only asked for when there is something to
// write. The write path does not go through here: the room flush writes
// shared frames straight to the descriptors (conn.send).
//
// An event names its connection by descriptor and a 32-bit generation (in
// the epoll data), looked up in a table indexed by descriptor. A descriptor
// number is reused as soon as it is closed, and an epoll_wait batch may
// still hold an event of the old connection: the generation tells them
// apart.
//
// Closing: conn.close only marks the connection closed (under its lock,
// which every write holds); the descriptor is closed and the connection
// forgotten by reap, which a poller runs (or the handshake goroutine, for a
// connection that never reached a poller), never while a room lock is held.

// pollReadBuf is each poller's shared read buffer.
const pollReadBuf = 64 << 10

const (
	evRead  = unix.EPOLLIN | unix.EPOLLRDHUP
	evWrite = unix.EPOLLOUT
)

// netpoll is the set of pollers and the descriptor table.
type netpoll struct {
	srv     *Server
	pollers []*poller
	gen     atomic.Uint32
	wg      sync.WaitGroup

	mu   sync.RWMutex
	byFD []*conn
}

// poller is one epoll set and the goroutine that waits on it.
type poller struct {
	np   *netpoll
	epfd int
	wake int // eventfd: reap requests and stop
	buf  []byte

	signaled atomic.Bool // an eventfd write is pending
	mu       sync.Mutex
	reaps    []*conn
	stop     bool
}

// newNetpoll creates n pollers (not started).
func newNetpoll(s *Server, n int) (*netpoll, error) {
	np := &netpoll{srv: s}
	for range n {
		p, err := newPoller(np)
		if err != nil {
			np.closeFDs()
			return nil, err
		}
		np.pollers = append(np.pollers, p)
	}
	return np, nil
}

func newPoller(np *netpoll) (*poller, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	wake, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(epfd)
		return nil, err
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(wake)}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wake, &ev); err != nil {
		unix.Close(epfd)
		unix.Close(wake)
		return nil, err
	}
	return &poller{np: np, epfd: epfd, wake: wake, buf: make([]byte, pollReadBuf)}, nil
}

// pollerCount is how many pollers a gateway runs: reads are rare (pongs,
// the odd client message), so a few suffice; more than one lets a backlog
// drain on another core.
func pollerCount() int { return min(runtime.GOMAXPROCS(0), 4) }

func (np *netpoll) start() {
	for _, p := range np.pollers {
		np.wg.Add(1)
		go func() {
			defer np.wg.Done()
			p.run()
		}()
	}
}

// stop ends the pollers and waits for them; every connection must have
// been reaped before.
func (np *netpoll) stop() {
	for _, p := range np.pollers {
		p.mu.Lock()
		p.stop = true
		p.mu.Unlock()
		p.signal()
	}
	np.wg.Wait()
	np.closeFDs()
}

func (np *netpoll) closeFDs() {
	for _, p := range np.pollers {
		unix.Close(p.epfd)
		unix.Close(p.wake)
	}
	np.pollers = nil
}

// register adds c to a poller. Frames c queued before (the welcome and a
// catch-up under pushback) make it ask for writability at once. It reports
// false if c was closed already: the caller then reaps it.
func (np *netpoll) register(c *conn) bool {
	p := np.pollers[c.fd%len(np.pollers)]
	c.gen = np.gen.Add(1)
	np.mu.Lock()
	if c.fd >= len(np.byFD) {
		n := max(2*len(np.byFD), c.fd+1, 1024)
		grown := make([]*conn, n)
		copy(grown, np.byFD)
		np.byFD = grown
	}
	np.byFD[c.fd] = c
	np.mu.Unlock()

	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		np.forget(c)
		return false
	}
	events := uint32(evRead)
	if len(c.backlog) > 0 {
		events |= evWrite
		c.outArmed = true
	}
	ev := unix.EpollEvent{Events: events, Fd: int32(c.fd), Pad: int32(c.gen)}
	if err := unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, c.fd, &ev); err != nil {
		np.forget(c)
		c.outArmed = false
		np.srv.log.Warn("cannot watch connection", "err", err)
		return false
	}
	c.poll = p
	return true
}

// forget removes c from the descriptor table.
func (np *netpoll) forget(c *conn) {
	np.mu.Lock()
	if c.fd < len(np.byFD) && np.byFD[c.fd] == c {
		np.byFD[c.fd] = nil
	}
	np.mu.Unlock()
}

func (np *netpoll) lookup(fd int32, gen uint32) *conn {
	np.mu.RLock()
	defer np.mu.RUnlock()
	if int(fd) < len(np.byFD) {
		if c := np.byFD[fd]; c != nil && c.gen == gen {
			return c
		}
	}
	return nil
}

// all returns every registered connection.
func (np *netpoll) all(dst []*conn) []*conn {
	np.mu.RLock()
	defer np.mu.RUnlock()
	for _, c := range np.byFD {
		if c != nil {
			dst = append(dst, c)
		}
	}
	return dst
}

// setWrite asks for (or stops asking for) writability of c; c.mu held.
func (c *conn) setWriteLocked(on bool) {
	if c.poll == nil || c.outArmed == on {
		return
	}
	events := uint32(evRead)
	if on {
		events |= evWrite
	}
	ev := unix.EpollEvent{Events: events, Fd: int32(c.fd), Pad: int32(c.gen)}
	if err := unix.EpollCtl(c.poll.epfd, unix.EPOLL_CTL_MOD, c.fd, &ev); err == nil {
		c.outArmed = on
	}
}

// reapLater hands a closed, registered connection to its poller.
func (p *poller) reapLater(c *conn) {
	p.mu.Lock()
	p.reaps = append(p.reaps, c)
	p.mu.Unlock()
	p.signal()
}

func (p *poller) signal() {
	if !p.signaled.CompareAndSwap(false, true) {
		return
	}
	var one [8]byte
	binary.NativeEndian.PutUint64(one[:], 1)
	_, _ = unix.Write(p.wake, one[:])
}

// run is the poller goroutine.
func (p *poller) run() {
	events := make([]unix.EpollEvent, 256)
	for {
		n, err := unix.EpollWait(p.epfd, events, -1)
		if err != nil {
			if err == unix.EINTR {
				continue
			}
			p.np.srv.log.Error("epoll_wait failed; connections are no longer read", "err", err)
			return
		}
		var now int64
		for i := range events[:n] {
			ev := &events[i]
			if int(ev.Fd) == p.wake {
				if p.serveWake() {
					return
				}
				continue
			}
			c := p.np.lookup(ev.Fd, uint32(ev.Pad))
			if c == nil {
				continue // a connection reaped since this batch was taken
			}
			if ev.Events&(unix.EPOLLOUT|unix.EPOLLERR|unix.EPOLLHUP) != 0 {
				c.writeBacklog()
			}
			if ev.Events&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLERR|unix.EPOLLHUP) != 0 {
				if now == 0 {
					now = time.Now().UnixNano()
				}
				p.read(c, now)
			}
		}
	}
}

// serveWake reaps the connections handed over; true means stop.
func (p *poller) serveWake() bool {
	var b [8]byte
	_, _ = unix.Read(p.wake, b[:])
	p.signaled.Store(false) // before taking the list: a later request signals again
	p.mu.Lock()
	reaps, stop := p.reaps, p.stop
	p.reaps = nil
	p.mu.Unlock()
	for _, c := range reaps {
		p.np.srv.reap(c)
	}
	return stop
}

// read reads what c has (one buffer's worth) and handles it.
func (p *poller) read(c *conn, now int64) {
	if c.isClosed() {
		p.np.srv.reap(c)
		return
	}
	n, err := netfd.Read(c.fd, p.buf)
	if err == unix.EAGAIN {
		return
	}
	if n <= 0 || err != nil {
		// The peer closed or reset the connection.
		c.close(ws.StatusGoingAway)
		p.np.srv.reap(c)
		return
	}
	c.lastRead.Store(now)
	if c.inputDone {
		return // closing: the rest of what the client sends is not read
	}
	if !c.handle(p.buf[:n]) {
		// Its last frames are queued or it is closed: it leaves its room
		// now, and is reaped once the frames are out.
		c.inputDone = true
		p.np.srv.removeConn(c)
		if c.isClosed() {
			p.np.srv.reap(c)
		}
	}
}
