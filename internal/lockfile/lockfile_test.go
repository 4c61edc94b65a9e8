package lockfile

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestAcquire(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "liveroom.lock")
	l, err := Acquire(path, "data directory ./data", "liveroom serve")
	if err != nil {
		t.Fatal(err)
	}
	_, err = Acquire(path, "data directory ./data", "liveroom nats")
	var held *HeldError
	if !errors.As(err, &held) || !errors.Is(err, ErrHeld) {
		t.Fatalf("second Acquire: %v, want a HeldError", err)
	}
	if held.PID != os.Getpid() || held.Command != "liveroom serve" || time.Since(held.Since) > time.Minute {
		t.Errorf("holder %+v", held)
	}
	want := "data directory ./data is in use by pid " + strconv.Itoa(os.Getpid()) + " (liveroom serve, since "
	if !strings.HasPrefix(err.Error(), want) || !strings.HasSuffix(err.Error(), "(lock "+path+")") {
		t.Errorf("message %q, want it to start with %q", err, want)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	l2, err := Acquire(path, "data directory ./data", "liveroom nats")
	if err != nil {
		t.Fatalf("after release: %v", err)
	}
	defer l2.Close()
	if b, _ := os.ReadFile(path); !strings.Contains(string(b), "command liveroom nats\n") || strings.Contains(string(b), "serve") {
		t.Errorf("lock file after the second holder:\n%s", b)
	}
}

// TestHeldByAnotherProcess: the lock holds across processes (flock), and a
// holder that dies releases it.
func TestHeldByAnotherProcess(t *testing.T) {
	if os.Getenv("LOCKFILE_HOLD") != "" {
		if _, err := Acquire(os.Getenv("LOCKFILE_HOLD"), "x", "holder"); err != nil {
			os.Exit(2)
		}
		os.Stdout.WriteString("held\n")
		time.Sleep(time.Minute)
		return
	}
	path := filepath.Join(t.TempDir(), "liveroom.lock")
	cmd := exec.Command(os.Args[0], "-test.run=^TestHeldByAnotherProcess$")
	cmd.Env = append(os.Environ(), "LOCKFILE_HOLD="+path)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	buf := make([]byte, 5)
	if _, err := out.Read(buf); err != nil || string(buf) != "held\n" {
		t.Fatalf("holder did not start: %q %v", buf, err)
	}
	var held *HeldError
	if _, err := Acquire(path, "x", "me"); !errors.As(err, &held) || held.PID != cmd.Process.Pid || held.Command != "holder" {
		t.Fatalf("while another process holds it: %v", err)
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	l, err := Acquire(path, "x", "me")
	if err != nil {
		t.Fatalf("after the holder died: %v", err)
	}
	l.Close()
}
