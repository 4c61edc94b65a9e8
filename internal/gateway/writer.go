package gateway

import (
	"sync"
)

// A room's frame is written by its flusher; a large room's members are split
// into chunks written in parallel by a pool of writer goroutines, so that one
// room of 10,000 viewers at 20 frames/s (200,000 writes/s, more than one core
// at ~5 µs a write) is not capped by a single goroutine.

// parallelChunk is the member count above which a flush is split, and the
// size of each part. Below it the hand-off costs more than it saves.
const parallelChunk = 2048

// writeJob is one chunk of a flush.
type writeJob struct {
	f     *frame
	conns []*conn
	done  *sync.WaitGroup
}

// startWriters starts n writers; stopWriters ends them once no flusher can
// hand them work any more (after the flushers have stopped), so that no
// flush ever waits for a job nobody will run.
func (s *Server) startWriters(n int) {
	s.writeJobs = make(chan writeJob, 64)
	for range n {
		s.writerWG.Add(1)
		go func() {
			defer s.writerWG.Done()
			for j := range s.writeJobs {
				s.writeChunk(j.f, j.conns)
				j.done.Done()
			}
		}()
	}
}

func (s *Server) stopWriters() {
	if s.writeJobs != nil {
		close(s.writeJobs)
		s.writerWG.Wait()
	}
}

// writeAll writes f to every conn: in the caller's goroutine for small
// rooms, split over the writer pool for large ones. It returns when every
// write was made or queued.
func (s *Server) writeAll(f *frame, conns []*conn) {
	if len(conns) <= parallelChunk || s.writeJobs == nil {
		s.writeChunk(f, conns)
		return
	}
	var wg sync.WaitGroup
	for len(conns) > parallelChunk {
		wg.Add(1)
		j := writeJob{f: f, conns: conns[:parallelChunk], done: &wg}
		select {
		case s.writeJobs <- j:
		default:
			// Every writer is busy: do it here rather than wait.
			s.writeChunk(j.f, j.conns)
			wg.Done()
		}
		conns = conns[parallelChunk:]
	}
	s.writeChunk(f, conns)
	wg.Wait()
}

// writeChunk writes f to conns and accounts for it: bytes out are the
// bytes written, compressed for the members that get f.z.
func (s *Server) writeChunk(f *frame, conns []*conn) {
	var written, compressed, dropped int64
	for _, c := range conns {
		switch c.send(f) {
		case sentNow, sentQueued:
			written++
			if c.deflate && f.z != nil {
				compressed++
			}
		case sentDropped:
			dropped++
		}
	}
	st := &s.stats
	st.FramesOut.Add(written)
	st.MsgsOut.Add(written * int64(f.msgs))
	st.BytesOut.Add((written-compressed)*int64(len(f.b)) + compressed*int64(len(f.z)))
	st.FramesCompressed.Add(compressed)
	st.DroppedQueueFull.Add(dropped * int64(f.msgs))
}
