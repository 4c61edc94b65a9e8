package role

import (
	"context"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/liveroom/liveroom/internal/admin"
	"github.com/liveroom/liveroom/internal/announce"
	"github.com/liveroom/liveroom/internal/bus"
	"github.com/liveroom/liveroom/internal/dispatch"
	"github.com/liveroom/liveroom/internal/router"
)

// Dispatch is the dispatch role: GET /v1/dispatch, the operator view GET
// /v1/gateways and, when the process verifies tokens, the admin API
// (/v1/admin/: drains, announced audiences).
type Dispatch struct {
	d    Deps
	srv  *dispatch.Server
	ann  *announce.Store
	seed func() bus.Beat
}

// NewDispatch builds the dispatch role (cfg's NC and Logger come from d).
// seed, when not nil, is the beat of a gateway in the same process, which
// dispatch knows from its start: its first beat may still be in flight, and
// the first client must not be told "no gateway".
func NewDispatch(d Deps, cfg dispatch.Config, seed func() bus.Beat) (*Dispatch, error) {
	cfg.NC, cfg.Logger = d.NC, d.Logger
	s, err := dispatch.New(cfg)
	if err != nil {
		return nil, err
	}
	return &Dispatch{d: d, srv: s, seed: seed}, nil
}

// announceOpenTimeout bounds opening the announcements bucket.
const announceOpenTimeout = 30 * time.Second

// Start listens to the beats and, with a verifier, opens the announced
// audiences (OpenAnnouncements).
func (s *Dispatch) Start(ctx context.Context) error {
	if err := s.srv.Start(ctx); err != nil {
		return err
	}
	if s.seed != nil {
		s.srv.Observe(s.seed())
	}
	if s.d.Verifier == nil {
		return nil
	}
	var err error
	s.ann, err = OpenAnnouncements(ctx, s.d)
	return err
}

// OpenAnnouncements opens the announced audiences. The uplink (or serve)
// creates their bucket; until it exists the store holds none and keeps
// looking for it (announce.Open).
func OpenAnnouncements(ctx context.Context, d Deps) (*announce.Store, error) {
	actx, cancel := context.WithTimeout(ctx, announceOpenTimeout)
	defer cancel()
	return announce.Open(actx, announce.Config{JS: d.JS, Logger: d.Logger})
}

// Mount serves GET /v1/dispatch, the operator view GET /v1/gateways and
// the admin API when the process verifies tokens (admin calls need a token
// with role admin).
func (s *Dispatch) Mount(m *Mount) {
	m.Routes = append(m.Routes, router.Route{Path: "/v1/dispatch", Methods: []string{http.MethodGet}, Handler: s.srv.Handler()})
	m.Operator = append(m.Operator, router.Route{Path: "/v1/gateways", Methods: []string{http.MethodGet}, Handler: s.srv.Handler()})
	if s.ann != nil {
		m.Admin = admin.Handler(admin.Config{NC: s.d.NC, Verifier: s.d.Verifier, Logger: s.d.Logger, Gateways: s.srv.Gateways, Announcements: s.ann})
	}
}

// Register adds dispatch's metrics.
func (s *Dispatch) Register(reg prometheus.Registerer) error { return s.srv.Register(reg) }

// Close stops listening to beats and closes the announcements.
func (s *Dispatch) Close() error {
	err := s.srv.Close()
	if s.ann != nil {
		_ = s.ann.Close()
	}
	return err
}

// Server is dispatch.
func (s *Dispatch) Server() *dispatch.Server { return s.srv }

// Announcements are the announced audiences; nil without a verifier, or
// before Start.
func (s *Dispatch) Announcements() *announce.Store { return s.ann }
