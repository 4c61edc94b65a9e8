package autoscale

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ProcessConfig configures the process actuator.
type ProcessConfig struct {
	// Binary is the liveroom binary to run. Default: this process's own
	// executable.
	Binary string
	// Args follow "gateway" on every child's command line: --nats-url and
	// the gateway tunables. The actuator adds --id, --addr and --public-url
	// after them.
	Args []string
	// Env is every child's whole environment (it must hold
	// LIVEROOM_JWT_SECRET). Nil means this process's environment.
	Env []string
	// ChildEnv, when set, returns variables added to Env for the child
	// with gateway id: its own NATS credential, bound to its id.
	ChildEnv func(id string) ([]string, error)
	// Host is the address children listen on. Default 127.0.0.1.
	Host string
	// PublicHost is the host in the WebSocket URL a child advertises.
	// Default Host, or localhost when Host is unspecified (0.0.0.0, ::).
	PublicHost string
	// PortMin and PortMax bound the children's ports; zero picks any free
	// port.
	PortMin, PortMax int
	// IDPrefix starts every child's gateway id; a counter follows. Default
	// "gw-" and six random hex digits, so that ids stay unique when the
	// parent restarts.
	IDPrefix string
	// Stdout and Stderr receive the children's output. Nil discards it.
	Stdout, Stderr io.Writer
	// StopTimeout is how long Remove waits for a child to exit after
	// SIGTERM (which drains it) before SIGKILL. It must be longer than the
	// gateway's drain budget. Default 60s.
	StopTimeout time.Duration
	// StartDelay holds every child this long between Add asking for it and
	// its process starting, as a pod waits to be scheduled and its image
	// pulled: for tests and benchmarks of a fleet whose gateways take time
	// to be ready. A held child is a member (starting) with its port
	// reserved. Default 0.
	StartDelay time.Duration
	// Logger; default slog.Default().
	Logger *slog.Logger
}

// Process is the actuator that runs gateways as child processes of this
// binary on this machine: each one is a separate process with its own file
// limit, which is how one machine holds more viewers than one process can.
// Children are killed if this process dies (Linux parent-death signal).
type Process struct {
	cfg ProcessConfig
	log *slog.Logger

	mu       sync.Mutex
	children map[string]*child
	next     int
	closed   bool
	wg       sync.WaitGroup
}

type child struct {
	id    string
	port  int
	cmd   *exec.Cmd
	since time.Time
	done  chan struct{} // closed when the process exited (or never started)
	// stopping is set once Remove or Close took the child in hand.
	stopping bool
	// started is set once the process runs; until then (StartDelay) abort
	// cancels the start.
	started   bool
	abort     chan struct{}
	abortOnce sync.Once
}

var _ Actuator = (*Process)(nil)

// NewProcess validates cfg and fills its defaults. It starts nothing.
func NewProcess(cfg ProcessConfig) (*Process, error) {
	if cfg.Binary == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("cannot find this binary to run gateways: %w", err)
		}
		cfg.Binary = exe
	}
	if cfg.Host == "" {
		cfg.Host = "127.0.0.1"
	}
	if cfg.PublicHost == "" {
		cfg.PublicHost = cfg.Host
		if ip := net.ParseIP(cfg.Host); ip != nil && ip.IsUnspecified() {
			cfg.PublicHost = "localhost"
		}
	}
	if cfg.PortMin < 0 || cfg.PortMax < cfg.PortMin || cfg.PortMax > 65535 {
		return nil, fmt.Errorf("cannot run gateways: bad port range %d-%d", cfg.PortMin, cfg.PortMax)
	}
	if cfg.PortMin == 0 {
		cfg.PortMax = 0
	}
	if cfg.IDPrefix == "" {
		var b [3]byte
		_, _ = rand.Read(b[:])
		cfg.IDPrefix = "gw-" + hex.EncodeToString(b[:]) + "-"
	}
	setDur(&cfg.StopTimeout, time.Minute)
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Stdout == nil {
		cfg.Stdout = io.Discard
	}
	if cfg.Stderr == nil {
		cfg.Stderr = io.Discard
	}
	return &Process{cfg: cfg, log: cfg.Logger.With("actuator", "process"), children: map[string]*child{}}, nil
}

