// Package lockfile gives a process sole use of a directory (or file) it
// owns, such as a JetStream store or an archive, and names the holder to
// whoever else tries.
//
// The lock is flock(2) on a lock file: the kernel releases it when the
// holder exits, crashes included, so a lock is never left stale; the file
// itself stays, holding the last holder's pid and command for the message
// a second process prints.
package lockfile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Lock is a held lock. Release it with Close.
type Lock struct {
	f *os.File
}

// HeldError says that another process holds the lock.
type HeldError struct {
	// Path is the lock file.
	Path string
	// What is what the lock guards, as given to Acquire.
	What string
	// PID and Command name the holder as it wrote them (0 and "" when it
	// had not written them yet); Since is when it took the lock.
	PID     int
	Command string
	Since   time.Time
}

// Error implements error.
func (e *HeldError) Error() string {
	holder := "another process"
	if e.PID > 0 {
		holder = "pid " + strconv.Itoa(e.PID)
		var about []string
		if e.Command != "" {
			about = append(about, e.Command)
		}
		if !e.Since.IsZero() {
			about = append(about, "since "+e.Since.Local().Format("2006-01-02 15:04:05"))
		}
		if len(about) > 0 {
			holder += " (" + strings.Join(about, ", ") + ")"
		}
	}
	return fmt.Sprintf("%s is in use by %s (lock %s)", e.What, holder, e.Path)
}

// ErrHeld matches a *HeldError with errors.Is.
var ErrHeld = errors.New("lockfile: held by another process")

// Is reports ErrHeld.
func (e *HeldError) Is(target error) bool { return target == ErrHeld }

// Acquire takes the lock file path, creating it and its directory, without
// waiting: when another process (or another Acquire in this one) holds it,
// it returns a *HeldError naming the holder. what says what the lock guards,
// for that message ("data directory ./data"). command is written into the
// file for the next one to read; keep secrets out of it.
func Acquire(path, what, command string) (*Lock, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("cannot create the directory of %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("cannot open lock file: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, holder(path, what)
		}
		return nil, fmt.Errorf("cannot lock %s: %w", path, err)
	}
	info := fmt.Sprintf("pid %d\ncommand %s\nsince %s\n", os.Getpid(), command, time.Now().UTC().Format(time.RFC3339))
	if err := f.Truncate(0); err == nil {
		_, err = f.WriteAt([]byte(info), 0)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("cannot write lock file %s: %w", path, err)
	}
	return &Lock{f: f}, nil
}

// holder reads who holds path.
func holder(path, what string) *HeldError {
	e := &HeldError{Path: path, What: what}
	b, err := os.ReadFile(path)
	if err != nil {
		return e
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(line, " ")
		switch k {
		case "pid":
			e.PID, _ = strconv.Atoi(v)
		case "command":
			e.Command = v
		case "since":
			e.Since, _ = time.Parse(time.RFC3339, v)
		}
	}
	return e
}

// Close releases the lock. It is idempotent.
func (l *Lock) Close() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := l.f.Close() // closing the only descriptor releases the flock
	l.f = nil
	return err
}

// Command names this process for a lock file: the program and its
// subcommand ("liveroom serve"), never the flags, which may carry secrets.
func Command() string {
	if len(os.Args) == 0 {
		return ""
	}
	cmd := filepath.Base(os.Args[0])
	if len(os.Args) > 1 && !strings.HasPrefix(os.Args[1], "-") {
		cmd += " " + os.Args[1]
	}
	return cmd
}
