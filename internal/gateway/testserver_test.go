package gateway

import (
	"net"
	"testing"

	"github.com/gobwas/ws"
	"golang.org/x/sys/unix"

	"github.com/liveroom/liveroom/internal/auth"
	"github.com/liveroom/liveroom/internal/testutil"
)

// testServer is a Server with only what connection-level tests need: a
// registry and running pollers, stopped (every connection reaped first) at
// the end of the test.
func testServer(tb testing.TB, cfg Config) *Server {
	tb.Helper()
	s := &Server{cfg: cfg, log: testutil.Logger(), hub: newHub(1), hsConns: map[net.Conn]struct{}{}}
	np, err := newNetpoll(s, 1)
	if err != nil {
		tb.Fatal(err)
	}
	s.poll = np
	np.start()
	tb.Cleanup(func() {
		for _, c := range np.all(nil) {
			c.close(ws.StatusGoingAway)
		}
		s.connWG.Wait()
		np.stop()
	})
	return s
}

// pollConn makes fd a registered connection of s.
func pollConn(tb testing.TB, s *Server, fd int, deflate bool) *conn {
	tb.Helper()
	c := newConn(s, fd, auth.Identity{User: "u"}, deflate)
	s.connWG.Add(1)
	if !s.poll.register(c) {
		tb.Fatal("cannot register the connection")
	}
	return c
}

// dupFD returns a duplicate of nc's descriptor; nc stays open.
func dupFD(tb testing.TB, nc net.Conn) int {
	tb.Helper()
	raw, err := nc.(*net.TCPConn).SyscallConn()
	if err != nil {
		tb.Fatal(err)
	}
	fd := -1
	var derr error
	if err := raw.Control(func(f uintptr) { fd, derr = unix.FcntlInt(f, unix.F_DUPFD_CLOEXEC, 0) }); err != nil || derr != nil {
		tb.Fatal(err, derr)
	}
	return fd
}
