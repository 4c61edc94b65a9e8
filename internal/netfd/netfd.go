// Package netfd takes sockets out of Go's netpoller, for code that waits on
// them in an epoll loop of its own: the gateway's established connections
// and the load generator's viewers, tens of thousands per process, none
// with a goroutine.
package netfd

import (
	"errors"
	"fmt"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// Detach returns a duplicate of c's descriptor and closes c. The duplicate
// shares c's socket and its flags (non-blocking, as Go leaves it, and
// TCP_NODELAY), is close-on-exec, and is no longer watched by Go's
// netpoller: the caller owns it and must close it.
func Detach(c net.Conn) (int, error) {
	defer c.Close()
	sc, ok := c.(syscall.Conn)
	if !ok {
		return -1, errors.New("cannot detach a connection that is not a socket")
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return -1, fmt.Errorf("cannot detach socket: %w", err)
	}
	nfd := -1
	var derr error
	if err := raw.Control(func(fd uintptr) {
		nfd, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		return -1, fmt.Errorf("cannot detach socket: %w", err)
	}
	if derr != nil {
		return -1, fmt.Errorf("cannot duplicate socket: %w", derr)
	}
	return nfd, nil
}

// Read reads from fd, retrying when interrupted by a signal.
func Read(fd int, b []byte) (int, error) {
	for {
		n, err := unix.Read(fd, b)
		if err != unix.EINTR {
			return n, err
		}
	}
}

// Write writes to fd, retrying when interrupted by a signal.
func Write(fd int, b []byte) (int, error) {
	for {
		n, err := unix.Write(fd, b)
		if err != unix.EINTR {
			return n, err
		}
	}
}
