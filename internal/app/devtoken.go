package app

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"
	"unicode/utf8"

	"github.com/liveroom/liveroom/internal/admin"
	"github.com/liveroom/liveroom/internal/auth"
	"github.com/liveroom/liveroom/internal/protocol"
)

// DevTokenHandler serves POST /v1/dev/token in dev mode: body
// {"user":"alice","name":"Alice","role":"viewer"} → {"token":"…"}, valid 24h;
// an anchor's "rooms" lists the rooms its token owns.
// It answers callers on this machine only (403 dev_token_local_only
// elsewhere); with onNetwork, other callers get viewer and anchor tokens but
// never admin ones. A request that came through a proxy (it carries
// Forwarded, X-Forwarded-For or X-Real-IP) is not a local caller, whatever
// its TCP peer.
func DevTokenHandler(s *auth.Signer, onNetwork bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		local := admin.LocalCaller(r)
		if !local && !onNetwork {
			protocol.WriteError(w, protocol.Errorf(http.StatusForbidden, protocol.CodeDevLocalOnly, "",
				"dev tokens are minted for callers on the server's own machine only"))
			return
		}
		var req struct {
			User  string   `json:"user"`
			Name  string   `json:"name"`
			Role  string   `json:"role"`
			Rooms []string `json:"rooms"`
		}
		r.Body = http.MaxBytesReader(w, r.Body, 1024)
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			protocol.WriteError(w, protocol.Errorf(http.StatusBadRequest, protocol.CodeInvalidJSON, "", "body must be JSON like {\"user\":\"alice\",\"name\":\"Alice\",\"role\":\"viewer\"}"))
			return
		}
		user, err := protocol.ParseUser(req.User)
		if err != nil {
			protocol.WriteError(w, protocol.Errorf(http.StatusBadRequest, protocol.CodeInvalidField, "user", err.Error()))
			return
		}
		if req.Role == "" {
			req.Role = protocol.RoleViewer
		}
		if !protocol.ValidRole(req.Role) {
			protocol.WriteError(w, protocol.Errorf(http.StatusBadRequest, protocol.CodeInvalidField, "role", "role must be viewer, anchor or admin"))
			return
		}
		if req.Role == protocol.RoleAdmin && !local {
			protocol.WriteError(w, protocol.Errorf(http.StatusForbidden, protocol.CodeDevLocalOnly, "role",
				"dev admin tokens are minted for callers on the server's own machine only"))
			return
		}
		if req.Name == "" {
			req.Name = req.User
		}
		if !utf8.ValidString(req.Name) || utf8.RuneCountInString(req.Name) > 32 {
			protocol.WriteError(w, protocol.Errorf(http.StatusBadRequest, protocol.CodeInvalidField, "name", "name must be 1-32 characters of valid UTF-8"))
			return
		}
		if len(req.Rooms) > auth.MaxOwnedRooms {
			protocol.WriteError(w, protocol.Errorf(http.StatusBadRequest, protocol.CodeInvalidField, "rooms", fmt.Sprintf("at most %d rooms", auth.MaxOwnedRooms)))
			return
		}
		var rooms []protocol.Room
		for _, r := range req.Rooms {
			room, err := protocol.ParseRoom(r)
			if err != nil {
				protocol.WriteError(w, protocol.Errorf(http.StatusBadRequest, protocol.CodeInvalidField, "rooms", err.Error()))
				return
			}
			rooms = append(rooms, room)
		}
		tok, err := s.WithRooms(rooms...).Mint(user, req.Name, req.Role, 24*time.Hour)
		if err != nil {
			protocol.WriteError(w, err)
			return
		}
		protocol.WriteJSON(w, http.StatusOK, map[string]string{"token": tok})
	})
}
