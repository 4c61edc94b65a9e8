package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/liveroom/liveroom/internal/announce"
	"github.com/liveroom/liveroom/internal/protocol"
)

// AnnouncementsPath is the route of GET and POST /v1/admin/announcements;
// DELETE takes /v1/admin/announcements/{id}.
const AnnouncementsPath = "/v1/admin/announcements"

// maxAnnounceBody bounds the body of POST /v1/admin/announcements.
const maxAnnounceBody = 4096

// AnnouncementList is the body of GET /v1/admin/announcements.
type AnnouncementList struct {
	Announcements []announce.Announcement `json:"announcements"`
}

// announcements serves AnnouncementsPath and AnnouncementsPath/{id}; rest
// is what follows AnnouncementsPath ("" or "/{id}").
func (h *handler) announcements(w http.ResponseWriter, r *http.Request, rest string) {
	var allow string
	switch {
	case rest == "":
		allow = "GET, HEAD, POST"
		if r.Method != http.MethodGet && r.Method != http.MethodHead && r.Method != http.MethodPost {
			methodNotAllowed(w, allow)
			return
		}
	case strings.HasPrefix(rest, "/"):
		allow = http.MethodDelete
		if r.Method != http.MethodDelete {
			methodNotAllowed(w, allow)
			return
		}
	default:
		notFound(w)
		return
	}
	who, ok := h.authorize(w, r, ActAnnounce)
	if !ok {
		return
	}
	st := h.cfg.Announcements
	if st == nil {
		protocol.WriteError(w, protocol.Errorf(http.StatusNotFound, protocol.CodeNotFound, "", "this process keeps no announcements; ask the one that serves the operator dashboard (serve, or dispatch with the JWT secret)"))
		return
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		protocol.WriteJSON(w, http.StatusOK, AnnouncementList{Announcements: st.List(time.Now())})
	case http.MethodPost:
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxAnnounceBody))
		if err != nil {
			protocol.WriteError(w, protocol.Errorf(http.StatusRequestEntityTooLarge, protocol.CodeTooLarge, "", "body is larger than 4096 bytes"))
			return
		}
		var req announce.Request
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			protocol.WriteError(w, protocol.Errorf(http.StatusBadRequest, protocol.CodeInvalidJSON, "",
				`body must be a JSON object such as {"room":"star","viewers":50000,"at":"2030-01-02T20:00:00Z"}: `+protocol.JSONProblem(err)))
			return
		}
		a, err := req.Build(time.Now(), string(who.User))
		if err != nil {
			protocol.WriteError(w, err)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), h.cfg.Timeout)
		defer cancel()
		if err := st.Create(ctx, a); err != nil {
			var pe *protocol.Error
			switch {
			case errors.Is(err, announce.ErrNotReady):
				err = protocol.Errorf(http.StatusServiceUnavailable, protocol.CodeUnavailable, "", err.Error()).WithRetry(1000)
			case !errors.As(err, &pe):
				h.log.Error("cannot store an announcement", "err", err)
				err = protocol.Errorf(http.StatusServiceUnavailable, protocol.CodeUnavailable, "", "cannot store the announcement; try again").WithRetry(1000)
			}
			protocol.WriteError(w, err)
			return
		}
		h.log.Info("audience announced", "id", a.ID, "room", a.Room, "viewers", a.Viewers, "at", a.At, "until", a.Until, "by", who.User)
		w.Header().Set("Location", AnnouncementsPath+"/"+a.ID)
		protocol.WriteJSON(w, http.StatusCreated, a)
	case http.MethodDelete:
		id := strings.TrimPrefix(rest, "/")
		if !announce.ValidID(id) {
			protocol.WriteError(w, protocol.Errorf(http.StatusBadRequest, protocol.CodeInvalidField, "id", "announcement id must be 1-64 characters of A-Z a-z 0-9 _ -"))
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), h.cfg.Timeout)
		defer cancel()
		switch err := st.Delete(ctx, id); {
		case errors.Is(err, announce.ErrNotFound):
			protocol.WriteError(w, protocol.Errorf(http.StatusNotFound, protocol.CodeNotFound, "id", "no announcement "+id+" is scheduled"))
		case err != nil:
			h.log.Error("cannot delete an announcement", "id", id, "err", err)
			protocol.WriteError(w, protocol.Errorf(http.StatusServiceUnavailable, protocol.CodeUnavailable, "", "cannot delete the announcement; try again").WithRetry(1000))
		default:
			h.log.Info("announcement deleted", "id", id, "by", who.User)
			w.WriteHeader(http.StatusNoContent)
		}
	}
}

func methodNotAllowed(w http.ResponseWriter, allow string) {
	w.Header().Set("Allow", allow)
	protocol.WriteError(w, protocol.Errorf(http.StatusMethodNotAllowed, protocol.CodeMethodNotAllowed, "", "use "+allow))
}

func notFound(w http.ResponseWriter) {
	protocol.WriteError(w, protocol.Errorf(http.StatusNotFound, protocol.CodeNotFound, "", "no admin endpoint here; docs/OPERATIONS.md lists them"))
}
