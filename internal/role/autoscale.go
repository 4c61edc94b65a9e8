package role

import (
	"context"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/liveroom/liveroom/internal/autoscale"
	"github.com/liveroom/liveroom/internal/router"
)

// Autoscale is the autoscaler role: it decides the gateway count from the
// beats and acts through an actuator; GET /v1/autoscale/decisions is an
// operator view.
type Autoscale struct {
	s *autoscale.Scaler
	// closeActuator, when set, stops the actuator after the scaler (the
	// process actuator's children).
	closeActuator func()
}

// NewAutoscale builds the autoscaler (cfg's NC and Logger come from d).
// closeActuator, when not nil, runs at Close, after the scaler stopped: no
// decision may start a gateway while the actuator stops.
func NewAutoscale(d Deps, cfg autoscale.Config, closeActuator func()) (*Autoscale, error) {
	cfg.NC, cfg.Logger = d.NC, d.Logger
	s, err := autoscale.New(cfg)
	if err != nil {
		if closeActuator != nil {
			closeActuator()
		}
		return nil, err
	}
	return &Autoscale{s: s, closeActuator: closeActuator}, nil
}

// Start starts deciding.
func (a *Autoscale) Start(ctx context.Context) error { return a.s.Start(ctx) }

// Mount serves the decisions as an operator view.
func (a *Autoscale) Mount(m *Mount) {
	m.Operator = append(m.Operator, router.Route{Path: autoscale.DecisionsPath, Methods: []string{http.MethodGet}, Handler: a.s.Handler()})
}

// Register adds the autoscaler's metrics.
func (a *Autoscale) Register(reg prometheus.Registerer) error { return a.s.Register(reg) }

// Close stops deciding, then the actuator. Idempotent.
func (a *Autoscale) Close() error {
	err := a.s.Close()
	if a.closeActuator != nil {
		a.closeActuator()
		a.closeActuator = nil
	}
	return err
}

// Scaler is the autoscaler.
func (a *Autoscale) Scaler() *autoscale.Scaler { return a.s }
