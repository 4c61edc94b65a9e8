package web

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/liveroom/liveroom/internal/protocol"
	"github.com/liveroom/liveroom/internal/session"
)

type replayPage struct {
	Room    string
	Session string
	Gifts   []gift
}

// replay serves the replay player of one session at
// /replay/{room}/{session}. The page reads the session and its messages
// from GET /v1/rooms/{room}/sessions and …/sessions/{session}/replay. With
// Config.Sessions, a session the room does not have is a 404 page listing
// the room's recent sessions.
func (h *handler) replay(w http.ResponseWriter, r *http.Request) {
	room, err := protocol.ParseRoom(r.PathValue("room"))
	if err != nil {
		h.badRoom(w, r)
		return
	}
	id := r.PathValue("session")
	if !protocol.ValidID(id) {
		if len(id) > 80 {
			id = id[:80] + "…"
		}
		h.render(w, http.StatusBadRequest, "error.html", errorPage{Title: "Not a session",
			Message: "“" + id + "” is not a session id: 1–64 characters of letters, digits, “_” and “-”."})
		return
	}
	if h.cfg.Sessions != nil && h.noSuchSession(w, r, room, id) {
		return
	}
	h.render(w, http.StatusOK, "replay.html", replayPage{Room: string(room), Session: id, Gifts: gifts})
}

// recentSessions is how many sessions the "no such session" page links.
const recentSessions = 5

// noSuchSession answers 404 when room has no session id and reports
// whether it did. When the sessions cannot be read it answers nothing: the
// page then loads and says what it finds.
func (h *handler) noSuchSession(w http.ResponseWriter, r *http.Request, room protocol.Room, id string) bool {
	ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	_, err := h.cfg.Sessions.Get(ctx, room, id)
	if !errors.Is(err, session.ErrNotFound) {
		return false
	}
	p := errorPage{Title: "No such session",
		Message: fmt.Sprintf("Room %s has no session %s: it never existed, or its archive expired.", room, id)}
	if all, err := h.cfg.Sessions.List(ctx, room); err == nil && len(all) > 0 {
		p.Message += " Its recent streams:"
		for _, s := range all[:min(len(all), recentSessions)] {
			text := time.UnixMilli(s.StartedMS).UTC().Format("2006-01-02 15:04 UTC")
			if s.Live() {
				text += " (live now)"
			}
			p.Links = append(p.Links, pageLink{Href: "/replay/" + url.PathEscape(string(room)) + "/" + url.PathEscape(s.ID), Text: text})
		}
	}
	p.Links = append(p.Links, pageLink{Href: "/room/" + url.PathEscape(string(room)), Text: "The live room " + string(room)})
	h.render(w, http.StatusNotFound, "error.html", p)
	return true
}
