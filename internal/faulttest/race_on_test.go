//go:build race

package faulttest

// raceEnabled: the fault test needs its CPU for 300 viewers and nine
// processes on two cores; `make test` runs it without the race detector.
const raceEnabled = true
