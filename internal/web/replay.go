package web

import (
	"net/http"

	"github.com/liveroom/liveroom/internal/protocol"
)

type replayPage struct {
	Room    string
	Session string
	Gifts   []gift
}

// replay serves the replay player of one session at
// /replay/{room}/{session}. The page reads the session and its messages
// from GET /v1/rooms/{room}/sessions and …/sessions/{session}/replay.
func (h *handler) replay(w http.ResponseWriter, r *http.Request) {
	room, err := protocol.ParseRoom(r.PathValue("room"))
	if err != nil {
		h.badRoom(w, r)
		return
	}
	session := r.PathValue("session")
	if !protocol.ValidID(session) {
		if len(session) > 80 {
			session = session[:80] + "…"
		}
		h.render(w, http.StatusBadRequest, "error.html", errorPage{Title: "Not a session",
			Message: "“" + session + "” is not a session id: 1–64 characters of letters, digits, “_” and “-”."})
		return
	}
	h.render(w, http.StatusOK, "replay.html", replayPage{Room: string(room), Session: session, Gifts: gifts})
}
