package gateway

import (
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// procSample is this process's CPU time and resident memory.
type procSample struct {
	at  time.Time
	cpu time.Duration
	rss int64
}

func sampleProc() procSample {
	var ru syscall.Rusage
	s := procSample{at: time.Now()}
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		s.cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	s.rss = readRSS()
	return s
}

// readRSS reads the resident set size from /proc/self/statm (Linux); 0
// elsewhere.
func readRSS() int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		return 0
	}
	return pages * int64(os.Getpagesize())
}
