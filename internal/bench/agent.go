package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gobwas/ws"

	"github.com/liveroom/liveroom/client"
	"github.com/liveroom/liveroom/internal/auth"
	"github.com/liveroom/liveroom/internal/netfd"
	"github.com/liveroom/liveroom/internal/protocol"
)

// AgentSpec configures a process that holds viewers (the parent itself with
// --procs 0, or each child).
type AgentSpec struct {
	DispatchURL        string   `json:"dispatch_url"`
	Secret             string   `json:"secret,omitempty"`
	Gateways           []string `json:"gateways,omitempty"`
	ConnectConcurrency int      `json:"connect_concurrency"`
	DispatchBatch      int      `json:"dispatch_batch"`
	// Pollers is the number of epoll reader goroutines; default 2.
	Pollers int `json:"pollers"`
	// UserPrefix makes viewer user ids unique across processes.
	UserPrefix string `json:"user_prefix"`
	// NoCompress: viewers do not offer permessage-deflate.
	NoCompress bool `json:"no_compress,omitempty"`
}

// ConnectCmd asks an agent to open viewer connections.
type ConnectCmd struct {
	Rooms []RoomPlan `json:"rooms"`
	// Rate is new connections per second; 0 dials as fast as the
	// connection concurrency allows.
	Rate float64 `json:"rate"`
	// TCPAddr, in floor mode, is a raw TCP server to connect to instead of
	// dispatch and the gateways.
	TCPAddr string `json:"tcp_addr,omitempty"`
}

// ConnectResult tells how a ConnectCmd went.
type ConnectResult struct {
	Attempted int `json:"attempted"`
	Opened    int `json:"opened"`   // upgrades (or TCP connects) that succeeded
	Welcomed  int `json:"welcomed"` // connections whose welcome frame arrived
	Failed    int `json:"failed"`
	// Seconds runs from the first dial to the last welcome.
	Seconds float64 `json:"seconds"`
}

func (r *ConnectResult) add(o ConnectResult) {
	r.Attempted += o.Attempted
	r.Opened += o.Opened
	r.Welcomed += o.Welcomed
	r.Failed += o.Failed
	r.Seconds = max(r.Seconds, o.Seconds)
}

// Progress is an agent's cumulative counters, sampled while it runs.
type Progress struct {
	Open     int64             `json:"open"`
	Welcomed int64             `json:"welcomed"`
	Dropped  int64             `json:"dropped"`
	Frames   int64             `json:"frames"`
	Bytes    int64             `json:"bytes"`
	Plain    int64             `json:"plain_bytes"`
	ZFrames  int64             `json:"compressed_frames"`
	Msgs     [numClasses]int64 `json:"msgs"`
	P99      [numClasses]int64 `json:"p99_us"`
	Errors   int64             `json:"errors"`
	Reconn   int64             `json:"reconnect_frames"`
	// Waits counts dispatch's wait answers (every gateway full); Waited
	// the viewers told to wait at least once.
	Waits  int64    `json:"waits"`
	Waited int64    `json:"waited"`
	_      struct{} `json:"-"`
}

func (p *Progress) add(o Progress) {
	p.Open += o.Open
	p.Welcomed += o.Welcomed
	p.Dropped += o.Dropped
	p.Frames += o.Frames
	p.Bytes += o.Bytes
	p.Plain += o.Plain
	p.ZFrames += o.ZFrames
	for i := range p.Msgs {
		p.Msgs[i] += o.Msgs[i]
		p.P99[i] = max(p.P99[i], o.P99[i])
	}
	p.Errors += o.Errors
	p.Reconn += o.Reconn
	p.Waits += o.Waits
	p.Waited += o.Waited
}

// AgentReport is what an agent saw during one measurement window.
type AgentReport struct {
	Seconds  float64           `json:"seconds"`
	Open     int64             `json:"open"`
	Welcomed int64             `json:"welcomed"`
	Dropped  int64             `json:"dropped"` // connections lost in the window
	Frames   int64             `json:"frames"`
	Bytes    int64             `json:"bytes"`
	Plain    int64             `json:"plain_bytes"`
	ZFrames  int64             `json:"compressed_frames"`
	Msgs     map[string]int64  `json:"msgs"`
	Delay    Hists             `json:"delay"`
	Connect  *Hist             `json:"connect"`
	Groups   []*Group          `json:"groups"`
	Errors   map[string]int    `json:"errors,omitempty"`
	Examples map[string]string `json:"error_examples,omitempty"`
	// CPUSeconds is the agent process's own CPU in the window.
	CPUSeconds float64 `json:"cpu_seconds"`
	Reconn     int64   `json:"reconnect_frames"`
}

