package autoscale

import (
	"sync"
	"time"

	"github.com/liveroom/liveroom/internal/bus"
)

// Spans of the door's join rate: the last second sees a storm in its first
// second; the last five keep it for a few seconds through bursty arrivals.
const (
	doorShort = time.Second
	doorLong  = 5 * time.Second
	// doorKeep bounds what Door remembers, doorMax the reports it keeps
	// whatever their senders do (4 a second from each of 100 replicas is
	// 2,000 in doorLong).
	doorKeep = doorLong
	doorMax  = 10_000
)

// DoorFigures are the door's rates at one time.
type DoorFigures struct {
	// Rate is new viewers per second: the steeper of the last second and
	// the last five.
	Rate float64
	// Waits is the wait answers per second over the last five seconds.
	Waits float64
}

// Door keeps the dispatch replicas' door reports (bus.DoorReport) of the
// last few seconds and turns them into the door's join rate. It is safe for
// concurrent use; the zero value is ready.
type Door struct {
	mu      sync.Mutex
	reports []doorReport // by receive time
}

type doorReport struct {
	at           time.Time
	joins, waits int
}

// Observe records r, received at at. A report that is not valid is
// dropped. The receive time, not r.TS, places it: replicas' clocks may
// differ from this one.
func (d *Door) Observe(r bus.DoorReport, at time.Time) {
	if !r.Valid() {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.prune(at)
	if len(d.reports) >= doorMax {
		return
	}
	d.reports = append(d.reports, doorReport{at: at, joins: r.Joins, waits: r.WaitAnswers})
}

// prune forgets the reports older than doorKeep. The caller holds d.mu.
func (d *Door) prune(now time.Time) {
	i := 0
	for i < len(d.reports) && now.Sub(d.reports[i].at) > doorKeep {
		i++
	}
	if i > 0 {
		d.reports = append(d.reports[:0], d.reports[i:]...)
	}
}

// Figures returns the door's rates at now: the new viewers of the reports
// received in the last second, and in the last five, per second, the
// larger of the two; and the wait answers per second of the last five.
func (d *Door) Figures(now time.Time) DoorFigures {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.prune(now)
	var short, long, waits int
	for _, r := range d.reports {
		age := now.Sub(r.at)
		if age < 0 || age >= doorLong {
			continue
		}
		long += r.joins
		waits += r.waits
		if age < doorShort {
			short += r.joins
		}
	}
	return DoorFigures{
		Rate:  max(float64(short)/doorShort.Seconds(), float64(long)/doorLong.Seconds()),
		Waits: float64(waits) / doorLong.Seconds(),
	}
}
