package admin

import (
	"net/http"

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
	case ActDrain, ActStats, ActAnnounce:
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
