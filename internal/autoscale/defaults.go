package autoscale

import "time"

// DefaultPolicy is the policy the command line's flags start from: what
// WithDefaults gives a zero Policy, except Spare, whose zero is a choice
// (no spare) and whose default here is one gateway, ready for a step of
// viewers before any new gateway could start. The capacity limits stay
// zero (not limited; WithDefaults then assumes DefaultConns).
func DefaultPolicy() Policy {
	return Policy{Min: 1, Max: 10, Spare: 1, ReadyTime: 10 * time.Second, Stabilization: 5 * time.Minute,
		Capacity: Capacity{Target: DefaultTarget}}
}
