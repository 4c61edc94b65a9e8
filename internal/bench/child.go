package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime/pprof"
	"sync"
	"time"
)

// Children speak JSON lines: the parent writes one command per line on the
// child's stdin, the child answers each with one reply line on stdout and
// adds a progress line every second. A child whose stdin closes (its parent
// died) closes its connections and exits.

type childCmd struct {
	Op      string      `json:"op"`  // init, connect, mark, report, drop, stop
	Seq     uint64      `json:"seq"` // echoed in the reply
	Spec    *AgentSpec  `json:"spec,omitempty"`
	Connect *ConnectCmd `json:"connect,omitempty"`
}

type childMsg struct {
	Kind     string         `json:"kind"` // progress or reply
	Op       string         `json:"op,omitempty"`
	Seq      uint64         `json:"seq,omitempty"` // the command's, on replies
	Error    string         `json:"error,omitempty"`
	Progress *Progress      `json:"progress,omitempty"`
	Connect  *ConnectResult `json:"connect,omitempty"`
	Report   *AgentReport   `json:"report,omitempty"`
}

// agent is a set of viewers, in this process or in a child.
type agent interface {
	Connect(ctx context.Context, cmd ConnectCmd) (ConnectResult, error)
	Mark(ctx context.Context) error
	Report(ctx context.Context) (*AgentReport, error)
	Drop(ctx context.Context) error
	Progress() Progress
	Close() error
}

// localAgent adapts *Agent to agent.
type localAgent struct{ a *Agent }

func (l localAgent) Connect(ctx context.Context, cmd ConnectCmd) (ConnectResult, error) {
	return l.a.Connect(ctx, cmd), nil
}
func (l localAgent) Mark(context.Context) error { l.a.Mark(); return nil }
func (l localAgent) Report(context.Context) (*AgentReport, error) {
	return l.a.Report(), nil
}
func (l localAgent) Drop(context.Context) error { l.a.Drop(); return nil }
func (l localAgent) Progress() Progress         { return l.a.Progress() }
func (l localAgent) Close() error               { l.a.Close(); return nil }

// RunChild is `liveroom bench --child`: it serves one parent over in and out.
func RunChild(ctx context.Context, in io.Reader, out io.Writer) error {
	// LIVEROOM_BENCH_CPUPROFILE=prefix profiles each child (prefix.<pid>):
	// the bench's own costs show up next to the gateway's.
	if p := os.Getenv("LIVEROOM_BENCH_CPUPROFILE"); p != "" {
		if f, err := os.Create(fmt.Sprintf("%s.%d", p, os.Getpid())); err == nil {
			if pprof.StartCPUProfile(f) == nil {
				defer func() { pprof.StopCPUProfile(); f.Close() }()
			}
		}
	}
	var mu sync.Mutex
	enc := json.NewEncoder(out)
	send := func(m childMsg) {
		mu.Lock()
		defer mu.Unlock()
		_ = enc.Encode(m)
	}
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	var a *Agent
	stop := make(chan struct{})
	var ticker sync.WaitGroup // the progress goroutine, ended before a closes
	defer func() {
		close(stop)
		ticker.Wait()
		if a != nil {
			a.Close()
		}
	}()
	for sc.Scan() {
		var cmd childCmd
		if err := json.Unmarshal(sc.Bytes(), &cmd); err != nil {
			return fmt.Errorf("cannot read command: %w", err)
		}
		reply := childMsg{Kind: "reply", Op: cmd.Op, Seq: cmd.Seq}
		if a == nil && cmd.Op != "init" {
			reply.Error = "not initialised"
			send(reply)
			continue
		}
		switch cmd.Op {
		case "init":
			if cmd.Spec == nil {
				return errors.New("init without spec")
			}
			var err error
			if a, err = NewAgent(*cmd.Spec); err != nil {
				reply.Error = err.Error()
				send(reply)
				return err
			}
			ticker.Go(func() {
				t := time.NewTicker(time.Second)
				defer t.Stop()
				for {
					select {
					case <-stop:
						return
					case <-t.C:
						p := a.Progress()
						send(childMsg{Kind: "progress", Progress: &p})
					}
				}
			})
		case "connect":
			if cmd.Connect == nil {
				reply.Error = "connect without arguments"
				break
			}
			r := a.Connect(ctx, *cmd.Connect)
			reply.Connect = &r
		case "mark":
			a.Mark()
		case "report":
			reply.Report = a.Report()
		case "drop":
			a.Drop()
		case "stop":
			send(reply)
			return nil
		default:
			reply.Error = "unknown op " + cmd.Op
		}
		send(reply)
	}
	return sc.Err()
}

// remoteAgent is a child process running RunChild.
type remoteAgent struct {
	cmd     *exec.Cmd
	in      io.WriteCloser
	replies chan childMsg
	done    chan struct{}
	callMu  sync.Mutex
	seq     uint64 // of the last command; guarded by callMu

	mu   sync.Mutex
	prog Progress
	err  error
}

