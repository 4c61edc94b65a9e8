package bus

import (
	"encoding/json"
	"fmt"
	"math"

	"github.com/liveroom/liveroom/internal/protocol"
)

// Usage classes: the rate limits an uplink shares with the others.
const (
	// UsageUser is danmaku per user; keys are user ids.
	UsageUser = "user"
	// UsageRoom is danmaku per room; keys are room ids.
	UsageRoom = "room"
	// UsageGift is gift requests per user; keys are user ids.
	UsageGift = "gift"
	// UsageLike is likes (summed counts) per user; keys are user ids.
	UsageLike = "like"
)

// MaxUsageKeys is the most hot keys one usage report may list per class.
const MaxUsageKeys = 1024

// UsageReport is an uplink's report on UsageSubject, every interval: it says
// the uplink is alive and, per class, the keys it found hot (refused, or
// holding more than an equal share) with their demand, the units asked for
// in the last interval (refused ones included). Fields are only ever added.
type UsageReport struct {
	ID string `json:"id"`
	// Run is a random id of the sending process, new at every start, by
	// which an uplink notices another one using its ID.
	Run        string `json:"run,omitempty"`
	TS         int64  `json:"ts"`          // Unix ms when sent
	IntervalMS int64  `json:"interval_ms"` // the sender's report interval
	// Hot maps a class (UsageUser, ...) to key → demand.
	Hot map[string]map[string]float64 `json:"hot,omitempty"`
}

// DecodeUsage reads a usage report and checks its documented shape: a valid
// uplink id, a positive interval, known classes, at most MaxUsageKeys keys
// per class, each a valid user or room id, demands finite and not negative.
// Anything else is an error and the report must be dropped.
func DecodeUsage(data []byte) (UsageReport, error) {
	var u UsageReport
	if err := json.Unmarshal(data, &u); err != nil {
		return u, fmt.Errorf("usage report is not JSON: %w", err)
	}
	if !ValidUplinkID(u.ID) {
		return u, fmt.Errorf("usage report names uplink %q", printableUser(u.ID))
	}
	if u.Run != "" && !protocol.ValidID(u.Run) {
		return u, fmt.Errorf("usage report of %s: bad run id", u.ID)
	}
	if u.IntervalMS <= 0 || u.IntervalMS > 60_000 || u.TS < 0 {
		return u, fmt.Errorf("usage report of %s: bad interval or time", u.ID)
	}
	for class, keys := range u.Hot {
		var valid func(string) error
		switch class {
		case UsageUser, UsageGift, UsageLike:
			valid = func(k string) error { _, err := protocol.ParseUser(k); return err }
		case UsageRoom:
			valid = func(k string) error { _, err := protocol.ParseRoom(k); return err }
		default:
			return u, fmt.Errorf("usage report of %s: unknown class %q", u.ID, printableUser(class))
		}
		if len(keys) > MaxUsageKeys {
			return u, fmt.Errorf("usage report of %s: %d %s keys, at most %d", u.ID, len(keys), class, MaxUsageKeys)
		}
		for k, d := range keys {
			if err := valid(k); err != nil {
				return u, fmt.Errorf("usage report of %s: %w", u.ID, err)
			}
			if math.IsNaN(d) || math.IsInf(d, 0) || d < 0 {
				return u, fmt.Errorf("usage report of %s: demand of a %s key is negative or not finite", u.ID, class)
			}
		}
	}
	return u, nil
}
