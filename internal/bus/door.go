package bus

import (
	"math"

	"github.com/liveroom/liveroom/internal/protocol"
)

// DoorReport is what one dispatch replica saw at the door over its last
// interval: every GET /v1/dispatch it answered, sorted by who asked and by
// what it answered. It is published on DoorSubject a few times a second
// while clients ask (nothing while none does), so that the autoscaler sees
// a join storm from its first second, including the joins no gateway could
// take yet. Fields are only ever added.
type DoorReport struct {
	// ID names the dispatch replica (random per process).
	ID string `json:"id"`
	// TS is when the interval ended (Unix ms); IntervalMS its length.
	TS         int64 `json:"ts"`
	IntervalMS int64 `json:"interval_ms"`
	// Joins counts new viewers: requests with neither since= (a viewer
	// that already follows the room and moves between gateways) nor
	// attempt ≥ 1 (a client asking again after a wait or a failure).
	// Admitted + Waited + Refused = Joins.
	Joins int `json:"joins"`
	// Admitted new viewers got gateways, Waited were told to wait (every
	// gateway full), Refused got 503 (no gateway at all).
	Admitted int `json:"admitted"`
	Waited   int `json:"waited"`
	Refused  int `json:"refused"`
	// Retries counts requests with attempt ≥ 1 and no since=; Moves those
	// with since=. Neither is a new viewer.
	Retries int `json:"retries"`
	Moves   int `json:"moves"`
	// WaitAnswers counts every "wait" answer of the interval, to new
	// viewers, retries and moves alike.
	WaitAnswers int `json:"wait_answers"`
}

// maxDoorCount bounds each count of a DoorReport: far above what one
// replica answers in an interval, low enough that a sum cannot overflow.
const maxDoorCount = 1 << 30

// Valid reports whether r has the documented shape: a valid id, a positive
// interval of at most a minute, and counts that are not negative, add up,
// and stay below a bound. A report that is not valid is dropped.
func (r DoorReport) Valid() bool {
	if !protocol.ValidID(r.ID) || r.IntervalMS <= 0 || r.IntervalMS > 60_000 || r.TS <= 0 {
		return false
	}
	for _, n := range []int{r.Joins, r.Admitted, r.Waited, r.Refused, r.Retries, r.Moves, r.WaitAnswers} {
		if n < 0 || n > maxDoorCount {
			return false
		}
	}
	return r.Admitted+r.Waited+r.Refused == r.Joins && r.TS < math.MaxInt64/2
}