// startChild runs exe bench --child and initialises it with spec.
func startChild(ctx context.Context, exe string, spec AgentSpec, stderr io.Writer) (*remoteAgent, error) {
	cmd, in, out, err := startPiped("child "+exe, exe, stderr, "bench", "--child")
	if err != nil {
		return nil, err
	}
	r := &remoteAgent{cmd: cmd, in: in, replies: make(chan childMsg, 4), done: make(chan struct{})}
	go r.read(out)
	if _, err := r.call(ctx, childCmd{Op: "init", Spec: &spec}); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

func (r *remoteAgent) read(out io.Reader) {
	defer close(r.done)
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 1<<20), 256<<20)
	for sc.Scan() {
		var m childMsg
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			r.setErr(fmt.Errorf("child %d: bad output line: %w", r.cmd.Process.Pid, err))
			continue
		}
		if m.Kind == "progress" && m.Progress != nil {
			r.mu.Lock()
			r.prog = *m.Progress
			r.mu.Unlock()
			continue
		}
		r.replies <- m
	}
	if err := r.cmd.Wait(); err != nil {
		r.setErr(fmt.Errorf("child %d exited: %w", r.cmd.Process.Pid, err))
	} else {
		r.setErr(fmt.Errorf("child %d exited", r.cmd.Process.Pid))
	}
}

func (r *remoteAgent) setErr(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err == nil {
		r.err = err
	}
}

func (r *remoteAgent) call(ctx context.Context, c childCmd) (childMsg, error) {
	r.callMu.Lock()
	defer r.callMu.Unlock()
	r.seq++
	c.Seq = r.seq
	b, _ := json.Marshal(c)
	if _, err := r.in.Write(append(b, '\n')); err != nil {
		return childMsg{}, fmt.Errorf("cannot talk to child: %w", err)
	}
	for {
		select {
		case m := <-r.replies:
			if m.Seq != c.Seq {
				// The late reply of an earlier call that gave up on its
				// context: the child answers in order, so ours follows.
				continue
			}
			if m.Error != "" {
				return m, fmt.Errorf("child: %s: %s", c.Op, m.Error)
			}
			return m, nil
		case <-r.done:
			r.mu.Lock()
			defer r.mu.Unlock()
			return childMsg{}, r.err
		case <-ctx.Done():
			return childMsg{}, ctx.Err()
		}
	}
}

func (r *remoteAgent) Connect(ctx context.Context, cmd ConnectCmd) (ConnectResult, error) {
	m, err := r.call(ctx, childCmd{Op: "connect", Connect: &cmd})
	if err != nil || m.Connect == nil {
		return ConnectResult{Attempted: 0}, errors.Join(err, errIf(m.Connect == nil, "no connect result"))
	}
	return *m.Connect, nil
}

func errIf(c bool, msg string) error {
	if c {
		return errors.New(msg)
	}
	return nil
}

func (r *remoteAgent) Mark(ctx context.Context) error {
	_, err := r.call(ctx, childCmd{Op: "mark"})
	return err
}

func (r *remoteAgent) Report(ctx context.Context) (*AgentReport, error) {
	m, err := r.call(ctx, childCmd{Op: "report"})
	if err != nil {
		return nil, err
	}
	if m.Report == nil {
		return nil, errors.New("child sent no report")
	}
	return m.Report, nil
}

func (r *remoteAgent) Drop(ctx context.Context) error {
	_, err := r.call(ctx, childCmd{Op: "drop"})
	return err
}

func (r *remoteAgent) Progress() Progress {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.prog
}

// Close stops the child: politely, then by force after 10 s.
func (r *remoteAgent) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, _ = r.call(ctx, childCmd{Op: "stop"})
	_ = r.in.Close()
	awaitExit(r.done, r.cmd.Process, 10*time.Second)
	return nil
}

// awaitExit waits until done is closed (the process p has exited and been
// waited for), killing p if that takes longer than grace.
func awaitExit(done <-chan struct{}, p *os.Process, grace time.Duration) {
	select {
	case <-done:
	case <-time.After(grace):
		_ = p.Kill()
		<-done
	}
}

// startPiped starts exe with args, its stderr going to stderr, and returns
// the pipes to its stdin and stdout. what names the process in errors.
func startPiped(what, exe string, stderr io.Writer, args ...string) (*exec.Cmd, io.WriteCloser, io.ReadCloser, error) {
	cmd := exec.Command(exe, args...)
	cmd.Stderr = stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, nil, nil, fmt.Errorf("cannot make stdin pipe for %s: %w", what, err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		_ = in.Close()
		return nil, nil, nil, fmt.Errorf("cannot make stdout pipe for %s: %w", what, err)
	}
	if err := cmd.Start(); err != nil {
		return nil, nil, nil, fmt.Errorf("cannot start %s: %w", what, err)
	}
	return cmd, in, out, nil
}

// selfExe is the binary children run by default.
func selfExe() (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("cannot find this executable for child processes: %w", err)
	}
	return exe, nil
}
