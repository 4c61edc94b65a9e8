//go:build linux

package bench

import (
	"syscall"
	"time"
)

func newPoller(a *Agent) (*poller, error) {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	r1, _, e := syscall.Syscall(syscall.SYS_EVENTFD2, 0, syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if e != 0 {
		syscall.Close(epfd)
		return nil, e
	}
	p := &poller{
		agent: a, epfd: epfd, wake: int(r1), buf: make([]byte, 256<<10),
		conns: map[int32]*vconn{}, groupIdx: map[groupKeyIdx]int32{}, giftIdx: map[string]uint32{},
		connect: NewHist(), done: make(chan struct{}),
	}
	for i := range p.delay {
		p.delay[i] = NewHist()
	}
	if err := epollAdd(epfd, p.wake); err != nil {
		syscall.Close(epfd)
		syscall.Close(p.wake)
		return nil, err
	}
	return p, nil
}

// run is the poller goroutine; it returns after a "stop" request.
func (p *poller) run() {
	defer close(p.done)
	events := make([]syscall.EpollEvent, 512)
	lastP99 := time.Now()
	for {
		n, err := syscall.EpollWait(p.epfd, events, 500)
		if err != nil && err != syscall.EINTR {
			p.agent.errs.add("epoll", err)
			return
		}
		now := time.Now()
		nowUS := now.UnixMicro()
		for _, ev := range events[:max(n, 0)] {
			if int(ev.Fd) == p.wake {
				if p.serveRequests(nowUS) {
					return
				}
				continue
			}
			c := p.conns[ev.Fd]
			if c == nil {
				continue
			}
			p.readConn(c, nowUS, ev.Events)
		}
		if now.Sub(lastP99) >= time.Second {
			lastP99 = now
			for i, h := range p.delay {
				p.ctr.p99[i].Store(h.Quantile(0.99))
			}
		}
	}
}

func epollAdd(epfd, fd int) error {
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP, Fd: int32(fd)}
	return syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, fd, &ev)
}
