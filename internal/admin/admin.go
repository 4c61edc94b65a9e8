// Package admin serves the operator's HTTP API: actions on the fleet that
// need the admin role: draining a gateway, the fleet statistics the
// operator dashboard (/admin) polls, and the announced audiences the
// autoscaler prepares for. It talks to gateways only through NATS (their
// control subjects, load beats and the announcements bucket), so any
// process on the backbone can serve it. Who may call what is decided in one
// place, allowed (authorize.go).
package admin

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/liveroom/liveroom/internal/announce"
	"github.com/liveroom/liveroom/internal/auth"
	"github.com/liveroom/liveroom/internal/bus"
	"github.com/liveroom/liveroom/internal/protocol"
)

// Config configures the admin API.
type Config struct {
	NC       *nats.Conn     // required
	Verifier *auth.Verifier // required: every call needs an admin token
	Logger   *slog.Logger
	// Timeout bounds the wait for a gateway's answer. Default 5s.
	Timeout time.Duration
	// Gateways returns the latest beat of every live gateway: the fleet
	// view (internal/fleet) as dispatch serves it, dispatch.Server.Gateways.
	// Admin keeps no view of its own. Nil: GET /v1/admin/stats answers 404,
	// as in a process that does not read beats.
	Gateways func() []bus.Beat
	// Announcements keeps the announced audiences. Nil: the announcement
	// routes answer 404 and the stats list none.
	Announcements *announce.Store
}

// Handler returns the admin API:
//
//	POST   /v1/admin/gateways/{id}/drain    → 202 {"gateway","state":"draining","conns"}
//	GET    /v1/admin/stats                  → 200 Stats (fleet totals, gateways, top rooms, announcements)
//	GET    /v1/admin/announcements          → 200 AnnouncementList
//	POST   /v1/admin/announcements          → 201 announce.Announcement
//	DELETE /v1/admin/announcements/{id}     → 204
func Handler(cfg Config) http.Handler {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	h := &handler{cfg: cfg, log: cfg.Logger.With("role", "admin")}
	// Routed by hand rather than with a ServeMux, which would answer a path
	// holding "//" or ".." with a redirect (a client follows a redirected
	// POST as a GET) instead of a JSON error. A path outside endpoints is
	// not served, so a route cannot be added without listing it there
	// (where the authorization matrix finds it).
	return api(func(w http.ResponseWriter, r *http.Request) {
		known := false
		for _, e := range endpoints {
			known = known || protocol.MatchEndpoint(e.Pattern, r.URL.Path)
		}
		if !known {
			notFound(w)
			return
		}
		if r.URL.Path == StatsPath {
			if r.Method != http.MethodGet && r.Method != http.MethodHead {
				methodNotAllowed(w, "GET, HEAD")
				return
			}
			h.stats(w, r)
			return
		}
		if rest, ok := strings.CutPrefix(r.URL.Path, AnnouncementsPath); ok {
			h.announcements(w, r, rest)
			return
		}
		id, ok := strings.CutPrefix(r.URL.Path, "/v1/admin/gateways/")
		if ok {
			id, ok = strings.CutSuffix(id, "/drain")
		}
		if !ok {
			notFound(w)
			return
		}
		if r.Method != http.MethodPost {
			methodNotAllowed(w, http.MethodPost)
			return
		}
		h.drain(w, r, id)
	})
}

// endpoints are the admin API's routes (see Handler).
var endpoints = []protocol.Endpoint{
	{Pattern: "/v1/admin/gateways/{id}/drain", Methods: []string{http.MethodPost}},
	{Pattern: StatsPath, Methods: []string{http.MethodGet}},
	{Pattern: AnnouncementsPath, Methods: []string{http.MethodGet, http.MethodPost}},
	{Pattern: AnnouncementsPath + "/{id}", Methods: []string{http.MethodDelete}},
}

// api is the admin API's handler; it lists its routes.
type api func(http.ResponseWriter, *http.Request)

func (a api) ServeHTTP(w http.ResponseWriter, r *http.Request) { a(w, r) }

// Endpoints lists the routes the admin API serves.
func (api) Endpoints() []protocol.Endpoint { return slices.Clone(endpoints) }

type handler struct {
	cfg Config
	log *slog.Logger
}

func (h *handler) drain(w http.ResponseWriter, r *http.Request, gw string) {
	who, ok := h.authorize(w, r, ActDrain)
	if !ok {
		return
	}
	if !bus.ValidGatewayID(gw) {
		protocol.WriteError(w, protocol.Errorf(http.StatusBadRequest, protocol.CodeInvalidField, "id", "gateway id must be 1-64 characters of A-Z a-z 0-9 _ -"))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.cfg.Timeout)
	defer cancel()
	reply, err := bus.SendControl(ctx, h.cfg.NC, gw, bus.CmdDrain)
	switch {
	case errors.Is(err, bus.ErrGone):
		protocol.WriteError(w, protocol.Errorf(http.StatusNotFound, protocol.CodeNotFound, "id", "no gateway "+gw+" is running"))
		return
	case errors.Is(err, bus.ErrRefused):
		protocol.WriteError(w, protocol.Errorf(http.StatusBadGateway, protocol.CodeInternal, "", "gateway "+gw+" refused: "+reply.Error))
		return
	case err != nil:
		protocol.WriteError(w, protocol.Errorf(http.StatusGatewayTimeout, protocol.CodeUnavailable, "", "gateway "+gw+" did not answer").WithRetry(1000))
		return
	}
	h.log.Info("drain ordered", "gateway", gw, "by", who.User, "conns", reply.Conns)
	protocol.WriteJSON(w, http.StatusAccepted, reply)
}