func (r *AgentReport) merge(o *AgentReport) {
	r.Seconds = max(r.Seconds, o.Seconds)
	r.Open += o.Open
	r.Welcomed += o.Welcomed
	r.Dropped += o.Dropped
	r.Frames += o.Frames
	r.Bytes += o.Bytes
	r.Plain += o.Plain
	r.ZFrames += o.ZFrames
	if r.Msgs == nil {
		r.Msgs = map[string]int64{}
	}
	for k, v := range o.Msgs {
		r.Msgs[k] += v
	}
	if r.Delay == nil {
		r.Delay = Hists{}
	}
	r.Delay.Merge(o.Delay)
	if r.Connect == nil {
		r.Connect = NewHist()
	}
	r.Connect.Merge(o.Connect)
	r.Groups = mergeGroups(r.Groups, o.Groups)
	for k, v := range o.Errors {
		if r.Errors == nil {
			r.Errors = map[string]int{}
		}
		r.Errors[k] += v
	}
	for k, v := range o.Examples {
		if r.Examples == nil {
			r.Examples = map[string]string{}
		}
		if _, ok := r.Examples[k]; !ok {
			r.Examples[k] = v
		}
	}
	r.CPUSeconds += o.CPUSeconds
	r.Reconn += o.Reconn
}

// errCounter counts errors by class and keeps one example of each.
type errCounter struct {
	mu sync.Mutex
	n  map[string]int
	ex map[string]string
	t  atomic.Int64
}

func (e *errCounter) add(class string, err error) {
	e.t.Add(1)
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.n == nil {
		e.n, e.ex = map[string]int{}, map[string]string{}
	}
	e.n[class]++
	if _, ok := e.ex[class]; !ok && err != nil {
		e.ex[class] = err.Error()
	}
}

func (e *errCounter) snapshot() (map[string]int, map[string]string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	n, ex := map[string]int{}, map[string]string{}
	for k, v := range e.n {
		n[k] = v
	}
	for k, v := range e.ex {
		ex[k] = v
	}
	return n, ex
}

// errClass names an error for counting: bounded, stable names.
func errClass(prefix string, err error) string {
	var ae *client.APIError
	var ne net.Error
	switch {
	case errors.As(err, &ae):
		code := ae.Body.Code
		if code == "" {
			code = "http"
		}
		return fmt.Sprintf("%s_%d_%s", prefix, ae.Status, code)
	case errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE):
		return prefix + "_emfile"
	case errors.Is(err, syscall.ECONNREFUSED):
		return prefix + "_refused"
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return prefix + "_no_local_port"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return prefix + "_reset"
	case errors.As(err, &ne) && ne.Timeout(), errors.Is(err, context.DeadlineExceeded):
		return prefix + "_timeout"
	}
	return prefix + "_other"
}

// Agent holds viewer connections in this process. Its methods are safe for
// concurrent use, but Connect, Mark, Report and Drop are meant to be called
// one at a time by the orchestrator.
type Agent struct {
	spec    AgentSpec
	pollers []*poller
	hc      *http.Client
	signer  *auth.Signer
	errs    errCounter
	seq     atomic.Int64
	rr      atomic.Uint64
	// waits and waited count dispatch's wait answers and the viewers that
	// got one.
	waits, waited atomic.Int64

	roomMu  sync.RWMutex
	rooms   []string
	roomIdx map[string]int32

	devMu  sync.Mutex
	devTok map[int]string

	dispMu sync.Mutex
	disp   map[string]*cachedDispatch

	markAt   time.Time
	markProg Progress
	markCPU  time.Duration
}

type cachedDispatch struct {
	gws  []client.Gateway
	uses int
}

