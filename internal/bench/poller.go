package bench

import (
	"encoding/binary"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
)

// The viewer side of the bench must read up to 18,000 connections per
// process, on the same two cores as the gateway it measures, so it keeps
// no goroutine and no buffer per connection: each connection is a bare
// file descriptor in an epoll set, read by one poller goroutine into that
// poller's shared buffer. Only a frame split across reads is copied aside.

// vconn is one viewer connection, owned by its poller goroutine.
type vconn struct {
	fd      int32
	room    int32 // index into the agent's room ids
	group   int32 // index into the poller's groups, -1 before the welcome
	raw     bool  // floor mode: plain TCP, bytes only
	deflate bool  // negotiated permessage-deflate: RSV1 frames are compressed
	dialAt  int64 // unix µs the dial started
	partial []byte

	welcomed bool
	inWindow bool     // welcomed before the window opened
	live     int64    // in-window live messages received
	doubled  int64    // gift deliveries repeated
	gifts    []uint32 // interned gift ids received, sorted
}

// class indexes of the per-class counters.
const (
	clsDanmaku = iota
	clsGift
	clsLike
	clsCount
	clsOther
	numClasses
)

var classNames = [numClasses]string{"danmaku", "gift", "like", "count", "other"}

func classOf(t []byte) int {
	switch string(t) {
	case "danmaku":
		return clsDanmaku
	case "gift":
		return clsGift
	case "like":
		return clsLike
	case "count":
		return clsCount
	}
	return clsOther
}

// pollerCounters are read by the progress reporter while the poller runs.
type pollerCounters struct {
	open     atomic.Int64 // registered connections
	welcomed atomic.Int64 // welcomes received (cumulative)
	dropped  atomic.Int64 // connections lost after their welcome
	frames   atomic.Int64
	bytes    atomic.Int64 // as read from the sockets
	plain    atomic.Int64 // what the frames would take uncompressed
	zframes  atomic.Int64 // frames that came compressed
	msgs     [numClasses]atomic.Int64
	p99      [numClasses]atomic.Int64 // µs, refreshed every second
	errFrame atomic.Int64             // error frames received
	reconn   atomic.Int64             // reconnect frames received
}

// progress is a snapshot of the counters (Errors left zero: the agent
// counts errors).
func (c *pollerCounters) progress() Progress {
	p := Progress{
		Open: c.open.Load(), Welcomed: c.welcomed.Load(), Dropped: c.dropped.Load(),
		Frames: c.frames.Load(), Bytes: c.bytes.Load(), Reconn: c.reconn.Load(),
		Plain: c.plain.Load(), ZFrames: c.zframes.Load(),
	}
	for i := range p.Msgs {
		p.Msgs[i] = c.msgs[i].Load()
		p.P99[i] = c.p99[i].Load()
	}
	return p
}

type pollerReq struct {
	op    string // "add", "mark", "report", "drop"
	conns []*vconn
	mark  int64 // unix ms
	reply chan pollerReply
}

type pollerReply struct {
	delay   Hists
	connect *Hist
	groups  []*Group
}

type groupKeyIdx struct {
	gw   string
	room int32
}

// poller reads a set of viewer connections with one epoll instance.
type poller struct {
	agent *Agent
	epfd  int
	wake  int // eventfd that interrupts epoll_wait for requests
	buf   []byte
	ctr   pollerCounters

	mu   sync.Mutex
	reqs []pollerReq

	// Owned by the poller goroutine.
	conns    map[int32]*vconn
	groups   []*Group
	groupIdx map[groupKeyIdx]int32
	giftIdx  map[string]uint32
	giftIDs  []string
	delay    [numClasses]*Hist
	connect  *Hist
	markMS   int64
	msgs     []msgFields
	frame    frameFields
	inflate  inflateCache
	done     chan struct{}
}

// request hands r to the poller goroutine and wakes it.
func (p *poller) request(r pollerReq) {
	p.mu.Lock()
	p.reqs = append(p.reqs, r)
	p.mu.Unlock()
	var one [8]byte
	binary.NativeEndian.PutUint64(one[:], 1)
	_, _ = syscall.Write(p.wake, one[:])
}

// do sends a request and waits for its reply.
func (p *poller) do(op string, mark int64) pollerReply {
	ch := make(chan pollerReply, 1)
	p.request(pollerReq{op: op, mark: mark, reply: ch})
	select {
	case r := <-ch:
		return r
	case <-p.done:
		return pollerReply{}
	}
}

