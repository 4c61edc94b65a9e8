package replay

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/liveroom/liveroom/internal/archive"
	"github.com/liveroom/liveroom/internal/protocol"
)

// replay answers one window of a session:
//
//	{"room":R,"session":S,"from_ms":F,"to_ms":T,"next_from_ms":N?,"msgs":[…]}
//
// msgs are the archived messages with F <= offset_ms < T in offset order,
// spliced in as stored (never decoded). next_from_ms is present when the
// answer was capped: ask again from there.
func (a *API) replay(w http.ResponseWriter, r *http.Request) {
	room, err := roomOf(r)
	if err != nil {
		protocol.WriteError(w, err)
		return
	}
	id := r.PathValue("session")
	if !protocol.ValidID(id) {
		protocol.WriteError(w, protocol.Errorf(http.StatusBadRequest, protocol.CodeInvalidField, "session",
			"a session id is 1-64 characters: letters, digits, _ and -"))
		return
	}
	from, err := queryMS(r, "from_ms", 0)
	if err != nil {
		protocol.WriteError(w, err)
		return
	}
	to, err := queryMS(r, "to_ms", from+a.cfg.MaxWindowMS)
	if err != nil {
		protocol.WriteError(w, err)
		return
	}
	if to <= from || to-from > a.cfg.MaxWindowMS {
		protocol.WriteError(w, protocol.Errorf(http.StatusBadRequest, protocol.CodeInvalidField, "to_ms",
			fmt.Sprintf("to_ms must be after from_ms and at most %d ms after it; read a longer replay in several windows", a.cfg.MaxWindowMS)))
		return
	}
	if a.cfg.Store == nil {
		protocol.WriteError(w, protocol.Errorf(http.StatusServiceUnavailable, protocol.CodeUnavailable, "",
			"this process keeps no archive; ask the one that runs the archive role").WithRetry(1000))
		return
	}
	buf := make([]byte, 0, 4096)
	buf = append(buf, `{"room":"`...)
	buf = append(buf, room...)
	buf = append(buf, `","session":"`...)
	buf = append(buf, id...) // ValidID: needs no escaping
	buf = append(buf, `","from_ms":`...)
	buf = strconv.AppendInt(buf, from, 10)
	buf = append(buf, `,"to_ms":`...)
	buf = strconv.AppendInt(buf, to, 10)
	head := len(buf)
	buf = append(buf, `,"msgs":[`...)
	n := 0
	next, err := a.cfg.Store.Window(room, id, from, to, a.cfg.MaxMessages, func(_ int64, data []byte) {
		if n > 0 {
			buf = append(buf, ',')
		}
		buf = append(buf, data...)
		n++
	})
	if errors.Is(err, archive.ErrNoSession) {
		// Nothing archived: a known session simply had no messages there.
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		_, gerr := a.cfg.Sessions.Get(ctx, room, id)
		cancel()
		if gerr != nil {
			a.fail(w, gerr)
			return
		}
		err = nil
	}
	if err != nil {
		a.log.Error("cannot read archive", "room", room, "session", id, "err", err)
		protocol.WriteError(w, protocol.Errorf(http.StatusInternalServerError, protocol.CodeInternal, "", "cannot read the archive"))
		return
	}
	buf = append(buf, "]}"...)
	if next >= 0 {
		// Put next_from_ms before msgs so a reader sees it first.
		ins := strconv.AppendInt([]byte(`,"next_from_ms":`), next, 10)
		buf = slices.Insert(buf, head, ins...)
	}
	hd := w.Header()
	hd.Set("Content-Type", "application/json")
	// A window of a stopped session never changes; a live one may grow.
	hd.Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(buf)
}