// NewAgent starts the poller goroutines.
func NewAgent(spec AgentSpec) (*Agent, error) {
	if spec.Pollers <= 0 {
		spec.Pollers = 2
	}
	if spec.ConnectConcurrency <= 0 {
		spec.ConnectConcurrency = 64
	}
	if spec.DispatchBatch <= 0 {
		spec.DispatchBatch = 1
	}
	if spec.UserPrefix == "" {
		spec.UserPrefix = "bv" + randHex(3) + "-"
	}
	a := &Agent{
		spec: spec, roomIdx: map[string]int32{}, devTok: map[int]string{}, disp: map[string]*cachedDispatch{},
		hc: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			MaxIdleConns: spec.ConnectConcurrency, MaxIdleConnsPerHost: spec.ConnectConcurrency, IdleConnTimeout: 30 * time.Second,
		}},
	}
	if spec.Secret != "" {
		s, err := auth.NewSigner([]byte(spec.Secret))
		if err != nil {
			return nil, fmt.Errorf("cannot mint tokens: %w", err)
		}
		a.signer = s
	}
	for range spec.Pollers {
		p, err := newPoller(a)
		if err != nil {
			a.Close()
			return nil, fmt.Errorf("cannot start poller: %w", err)
		}
		a.pollers = append(a.pollers, p)
		go p.run()
	}
	return a, nil
}

func (a *Agent) roomName(i int32) string {
	a.roomMu.RLock()
	defer a.roomMu.RUnlock()
	return a.rooms[i]
}

func (a *Agent) roomIndex(id string) int32 {
	a.roomMu.Lock()
	defer a.roomMu.Unlock()
	if i, ok := a.roomIdx[id]; ok {
		return i
	}
	i := int32(len(a.rooms))
	a.rooms = append(a.rooms, id)
	a.roomIdx[id] = i
	return i
}

// Progress sums the pollers' counters.
func (a *Agent) Progress() Progress {
	var p Progress
	for _, pl := range a.pollers {
		p.add(pl.ctr.progress())
	}
	p.Errors = a.errs.t.Load()
	p.Waits, p.Waited = a.waits.Load(), a.waited.Load()
	return p
}

// Connect opens the viewers of cmd, paced at cmd.Rate, and waits (up to 15
// s after the last dial) for their welcome frames.
func (a *Agent) Connect(ctx context.Context, cmd ConnectCmd) ConnectResult {
	var order []int32
	for _, rp := range cmd.Rooms {
		idx := a.roomIndex(rp.Room)
		for range rp.Viewers {
			order = append(order, idx)
		}
	}
	// Interleave the rooms, as a real join storm would.
	rand.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
	res := ConnectResult{Attempted: len(order)}
	before := a.Progress().Welcomed
	start := time.Now()
	jobs := make(chan int32, a.spec.ConnectConcurrency)
	var opened, failed atomic.Int64
	var wg sync.WaitGroup
	for range a.spec.ConnectConcurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for room := range jobs {
				var err error
				if cmd.TCPAddr != "" {
					err = a.dialTCP(ctx, cmd.TCPAddr, room)
				} else {
					err = a.dialViewer(ctx, room)
				}
				if err != nil {
					failed.Add(1)
				} else {
					opened.Add(1)
				}
			}
		}()
	}
