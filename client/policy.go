package client

import (
	"math/rand/v2"
	"time"
)

// ReconnectPolicy is the backoff a client follows between reconnect attempts,
// as announced by dispatch under "reconnect". Zero or invalid fields take the
// values of DefaultReconnectPolicy.
type ReconnectPolicy struct {
	// BaseMS is the delay before the first attempt, in milliseconds.
	BaseMS int64 `json:"base_ms"`
	// MaxMS caps the delay, in milliseconds.
	MaxMS int64 `json:"max_ms"`
	// Jitter is the fraction of each delay that is randomised, in [0,1]:
	// a delay d becomes uniform in [d×(1−Jitter), d]. It spreads the
	// reconnects of the thousands of viewers a dying gateway sheds at once.
	Jitter float64 `json:"jitter"`
}

// DefaultReconnectPolicy is used until dispatch announces one, and fills the
// zero fields of what it announces.
var DefaultReconnectPolicy = ReconnectPolicy{BaseMS: 500, MaxMS: 15000, Jitter: 0.5}

// normalize fills zero or out-of-range fields from DefaultReconnectPolicy.
func (p ReconnectPolicy) normalize() ReconnectPolicy {
	if p.BaseMS <= 0 {
		p.BaseMS = DefaultReconnectPolicy.BaseMS
	}
	if p.MaxMS <= 0 {
		p.MaxMS = max(DefaultReconnectPolicy.MaxMS, p.BaseMS)
	}
	if p.MaxMS < p.BaseMS {
		p.MaxMS = p.BaseMS
	}
	// NaN fails both comparisons and is replaced too.
	if !(p.Jitter >= 0 && p.Jitter <= 1) {
		if p.Jitter > 1 {
			p.Jitter = 1
		} else {
			p.Jitter = DefaultReconnectPolicy.Jitter
		}
	}
	return p
}

// Delay returns how long to wait before reconnect attempt number attempt
// (0 for the first): BaseMS×2^attempt capped at MaxMS, then reduced by a
// random fraction of at most Jitter. rnd returns a value in [0,1); nil means
// math/rand/v2.
func (p ReconnectPolicy) Delay(attempt int, rnd func() float64) time.Duration {
	p = p.normalize()
	d := p.BaseMS
	for i := 0; i < attempt && d < p.MaxMS; i++ {
		d *= 2
	}
	d = min(d, p.MaxMS)
	if rnd == nil {
		rnd = rand.Float64
	}
	r := rnd()
	if !(r >= 0 && r < 1) {
		r = 0
	}
	ms := float64(d) * (1 - p.Jitter*r)
	return time.Duration(ms * float64(time.Millisecond))
}
