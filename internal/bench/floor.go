package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"time"

	"github.com/liveroom/liveroom/internal/netfd"
)

// The floor: what writing the same frames to the same number of loopback
// TCP connections costs with no liveroom code at all. A raw server in its
// own process (as the gateway is) accepts the bench's plain TCP
// connections, then every 1/FPS seconds writes one Size-byte frame to each
// with one write system call, and measures its own CPU with getrusage. The
// gateway's CPU per written frame divided by this is the floor ratio.

// FloorSpec configures a floor server.
type FloorSpec struct {
	Conns    int      `json:"conns"`
	FPS      float64  `json:"fps"`
	Size     int      `json:"size"`
	Duration Duration `json:"duration"`
	Warmup   Duration `json:"warmup"`
}

// FloorFigures are the floor server's own measurements.
type FloorFigures struct {
	Conns       int     `json:"conns"`
	FPS         float64 `json:"fps"`
	Size        int     `json:"size"`
	Seconds     float64 `json:"seconds"`
	Writes      int64   `json:"writes"`
	EAGAIN      int64   `json:"eagain"`
	CPUSeconds  float64 `json:"cpu_seconds"`
	USPerWrite  float64 `json:"cpu_us_per_write"`
	WritesPerS  float64 `json:"writes_per_s"`
	Ratio       float64 `json:"ratio,omitempty"` // gateway CPU-µs per frame ÷ USPerWrite
	ReaderBytes int64   `json:"reader_bytes"`
}

// RunFloorServer is `liveroom bench --floor-server`: it reads a FloorSpec
// line on in, prints {"addr":…}, accepts spec.Conns connections, prints
// {"accepted":n}, waits for a "go" line, writes for warmup+duration, prints
// the FloorFigures and exits.
func RunFloorServer(ctx context.Context, in io.Reader, out io.Writer) error {
	sc := bufio.NewScanner(in)
	if !sc.Scan() {
		return errors.New("floor server: no spec on stdin")
	}
	var spec FloorSpec
	if err := json.Unmarshal(sc.Bytes(), &spec); err != nil {
		return fmt.Errorf("floor server: bad spec: %w", err)
	}
	if spec.Conns < 1 || spec.FPS <= 0 || spec.Size < 2 {
		return errors.New("floor server: conns, fps and size must be positive")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("floor server: cannot listen: %w", err)
	}
	defer ln.Close()
	enc := json.NewEncoder(out)
	_ = enc.Encode(map[string]string{"addr": ln.Addr().String()})
	var fds []int
	accepted := make(chan struct{})
	go func() {
		defer close(accepted)
		for {
			c, err := ln.Accept()
			if err != nil {
				if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
					time.Sleep(10 * time.Millisecond)
					continue
				}
				return // listener closed
			}
			if fd, err := netfd.Detach(c); err == nil {
				fds = append(fds, fd)
			}
		}
	}()
	defer func() {
		for _, fd := range fds {
			syscall.Close(fd)
		}
	}()
	ok := sc.Scan() && sc.Text() == "go"
	ln.Close()
	<-accepted
	if !ok {
		return errors.New("floor server: expected go")
	}
	// A frame shaped like the gateway's: a WebSocket text header and payload.
	frame := make([]byte, spec.Size)
	for i := range frame {
		frame[i] = 'x'
	}
	frame[0] = 0x81
	switch n := spec.Size - 2; {
	case n <= 125:
		frame[1] = byte(n)
	default:
		frame[1], frame[2], frame[3] = 126, byte((n-2)>>8), byte(n-2)
	}
	period := time.Duration(float64(time.Second) / spec.FPS)
	t := time.NewTicker(period)
	defer t.Stop()
	warmEnd := time.Now().Add(time.Duration(spec.Warmup))
	end := warmEnd.Add(time.Duration(spec.Duration))
	var f FloorFigures
	measuring := false
	var cpu0 time.Duration
	var t0 time.Time
	for now := range t.C {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !measuring && now.After(warmEnd) {
			measuring, cpu0, t0 = true, processCPU(), time.Now()
		}
		if now.After(end) {
			break
		}
		var writes, eagain int64
		for _, fd := range fds {
			_, err := syscall.Write(fd, frame)
			if err == syscall.EAGAIN {
				eagain++
				continue
			}
			writes++
		}
		if measuring {
			f.Writes += writes
			f.EAGAIN += eagain
		}
	}
	f.CPUSeconds = (processCPU() - cpu0).Seconds()
	f.Seconds = time.Since(t0).Seconds()
	f.Conns, f.FPS, f.Size = len(fds), spec.FPS, spec.Size
	if f.Writes > 0 {
		f.USPerWrite = f.CPUSeconds * 1e6 / float64(f.Writes)
		f.WritesPerS = float64(f.Writes) / f.Seconds
	}
	return enc.Encode(f)
}

// runFloor measures the floor with the agents' viewers as readers.
func runFloor(ctx context.Context, exe string, agents []agent, plan [][]RoomPlan, spec FloorSpec, stderr io.Writer) (*FloorFigures, error) {
	cmd, in, outp, err := startPiped("floor server", exe, stderr, "bench", "--floor-server")
	if err != nil {
		return nil, err
	}
	defer func() {
		_ = in.Close()
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		awaitExit(done, cmd.Process, 10*time.Second)
	}()
	dec := json.NewDecoder(outp)
	b, _ := json.Marshal(spec)
	if _, err := in.Write(append(b, '\n')); err != nil {
		return nil, fmt.Errorf("cannot send the spec to the floor server: %w", err)
	}
	var addr struct {
		Addr string `json:"addr"`
	}
	if err := dec.Decode(&addr); err != nil {
		return nil, fmt.Errorf("floor server: %w", err)
	}
	before := int64(0)
	for _, a := range agents {
		before += a.Progress().Bytes
	}
	if err := eachAgent(agents, func(i int, a agent) error {
		_, err := a.Connect(ctx, ConnectCmd{Rooms: plan[i], TCPAddr: addr.Addr})
		return err
	}); err != nil {
		return nil, fmt.Errorf("cannot connect readers to the floor server: %w", err)
	}
	// Connects finish before the server's accept loop has taken the last
	// ones from the backlog: give it a moment.
	time.Sleep(500 * time.Millisecond)
	if _, err := in.Write([]byte("go\n")); err != nil {
		return nil, fmt.Errorf("cannot tell the floor server to go: %w", err)
	}
	var f FloorFigures
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("floor server: %w", err)
	}
	for _, a := range agents {
		f.ReaderBytes += a.Progress().Bytes
	}
	f.ReaderBytes -= before
	for _, a := range agents {
		_ = a.Drop(ctx)
	}
	return &f, nil
}