feed:
	for i, room := range order {
		if cmd.Rate > 0 {
			at := start.Add(time.Duration(float64(i) / cmd.Rate * float64(time.Second)))
			if d := time.Until(at); d > 0 {
				select {
				case <-ctx.Done():
					break feed
				case <-time.After(d):
				}
			}
		}
		select {
		case jobs <- room:
		case <-ctx.Done():
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	res.Opened, res.Failed = int(opened.Load()), int(failed.Load())
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if int(a.Progress().Welcomed-before) >= res.Opened {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	res.Welcomed = int(a.Progress().Welcomed - before)
	res.Seconds = time.Since(start).Seconds()
	return res
}

func (a *Agent) nextPoller() *poller {
	return a.pollers[a.rr.Add(1)%uint64(len(a.pollers))]
}

// maxWait bounds how long one viewer waits for a gateway when dispatch
// keeps asking it to wait: past it, the join counts as refused.
const maxWait = 30 * time.Second

// dispatch asks dispatch for room's gateways, waiting and asking again as
// long as it answers "wait" (every gateway full), as the Go client does.
func (a *Agent) dispatch(ctx context.Context, room string) ([]client.Gateway, error) {
	a.dispMu.Lock()
	c := a.disp[room]
	if c != nil && c.uses < a.spec.DispatchBatch {
		c.uses++
		gws := c.gws
		a.dispMu.Unlock()
		return gws, nil
	}
	a.dispMu.Unlock()
	var ans client.DispatchAnswer
	start := time.Now()
	for attempt := 0; ; attempt++ {
		var err error
		ans, err = client.DispatchWith(ctx, a.hc, a.spec.DispatchURL, room, client.DispatchParams{Attempt: attempt})
		if err != nil {
			return nil, err
		}
		wait := ans.Wait()
		if wait == 0 {
			break
		}
		a.waits.Add(1)
		if attempt == 0 {
			a.waited.Add(1)
		}
		if time.Since(start)+wait > maxWait {
			return nil, fmt.Errorf("dispatch still asked to wait after %v", time.Since(start).Round(time.Second))
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
	}
	gws := ans.Gateways
	if len(a.spec.Gateways) > 0 {
		gws = slices.DeleteFunc(slices.Clone(gws), func(g client.Gateway) bool { return !slices.Contains(a.spec.Gateways, g.ID) })
		if len(gws) == 0 {
			return nil, fmt.Errorf("dispatch offered none of the gateways %v", a.spec.Gateways)
		}
	}
	if a.spec.DispatchBatch > 1 {
		a.dispMu.Lock()
		a.disp[room] = &cachedDispatch{gws: gws, uses: 1}
		a.dispMu.Unlock()
	}
	return gws, nil
}

// devTokenPool is how many dev-mode viewer identities an agent uses.
const devTokenPool = 4096

func (a *Agent) token(ctx context.Context, n int64) (string, error) {
	user := a.spec.UserPrefix + strconv.FormatInt(n, 10)
	if a.signer != nil {
		return a.signer.Mint(protocol.User(user), user, protocol.RoleViewer, 24*time.Hour)
	}
	// Dev mode: a pool of dev tokens minted as they are first needed. Viewers
	// share them, but few enough per user that a gateway's per-user cap
	// (20 by default) is not reached: 19,000 viewers on one gateway are 5 per
	// user.
	slot := int(n % devTokenPool)
	a.devMu.Lock()
	defer a.devMu.Unlock()
	if t, ok := a.devTok[slot]; ok {
		return t, nil
	}
	t, err := client.DevToken(ctx, a.spec.DispatchURL, a.spec.UserPrefix+strconv.Itoa(slot), "", protocol.RoleViewer)
	if err != nil {
		return "", err
	}
	a.devTok[slot] = t
	return t, nil
}

// dialViewer joins room through dispatch like a client: ask dispatch, try
// its gateways in order.
func (a *Agent) dialViewer(ctx context.Context, room int32) error {
	name := a.roomName(room)
	dialAt := time.Now().UnixMicro()
	gws, err := a.dispatch(ctx, name)
	if err != nil {
		a.errs.add(errClass("dispatch", err), err)
		return err
	}
	tok, err := a.token(ctx, a.seq.Add(1))
	if err != nil {
		a.errs.add(errClass("token", err), err)
		return err
	}
	var last error
	for _, gw := range gws {
		u, err := client.GatewayURL(a.spec.DispatchURL, gw.URL, name, tok, 0, false)
		if err != nil {
			a.errs.add("gateway_url", err)
			return err
		}
		fd, deflate, rest, err := dialWS(ctx, u, a.dialer(), a.spec.NoCompress)
		if err == nil {
			a.nextPoller().request(pollerReq{op: "add", conns: []*vconn{{fd: int32(fd), room: room, group: -1, dialAt: dialAt, partial: rest, deflate: deflate}}})
			return nil
		}
		last = err
		var ae *client.APIError
		if !errors.As(err, &ae) || ae.Status != http.StatusServiceUnavailable {
			break
		}
	}
	a.errs.add(errClass("ws", last), last)
	return last
}

func (a *Agent) dialTCP(ctx context.Context, addr string, room int32) error {
	c, err := a.dialer().DialContext(ctx, "tcp", addr)
	if err != nil {
		a.errs.add(errClass("tcp", err), err)
		return err
	}
	fd, err := netfd.Detach(c)
	if err != nil {
		a.errs.add(errClass("tcp", err), err)
		return err
	}
	a.nextPoller().request(pollerReq{op: "add", conns: []*vconn{{fd: int32(fd), room: room, group: -1, raw: true, dialAt: time.Now().UnixMicro()}}})
	return nil
}

// ipBindAddressNoPort is Linux's IP_BIND_ADDRESS_NO_PORT: bind the source
// address now, pick the port at connect time by the whole 4-tuple.
const ipBindAddressNoPort = 24

// dialer spreads the viewers' connections over source addresses 127.0.0.2
// to 127.0.0.251. From one source address every connect searches one
// ephemeral port range of 28k ports for a free one, and with tens of
// thousands of connections open (and more in TIME_WAIT from a previous run)
// that search cost the bench more CPU than the rest of a join: 56 % of a
// child's CPU in connect(2) at 19,000 connections. Real viewers come from
// many addresses.
func (a *Agent) dialer() *net.Dialer {
	n := a.rr.Add(1)
	ip := net.IPv4(127, 0, 0, byte(2+n%250))
	return &net.Dialer{
		LocalAddr: &net.TCPAddr{IP: ip},
		Control: func(_, _ string, c syscall.RawConn) error {
			return c.Control(func(fd uintptr) {
				_ = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IP, ipBindAddressNoPort, 1)
			})
		},
	}
}

// recConn records what the WebSocket handshake reads, so that frame bytes
// read along with the upgrade answer are not lost when the descriptor is
// taken over.
type recConn struct {
	net.Conn
	rec []byte
}

func (r *recConn) Read(p []byte) (int, error) {
	n, err := r.Conn.Read(p)
	r.rec = append(r.rec, p[:max(n, 0)]...)
	return n, err
}

// dialWS opens a gateway WebSocket with the public client's dialer (its
// handshake, its permessage-deflate offer unless noCompress, and its error
// answers), then takes the socket out of Go's netpoller: it returns a
// duplicate descriptor in non-blocking mode, whether compression was
// negotiated, and the bytes read past the upgrade answer.
func dialWS(ctx context.Context, u string, nd *net.Dialer, noCompress bool) (int, bool, []byte, error) {
	var rc *recConn
	d := client.Dialer{ReadTimeout: -1, NoCompression: noCompress, WS: ws.Dialer{
		Timeout: 15 * time.Second,
		NetDial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := nd.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			rc = &recConn{Conn: c}
			return rc, nil
		},
	}}
	gc, err := d.Dial(ctx, u)
	if err != nil {
		if rc != nil {
			rc.Conn.Close()
		}
		return -1, false, nil, err
	}
	var rest []byte
	if i := bytes.Index(rc.rec, []byte("\r\n\r\n")); i >= 0 && i+4 < len(rc.rec) {
		rest = append([]byte(nil), rc.rec[i+4:]...)
	}
	fd, err := netfd.Detach(rc.Conn)
	return fd, gc.Compressed(), rest, err
}

// Mark opens a measurement window: delay histograms and per-viewer window
// counters start from zero, and viewers connected now are the ones whose
// gifts are checked.
func (a *Agent) Mark() {
	a.markAt = time.Now()
	a.markProg = a.Progress()
	a.markCPU = processCPU()
	for _, p := range a.pollers {
		p.do("mark", a.markAt.UnixMilli())
	}
}

// Report closes the window opened by Mark.
func (a *Agent) Report() *AgentReport {
	now := a.Progress()
	r := &AgentReport{
		Seconds: time.Since(a.markAt).Seconds(), Open: now.Open, Welcomed: now.Welcomed,
		Dropped: now.Dropped - a.markProg.Dropped, Frames: now.Frames - a.markProg.Frames, Bytes: now.Bytes - a.markProg.Bytes,
		Plain: now.Plain - a.markProg.Plain, ZFrames: now.ZFrames - a.markProg.ZFrames,
		Msgs: map[string]int64{}, Delay: Hists{}, Connect: NewHist(), Reconn: now.Reconn - a.markProg.Reconn,
		CPUSeconds: (processCPU() - a.markCPU).Seconds(),
	}
	for i, n := range now.Msgs {
		if d := n - a.markProg.Msgs[i]; d > 0 {
			r.Msgs[classNames[i]] = d
		}
	}
	for _, p := range a.pollers {
		pr := p.do("report", 0)
		r.Delay.Merge(pr.delay)
		r.Connect.Merge(pr.connect)
		r.Groups = mergeGroups(r.Groups, pr.groups)
	}
	r.Errors, r.Examples = a.errs.snapshot()
	return r
}

// Drop closes every connection but keeps the agent.
func (a *Agent) Drop() {
	for _, p := range a.pollers {
		p.do("drop", 0)
	}
}

// Close closes every connection and stops the pollers.
func (a *Agent) Close() {
	for _, p := range a.pollers {
		p.do("stop", 0)
	}
	a.hc.CloseIdleConnections()
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// shortErr trims an error message for one-line display.
func shortErr(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > 160 {
		s = s[:160] + "…"
	}
	return s
}
