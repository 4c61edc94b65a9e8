package dispatch

import (
	"context"
	"encoding/json"
	"sync/atomic"
	"time"

	"github.com/liveroom/liveroom/internal/bus"
)

// Request kinds, as the door counts them.
type requestKind int

const (
	// kindJoin is a new viewer: no since=, no attempt.
	kindJoin requestKind = iota
	// kindRetry is a client asking again (attempt ≥ 1) after a wait or a
	// failure.
	kindRetry
	// kindMove is a viewer that already follows the room (since=): it
	// moves from a draining or lost gateway, and is already counted in
	// the demand of the gateway it left.
	kindMove
)

// doorCounts are the counters of one DoorReport interval. Answers add to
// them concurrently; the publisher swaps them to zero.
type doorCounts struct {
	joins, admitted, waited, refused, retries, moves, waitAnswers atomic.Int64
}

// outcome is what an answer said.
type outcome int

const (
	outAdmitted outcome = iota
	outWaited
	outRefused
)

// count records one answered request.
func (d *doorCounts) count(k requestKind, o outcome) {
	switch k {
	case kindJoin:
		d.joins.Add(1)
		switch o {
		case outAdmitted:
			d.admitted.Add(1)
		case outWaited:
			d.waited.Add(1)
		case outRefused:
			d.refused.Add(1)
		}
	case kindRetry:
		d.retries.Add(1)
	case kindMove:
		d.moves.Add(1)
	}
	if o == outWaited {
		d.waitAnswers.Add(1)
	}
}

// take returns the counts as a report and resets them. count adds a
// join before its outcome, and take swaps the outcomes before the joins, so
// a report may hold a join whose outcome comes in the next one, never the
// reverse: take carries such joins over, so that Admitted + Waited +
// Refused = Joins in every report.
func (d *doorCounts) take() bus.DoorReport {
	r := bus.DoorReport{
		Admitted:    int(d.admitted.Swap(0)),
		Waited:      int(d.waited.Swap(0)),
		Refused:     int(d.refused.Swap(0)),
		Retries:     int(d.retries.Swap(0)),
		Moves:       int(d.moves.Swap(0)),
		WaitAnswers: int(d.waitAnswers.Swap(0)),
	}
	joins := int(d.joins.Swap(0))
	r.Joins = r.Admitted + r.Waited + r.Refused
	if joins > r.Joins {
		d.joins.Add(int64(joins - r.Joins))
	}
	return r
}

// empty reports whether r counts nothing.
func emptyReport(r bus.DoorReport) bool {
	return r.Joins == 0 && r.Retries == 0 && r.Moves == 0 && r.WaitAnswers == 0
}

// publishDoor publishes the door's counts every DoorInterval until ctx
// ends: nothing while no client asks, and one empty report after the
// last busy interval, so that a reader sees the rate fall to zero.
func (s *Server) publishDoor(ctx context.Context) {
	t := time.NewTicker(s.cfg.DoorInterval)
	defer t.Stop()
	last := time.Now()
	busy := false
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			r := s.door.take()
			if emptyReport(r) && !busy {
				last = now
				continue
			}
			busy = !emptyReport(r)
			r.ID, r.TS, r.IntervalMS = s.cfg.ID, now.UnixMilli(), max(1, now.Sub(last).Milliseconds())
			last = now
			b, err := json.Marshal(r)
			if err != nil {
				continue
			}
			if err := s.cfg.NC.Publish(bus.DoorSubject, b); err != nil {
				s.log.Debug("cannot publish door report", "err", err)
			}
		}
	}
}