// serveRequests runs queued requests; true means stop.
func (p *poller) serveRequests(nowUS int64) bool {
	var b [8]byte
	_, _ = syscall.Read(p.wake, b[:])
	p.mu.Lock()
	reqs := p.reqs
	p.reqs = nil
	p.mu.Unlock()
	for _, r := range reqs {
		switch r.op {
		case "add":
			for _, c := range r.conns {
				p.add(c, nowUS)
			}
		case "mark":
			p.markMS = r.mark
			for _, h := range p.delay {
				h.Reset()
			}
			for _, c := range p.conns {
				c.inWindow = c.welcomed
				c.live = 0
				c.gifts = c.gifts[:0]
				c.doubled = 0
			}
			clear(p.giftIdx)
			p.giftIDs = p.giftIDs[:0]
			r.reply <- pollerReply{}
		case "report":
			r.reply <- p.report()
		case "drop":
			for _, c := range p.conns {
				p.closeConn(c)
			}
			r.reply <- pollerReply{}
		case "stop":
			for _, c := range p.conns {
				p.closeConn(c)
			}
			syscall.Close(p.epfd)
			syscall.Close(p.wake)
			if r.reply != nil {
				r.reply <- pollerReply{}
			}
			return true
		}
	}
	return false
}

func (p *poller) add(c *vconn, nowUS int64) {
	if err := epollAdd(p.epfd, int(c.fd)); err != nil {
		p.agent.errs.add("epoll_add", err)
		syscall.Close(int(c.fd))
		return
	}
	p.conns[c.fd] = c
	p.ctr.open.Add(1)
	if c.raw {
		c.welcomed = true
		p.ctr.welcomed.Add(1)
	}
	if len(c.partial) > 0 {
		// Bytes that came with the handshake answer.
		b := c.partial
		c.partial = nil
		p.consume(c, b, nowUS)
	}
}

func (p *poller) closeConn(c *vconn) {
	if _, ok := p.conns[c.fd]; !ok {
		return
	}
	delete(p.conns, c.fd)
	// Reset rather than close: the bench is the active closer, and 19,000
	// sockets in TIME_WAIT would hold their ports for a minute, slowing the
	// next run's connects (or exhausting the port range).
	_ = syscall.SetsockoptLinger(int(c.fd), syscall.SOL_SOCKET, syscall.SO_LINGER, &syscall.Linger{Onoff: 1})
	syscall.Close(int(c.fd)) // also leaves the epoll set
	p.ctr.open.Add(-1)
}

// lost is a connection that ended while the bench still wanted it.
func (p *poller) lost(c *vconn, why string, err error) {
	if c.welcomed {
		p.ctr.dropped.Add(1)
	}
	p.agent.errs.add(why, err)
	p.closeConn(c)
}

func (p *poller) readConn(c *vconn, nowUS int64, events uint32) {
	n, err := syscall.Read(int(c.fd), p.buf)
	if err == syscall.EAGAIN || err == syscall.EINTR {
		return
	}
	if err != nil {
		p.lost(c, "read_error", err)
		return
	}
	if n == 0 {
		p.lost(c, "closed_by_server", nil)
		return
	}
	p.ctr.bytes.Add(int64(n))
	if c.raw {
		return
	}
	b := p.buf[:n]
	if len(c.partial) > 0 {
		c.partial = append(c.partial, b...)
		b = c.partial
	}
	p.consume(c, b, nowUS)
}

// consume parses whole WebSocket frames from b and keeps the rest.
func (p *poller) consume(c *vconn, b []byte, nowUS int64) {
	for {
		if len(b) < 2 {
			break
		}
		op := b[0] & 0x0f
		l := int64(b[1] & 0x7f)
		hl := 2
		switch l {
		case 126:
			if len(b) < 4 {
				goto keep
			}
			l, hl = int64(binary.BigEndian.Uint16(b[2:])), 4
		case 127:
			if len(b) < 10 {
				goto keep
			}
			l, hl = int64(binary.BigEndian.Uint64(b[2:])), 10
		}
		if b[1]&0x80 != 0 || b[0]&0x80 == 0 || l > 64<<20 || b[0]&0x30 != 0 {
			// Servers never mask, and the gateway never fragments.
			p.lost(c, "protocol_error", nil)
			return
		}
		if int64(len(b)-hl) < l {
			break
		}
		payload := b[hl : hl+int(l)]
		compressed := b[0]&0x40 != 0
		b = b[hl+int(l):]
		p.ctr.frames.Add(1)
		if compressed {
			var ok bool
			if payload, ok = p.inflate.get(payload); !c.deflate || !ok {
				p.lost(c, "bad_compressed_frame", nil)
				return
			}
			p.ctr.zframes.Add(1)
		}
		p.ctr.plain.Add(int64(plainHeaderLen(len(payload)) + len(payload)))
		switch op {
		case 1: // text
			if !p.text(c, payload, nowUS) {
				return
			}
		case 8: // close
			p.lost(c, "closed_by_server", nil)
			return
		case 9: // ping: answer with a masked pong (mask key 0)
			pong := make([]byte, 0, 6+len(payload))
			pong = append(pong, 0x8A, 0x80|byte(len(payload)), 0, 0, 0, 0)
			pong = append(pong, payload...)
			_, _ = syscall.Write(int(c.fd), pong)
		}
	}
	if len(b) == 0 {
		c.partial = c.partial[:0]
		if cap(c.partial) > 64<<10 {
			c.partial = nil
		}
		return
	}
keep:
	// b may alias the shared buffer or c.partial itself.
	c.partial = append(make([]byte, 0, len(b)+4096), b...)
}

