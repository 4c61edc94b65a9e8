package gateway

import (
	"io"
	"net"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/liveroom/liveroom/internal/protocol"
)

// BenchmarkFanOut measures one room flush: three danmaku merged into one
// frame, encoded once and written to every member over real loopback TCP
// sockets. Members share 64 socket pairs (each member has its own fd, a dup),
// which keeps the benchmark under the 20,000 file limit at 10,000 members;
// the cost per write is the real system call either way.
func BenchmarkFanOut(b *testing.B) {
	for _, members := range []int{1, 1000, 10000} {
		b.Run("members="+strconv.Itoa(members), func(b *testing.B) {
			benchFanOut(b, members)
		})
	}
}

// BenchmarkFanOutDeflate is BenchmarkFanOut with every member having
// negotiated permessage-deflate: the frame is compressed once per flush and
// the compressed bytes written to everyone.
func BenchmarkFanOutDeflate(b *testing.B) {
	for _, members := range []int{1, 1000, 10000} {
		b.Run("members="+strconv.Itoa(members), func(b *testing.B) {
			benchFanOutOpts(b, members, false, true)
		})
	}
}

// BenchmarkBareWriteFloor is the floor BenchmarkFanOut is compared with: the
// same frame bytes written with one write system call per member fd, with no
// liveroom code at all.
func BenchmarkBareWriteFloor(b *testing.B) {
	for _, members := range []int{1, 1000, 10000} {
		b.Run("members="+strconv.Itoa(members), func(b *testing.B) {
			benchFanOutMode(b, members, true)
		})
	}
}

func benchFanOut(b *testing.B, members int) { benchFanOutMode(b, members, false) }

func benchFanOutMode(b *testing.B, members int, bare bool) { benchFanOutOpts(b, members, bare, false) }

func benchFanOutOpts(b *testing.B, members int, bare, deflate bool) {
	s := testServer(b, Config{QueueFrames: 1 << 20, QueueBytes: 1 << 30, ViewerBudget: 1e9, MergeWindow: 50 * time.Millisecond, ReliableWindow: 1024, CompressMinBytes: DefaultCompressMinBytes})
	pairs := min(members, 64)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	var servers []*net.TCPConn
	for range pairs {
		cl, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		sv, err := ln.Accept()
		if err != nil {
			b.Fatal(err)
		}
		servers = append(servers, sv.(*net.TCPConn))
		go func() { _, _ = io.Copy(io.Discard, cl) }()
		defer cl.Close()
		defer sv.Close()
	}
	r := newRoom(s, "bench", nil)
	r.shard = newHub(1).shards[0]
	for i := range members {
		c := pollConn(b, s, dupFD(b, servers[i%pairs]), deflate)
		c.idx = i
		r.members = append(r.members, c)
		if deflate {
			r.deflaters++
		}
	}
	msg := protocol.Encode(protocol.Message{ID: "01HZXK3V6Q9ABCDEF", Type: protocol.TypeDanmaku, User: "user-12345", Name: "Someone", TS: time.Now().UnixMilli(), Text: "a typical comment of moderate length, about sixty chars"})
	const perFrame = 3
	var scratch []*conn
	now := time.Now()
	b.ReportAllocs()
	if bare {
		kept := [][]byte{msg, msg, msg}
		frame := newTextFrame(func(d []byte) []byte { return protocol.AppendBatch(d, "bench", 50, kept) }, 600)
		fds := make([]int, len(r.members))
		for i, c := range r.members {
			fds[i] = c.fd
		}
		b.ResetTimer()
		cpu0 := processCPU()
		for i := 0; i < b.N; i++ {
			for _, fd := range fds {
				for {
					if _, err := syscall.Write(fd, frame); err != syscall.EAGAIN {
						break
					}
					time.Sleep(10 * time.Microsecond)
				}
			}
		}
		b.StopTimer()
		cpu := float64(processCPU() - cpu0)
		el := float64(b.Elapsed().Nanoseconds())
		b.ReportMetric(el/float64(b.N*members), "ns/write")
		b.ReportMetric(cpu/float64(b.N*members), "cpu-ns/write")
		return
	}
	b.ResetTimer()
	cpu0 := processCPU()
	for i := 0; i < b.N; i++ {
		for range perFrame {
			r.add(pendingMsg{b: msg, kind: kindLive})
		}
		now = now.Add(s.cfg.MergeWindow)
		scratch = r.flush(now, scratch)
	}
	b.StopTimer()
	// Let queued writes finish before the sockets close.
	for _, c := range r.members {
		for {
			c.mu.Lock()
			n := len(c.backlog)
			c.mu.Unlock()
			if n == 0 {
				break
			}
			time.Sleep(time.Millisecond)
		}
	}
	cpu := float64(processCPU() - cpu0)
	el := float64(b.Elapsed().Nanoseconds())
	b.ReportMetric(el/float64(b.N*members), "ns/write")
	b.ReportMetric(cpu/float64(b.N*members), "cpu-ns/write")
	b.ReportMetric(el/float64(b.N*members*perFrame), "ns/msg")
	b.ReportMetric(float64(s.stats.FramesOut.Load())/float64(b.N*members), "writes/member")
	b.ReportMetric(float64(s.stats.BytesOut.Load())/float64(s.stats.FramesOut.Load()), "bytes/write")
}

// TestParallelFlushWritesEveryMember checks the writer-pool path of a large
// room: every member gets the frame exactly once.
func TestParallelFlushWritesEveryMember(t *testing.T) {
	s := testServer(t, Config{QueueFrames: 1 << 20, QueueBytes: 1 << 30, ViewerBudget: 1e9, MergeWindow: 50 * time.Millisecond, ReliableWindow: 16})
	s.startWriters(2)
	defer s.stopWriters()
	const members, pairs = 3*parallelChunk + 17, 16
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var servers []*net.TCPConn
	got := make([]chan int, pairs)
	for i := range pairs {
		cl, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		sv, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		defer sv.Close()
		servers = append(servers, sv.(*net.TCPConn))
		got[i] = make(chan int, 1)
		go func() {
			n, _ := io.Copy(io.Discard, cl)
			got[i] <- int(n)
		}()
	}
	r := newRoom(s, "big", newHub(1).shards[0])
	for i := range members {
		c := pollConn(t, s, dupFD(t, servers[i%pairs]), false)
		c.idx = i
		r.members = append(r.members, c)
	}
	r.add(pendingMsg{b: []byte(`{"id":"x","type":"danmaku"}`), kind: kindLive})
	r.flush(time.Now(), nil)
	if n := s.stats.FramesOut.Load(); n != members {
		t.Fatalf("frames out %d, want %d", n, members)
	}
	frameLen := int(s.stats.BytesOut.Load()) / members
	// Closing writes each member's close frame: 4 bytes (code 1001).
	for _, c := range r.members {
		c.close(1001)
	}
	s.connWG.Wait()
	frameLen += 4
	for _, sv := range servers {
		sv.Close()
	}
	total := 0
	for i := range pairs {
		total += <-got[i]
	}
	if total != members*frameLen {
		t.Fatalf("peers read %d bytes, want %d × %d", total, members, frameLen)
	}
}

// processCPU is the CPU time the process has used (user and system): on a
// shared machine a benchmark's CPU per write moves much less than its wall
// time. It includes the goroutines that read the client ends.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
