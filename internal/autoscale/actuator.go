package autoscale

import (
	"context"
	"log/slog"
)

// Actuator starts and removes gateways for a Scaler. The Scaler calls it
// from one goroutine at a time for Members and Add, and from its scale-in
// goroutine for Remove, which may overlap with the others: implementations
// are safe for concurrent use.
type Actuator interface {
	// Members lists the gateways the actuator runs or is starting, those it
	// is removing apart.
	Members(ctx context.Context) ([]Member, error)
	// Add starts n more gateways; it returns once they were asked for, not
	// when they are ready.
	Add(ctx context.Context, n int) error
	// Remove takes gateway id away. The Scaler calls it after the gateway
	// drained and stopped beating (or its drain timed out); it returns
	// when the gateway is gone or its removal was handed to the platform.
	Remove(ctx context.Context, id string) error
}

// DryRun is the actuator that only logs: decisions are computed, logged and
// exported as usual, and the Scaler sends no drain command. It runs no
// gateway of its own, so every beating gateway is a scale-in candidate.
type DryRun struct {
	Log *slog.Logger
}

var _ Actuator = (*DryRun)(nil)

// Members returns none.
func (a *DryRun) Members(context.Context) ([]Member, error) { return nil, nil }

// Add logs.
func (a *DryRun) Add(_ context.Context, n int) error {
	a.log().Info("dry-run: would start gateways", "n", n)
	return nil
}

// Remove logs.
func (a *DryRun) Remove(_ context.Context, id string) error {
	a.log().Info("dry-run: would drain and remove gateway", "gateway", id)
	return nil
}

func (a *DryRun) log() *slog.Logger {
	if a.Log == nil {
		return slog.Default()
	}
	return a.Log
}
