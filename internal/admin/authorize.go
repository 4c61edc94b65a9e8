package admin

import (
	"net/http"
	"net/netip"

	"github.com/liveroom/liveroom/internal/auth"
	"github.com/liveroom/liveroom/internal/protocol"
)

// Action is what a caller of the admin API asks to do. Every route names
// its action, and allowed is the one place that says who may do it.
type Action string

// Actions of the admin API.
const (
	// ActDrain drains a gateway.
	ActDrain Action = "drain"
	// ActStats reads the fleet statistics.
	ActStats Action = "stats"
	// ActAnnounce lists, creates and deletes announced audiences.
	ActAnnounce Action = "announce"
)

// allowed reports whether the caller identified by id may do act. Today
// only operators (role admin) may do anything here; the platform's backend,
// once it has its own service credential, will be allowed ActAnnounce in
// this function and nowhere else. A viewer's or an anchor's token is never
// enough.
func allowed(id auth.Identity, act Action) bool {
	switch act {
	case ActDrain, ActStats, ActAnnounce, ActFleet:
		return id.Role == protocol.RoleAdmin
	}
	return false
}

// authorize verifies the caller's token and that it may do act, answering
// 401 or 403 itself when not.
func (h *handler) authorize(w http.ResponseWriter, r *http.Request, act Action) (auth.Identity, bool) {
	id, err := h.cfg.Verifier.FromRequest(r)
	if err != nil {
		protocol.WriteError(w, err)
		return id, false
	}
	if !allowed(id, act) {
		protocol.WriteError(w, protocol.Errorf(http.StatusForbidden, protocol.CodeForbidden, "", "this endpoint needs a token with role admin"))
		return id, false
	}
	return id, true
}

// ActFleet reads an operator view: /metrics, GET /v1/gateways (which rooms
// have viewers where), GET /v1/autoscale/decisions.
const ActFleet Action = "fleet"

// OperatorConfig says who may read the operator views served by Operator.
type OperatorConfig struct {
	// Verifier checks the caller's token (Authorization: Bearer only; a
	// ?token= is refused, as on every route but the WebSocket upgrade).
	// Nil: the process cannot check a token, and the views answer 403
	// internal_only; serve them on an internal address instead.
	Verifier *auth.Verifier
	// LocalDev lets callers on this machine in without a token (dev mode,
	// where such a caller can mint itself an admin token anyway; see
	// LocalCaller).
	LocalDev bool
}

// Operator wraps h, an operator view served on a public address, so that
// only callers allowed ActFleet reach it: 401 without a valid token, 403
// forbidden with a token of another role. On an internal address
// (--internal-addr) the views are served without it: that address is the
// operator's network.
func Operator(cfg OperatorConfig, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if cfg.LocalDev && LocalCaller(r) {
			h.ServeHTTP(w, r)
			return
		}
		if cfg.Verifier == nil {
			protocol.WriteError(w, protocol.Errorf(http.StatusForbidden, protocol.CodeInternalOnly, "",
				"this operator view is served on the internal address only (--internal-addr); this process has no key to check an admin token"))
			return
		}
		id, err := cfg.Verifier.FromRequest(r)
		if err != nil {
			protocol.WriteError(w, err)
			return
		}
		if !allowed(id, ActFleet) {
			protocol.WriteError(w, protocol.Errorf(http.StatusForbidden, protocol.CodeForbidden, "", "this endpoint needs a token with role admin"))
			return
		}
		h.ServeHTTP(w, r)
	})
}

// LocalCaller reports whether r comes straight from this machine: a
// loopback TCP peer and no proxy header (Forwarded, X-Forwarded-For,
// X-Real-IP), since a proxy on the same host makes every caller loopback.
func LocalCaller(r *http.Request) bool {
	for _, h := range []string{"Forwarded", "X-Forwarded-For", "X-Real-Ip"} {
		if r.Header.Get(h) != "" {
			return false
		}
	}
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	return err == nil && ap.Addr().Unmap().IsLoopback()
}