// Members lists the children that run and are not being stopped.
func (p *Process) Members(context.Context) ([]Member, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]Member, 0, len(p.children))
	for _, c := range p.children {
		if !c.stopping {
			out = append(out, Member{ID: c.id, Since: c.since})
		}
	}
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

// PID returns the process id of child id (0 if unknown or not started
// yet).
func (p *Process) PID(id string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := p.children[id]; ok && c.started {
		return c.cmd.Process.Pid
	}
	return 0
}

// URL returns the WebSocket URL child id advertises ("" if unknown).
func (p *Process) URL(id string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := p.children[id]; ok {
		return p.publicURL(c.port)
	}
	return ""
}

func (p *Process) publicURL(port int) string {
	return "ws://" + net.JoinHostPort(p.cfg.PublicHost, strconv.Itoa(port)) + "/v1/ws"
}

// Add starts n gateway processes.
func (p *Process) Add(_ context.Context, n int) error {
	var errs []error
	for range n {
		if err := p.start(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (p *Process) start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return errors.New("cannot start a gateway: the process actuator is closed")
	}
	port, err := p.freePort()
	if err != nil {
		return err
	}
	p.next++
	id := p.cfg.IDPrefix + strconv.Itoa(p.next)
	addr := net.JoinHostPort(p.cfg.Host, strconv.Itoa(port))
	args := append([]string{"gateway"}, p.cfg.Args...)
	args = append(args, "--id", id, "--addr", addr, "--public-url", p.publicURL(port))
	cmd := exec.Command(p.cfg.Binary, args...)
	cmd.Env = p.cfg.Env
	if p.cfg.ChildEnv != nil {
		extra, err := p.cfg.ChildEnv(id)
		if err != nil {
			return fmt.Errorf("cannot start gateway %s: %w", id, err)
		}
		cmd.Env = append(append([]string{}, cmd.Env...), extra...)
	}
	cmd.Stdout, cmd.Stderr = p.cfg.Stdout, p.cfg.Stderr
	// A child must not outlive its parent: the parent holds dispatch (and
	// often NATS), without which the child only strands its viewers.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	c := &child{id: id, port: port, cmd: cmd, since: time.Now(), done: make(chan struct{}), abort: make(chan struct{})}
	if p.cfg.StartDelay > 0 {
		p.children[id] = c
		p.wg.Add(1)
		go p.startLater(c, addr)
		p.log.Info("gateway process held before it starts", "gateway", id, "start_delay", p.cfg.StartDelay, "addr", addr)
		return nil
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("cannot start gateway %s: %w", id, err)
	}
	c.started = true
	p.children[id] = c
	p.wg.Add(1)
	go p.wait(c)
	p.log.Info("gateway process started", "gateway", id, "pid", cmd.Process.Pid, "addr", addr)
	return nil
}

// startLater starts c after StartDelay, unless Remove or Close aborted it
// first, then reaps it.
func (p *Process) startLater(c *child, addr string) {
	t := time.NewTimer(p.cfg.StartDelay)
	defer t.Stop()
	var err error
	select {
	case <-c.abort:
		err = errors.New("removed before it started")
	case <-t.C:
		p.mu.Lock()
		if c.stopping {
			err = errors.New("removed before it started")
		} else if err = c.cmd.Start(); err == nil {
			c.started = true
			p.log.Info("gateway process started", "gateway", c.id, "pid", c.cmd.Process.Pid, "addr", addr, "held", time.Since(c.since).Round(time.Millisecond))
		}
		p.mu.Unlock()
	}
	if err != nil {
		p.mu.Lock()
		delete(p.children, c.id)
		p.mu.Unlock()
		close(c.done)
		p.wg.Done()
		p.log.Warn("gateway process not started", "gateway", c.id, "err", err)
		return
	}
	p.wait(c)
}

// wait reaps c and forgets it.
func (p *Process) wait(c *child) {
	defer p.wg.Done()
	err := c.cmd.Wait()
	p.mu.Lock()
	delete(p.children, c.id)
	stopping := c.stopping
	p.mu.Unlock()
	close(c.done)
	if stopping {
		p.log.Info("gateway process exited", "gateway", c.id, "status", exitStatus(err))
	} else {
		// A drained gateway exits by itself, before Remove is called.
		p.log.Info("gateway process exited by itself", "gateway", c.id, "status", exitStatus(err))
	}
}

func exitStatus(err error) string {
	if err == nil {
		return "0"
	}
	return err.Error()
}

// freePort picks a port for a new child: the first free one of the range,
// or any free one. Called with p.mu held.
func (p *Process) freePort() (int, error) {
	try := func(port int) (int, bool) {
		ln, err := net.Listen("tcp", net.JoinHostPort(p.cfg.Host, strconv.Itoa(port)))
		if err != nil {
			return 0, false
		}
		got := ln.Addr().(*net.TCPAddr).Port
		_ = ln.Close()
		return got, true
	}
	if p.cfg.PortMin == 0 {
		if port, ok := try(0); ok {
			return port, nil
		}
		return 0, fmt.Errorf("cannot find a free port on %s", p.cfg.Host)
	}
	used := map[int]bool{}
	for _, c := range p.children {
		used[c.port] = true
	}
	for port := p.cfg.PortMin; port <= p.cfg.PortMax; port++ {
		if used[port] {
			continue
		}
		if got, ok := try(port); ok {
			return got, nil
		}
	}
	return 0, fmt.Errorf("no free port in %d-%d for another gateway", p.cfg.PortMin, p.cfg.PortMax)
}

// Remove stops child id: it has normally drained and exited already; if
// not, SIGTERM drains it, and SIGKILL ends it after StopTimeout. It returns
// when the process is gone. An unknown id is no error (it exited).
func (p *Process) Remove(ctx context.Context, id string) error {
	p.mu.Lock()
	c, ok := p.children[id]
	if ok {
		c.stopping = true
	}
	p.mu.Unlock()
	if !ok {
		return nil
	}
	return p.stop(ctx, c, p.cfg.StopTimeout)
}

// stop ends c: SIGTERM, then SIGKILL after timeout or when ctx ends. A
// child held by StartDelay is simply not started.
func (p *Process) stop(ctx context.Context, c *child, timeout time.Duration) error {
	select {
	case <-c.done:
		return nil
	default:
	}
	p.mu.Lock()
	started := c.started
	p.mu.Unlock()
	if !started {
		// The caller set c.stopping under p.mu: startLater will not start
		// it now.
		c.abortOnce.Do(func() { close(c.abort) })
		<-c.done
		return nil
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-c.done:
		return nil
	case <-t.C:
	case <-ctx.Done():
	}
	p.log.Warn("gateway process did not exit after SIGTERM; killing it", "gateway", c.id, "timeout", timeout)
	_ = c.cmd.Process.Signal(syscall.SIGCONT)
	_ = c.cmd.Process.Kill()
	<-c.done
	return nil
}

// Close stops every child (SIGTERM, SIGKILL after timeout) and waits for
// them. Add fails afterwards. Idempotent.
func (p *Process) Close(timeout time.Duration) error {
	p.mu.Lock()
	p.closed = true
	var cs []*child
	for _, c := range p.children {
		c.stopping = true
		cs = append(cs, c)
	}
	p.mu.Unlock()
	var wg sync.WaitGroup
	for _, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = p.stop(context.Background(), c, timeout)
		}()
	}
	wg.Wait()
	p.wg.Wait()
	return nil
}