// text handles one text frame; false means the connection was closed.
func (p *poller) text(c *vconn, payload []byte, nowUS int64) bool {
	var ok bool
	p.msgs, ok = scanFrame(payload, &p.frame, p.msgs[:0])
	if !ok {
		p.lost(c, "bad_frame", nil)
		return false
	}
	switch string(p.frame.typ) {
	case "welcome":
		if !c.welcomed {
			c.welcomed = true
			c.group = p.groupOf(string(p.frame.gateway), c.room)
			p.connect.Record(nowUS - c.dialAt)
			p.ctr.welcomed.Add(1)
		}
	case "batch":
		for i := range p.msgs {
			m := &p.msgs[i]
			cls := classOf(m.typ)
			p.ctr.msgs[cls].Add(1)
			if m.ts > 0 {
				p.delay[cls].Record(nowUS - m.ts*1000)
			}
			switch cls {
			case clsDanmaku:
				if p.markMS > 0 && m.ts >= p.markMS {
					c.live++
				}
			case clsGift:
				p.gift(c, m.id)
			}
		}
	case "reconnect":
		p.ctr.reconn.Add(1)
	case "error":
		p.ctr.errFrame.Add(1)
		p.agent.errs.add("error_frame_"+string(p.frame.code), nil)
	}
	return true
}

// gift records a gift id for c, counting a repeat as doubled.
func (p *poller) gift(c *vconn, id []byte) {
	idx, ok := p.giftIdx[string(id)]
	if !ok {
		idx = uint32(len(p.giftIDs))
		s := string(id)
		p.giftIdx[s] = idx
		p.giftIDs = append(p.giftIDs, s)
	}
	// Gifts arrive in order, so the id is nearly always new and largest.
	n := len(c.gifts)
	if n == 0 || c.gifts[n-1] < idx {
		c.gifts = append(c.gifts, idx)
		return
	}
	i := sort.Search(n, func(i int) bool { return c.gifts[i] >= idx })
	if i < n && c.gifts[i] == idx {
		c.doubled++
		return
	}
	c.gifts = append(c.gifts, 0)
	copy(c.gifts[i+1:], c.gifts[i:])
	c.gifts[i] = idx
}

func (p *poller) groupOf(gw string, room int32) int32 {
	k := groupKeyIdx{gw, room}
	if i, ok := p.groupIdx[k]; ok {
		return i
	}
	i := int32(len(p.groups))
	p.groups = append(p.groups, &Group{Gateway: gw, Room: p.agent.roomName(room)})
	p.groupIdx[k] = i
	return i
}

// report closes the window: histograms and per-group accounting of the
// viewers that stayed connected through it.
func (p *poller) report() pollerReply {
	r := pollerReply{delay: Hists{}, connect: NewHist()}
	for i, h := range p.delay {
		if h.Count() > 0 {
			r.delay.Get(classNames[i]).Merge(h)
		}
	}
	r.connect.Merge(p.connect)
	gs := make([]*Group, len(p.groups))
	for i, g := range p.groups {
		gs[i] = &Group{Gateway: g.Gateway, Room: g.Room}
	}
	for _, c := range p.conns {
		if !c.inWindow || c.group < 0 || c.raw {
			continue
		}
		g := gs[c.group]
		g.Stayed++
		g.Doubled += c.doubled
		g.LiveMax = max(g.LiveMax, c.live)
		g.LiveSum += c.live
		for _, idx := range c.gifts {
			g.addGift(p.giftIDs[idx], 1)
		}
	}
	for _, g := range gs {
		if g.Stayed > 0 {
			r.groups = append(r.groups, g)
		}
	}
	return r
}

// plainHeaderLen is the header length of an unmasked frame of n bytes.
func plainHeaderLen(n int) int {
	switch {
	case n <= 125:
		return 2
	case n <= 0xFFFF:
		return 4
	}
	return 10
}
