// Package replay serves the live-session and replay API: an anchor starts
// and stops a room's live session, anyone lists a room's sessions and reads
// a time window of a session's archived messages, in the order and at the
// offsets viewers saw them live.
//
//	POST /v1/rooms/{room}/live/start
//	POST /v1/rooms/{room}/live/stop
//	GET  /v1/rooms/{room}/sessions
//	GET  /v1/rooms/{room}/sessions/{session}/replay?from_ms=&to_ms=
//
// The handlers expect the room already validated and set as
// r.PathValue("room") (app.RoomRoute does that).
package replay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/liveroom/liveroom/internal/archive"
	"github.com/liveroom/liveroom/internal/auth"
	"github.com/liveroom/liveroom/internal/bus"
	"github.com/liveroom/liveroom/internal/protocol"
	"github.com/liveroom/liveroom/internal/session"
)

// Notice actions published on the room's reliable subject when a session
// starts and stops: viewers see them, webhooks forward them.
const (
	ActionLiveStart = "live_start"
	ActionLiveStop  = "live_stop"
)

// Anchors says who a room's anchor is (internal/moderation's cache). When
// set, only the room's anchor (or an admin) may start and stop its session,
// and an anchor starting an anchorless room claims it.
type Anchors interface {
	Anchor(room protocol.Room) protocol.User
	ClaimAnchor(ctx context.Context, room protocol.Room, user protocol.User) (protocol.User, error)
}

// Config configures an API. Zero values mean the defaults.
type Config struct {
	// JS publishes the live_start/live_stop notices and reads sessions.
	// Required.
	JS jetstream.JetStream
	// Sessions records sessions. Required.
	Sessions *session.Registry
	// Store is the archive read by the replay endpoint. Nil: the replay
	// endpoint answers 503 (this process keeps no archive).
	Store *archive.Store
	// Verifier authenticates live start and stop. Required.
	Verifier *auth.Verifier
	// Anchors, when set, restricts start/stop to the room's anchor. Nil:
	// role admin may always, role anchor may start a room and stop the
	// session it started.
	Anchors Anchors
	// Logger; default slog.Default().
	Logger *slog.Logger
	// MaxWindowMS is the longest window one replay call may ask for.
	// Default 60000.
	MaxWindowMS int64
	// MaxMessages caps the messages of one answer (the millisecond under
	// way is finished, then next_from_ms says where to continue). Default
	// 5000.
	MaxMessages int
	// PublishTimeout bounds storing a notice. Default 5s.
	PublishTimeout time.Duration
}

// API serves the endpoints. It is safe for concurrent use.
type API struct {
	cfg Config
	log *slog.Logger
}

// New validates cfg and fills defaults.
func New(cfg Config) (*API, error) {
	if cfg.JS == nil || cfg.Sessions == nil || cfg.Verifier == nil {
		return nil, errors.New("cannot create replay api: JS, Sessions and Verifier are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.MaxWindowMS <= 0 {
		cfg.MaxWindowMS = 60_000
	}
	if cfg.MaxMessages <= 0 {
		cfg.MaxMessages = 5000
	}
	if cfg.PublishTimeout <= 0 {
		cfg.PublishTimeout = 5 * time.Second
	}
	return &API{cfg: cfg, log: cfg.Logger.With("component", "replay")}, nil
}

// Start, Stop, List and Replay are the handlers of the four endpoints.
func (a *API) Start() http.Handler  { return a.anchored(a.start) }
func (a *API) Stop() http.Handler   { return a.anchored(a.stop) }
func (a *API) List() http.Handler   { return http.HandlerFunc(a.list) }
func (a *API) Replay() http.Handler { return http.HandlerFunc(a.replay) }

// anchored wraps start and stop: it reads the room and the caller and bounds
// the call by PublishTimeout.
func (a *API) anchored(h func(ctx context.Context, w http.ResponseWriter, room protocol.Room, who auth.Identity)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		room, err := roomOf(r)
		if err != nil {
			protocol.WriteError(w, err)
			return
		}
		who, err := a.cfg.Verifier.FromRequest(r)
		if err != nil {
			protocol.WriteError(w, err)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), a.cfg.PublishTimeout)
		defer cancel()
		h(ctx, w, room, who)
	})
}

func roomOf(r *http.Request) (protocol.Room, error) {
	room, err := protocol.ParseRoom(r.PathValue("room"))
	if err != nil {
		return "", protocol.Errorf(http.StatusBadRequest, protocol.CodeInvalidRoom, "room", err.Error())
	}
	return room, nil
}

// authorize checks that who may start (stop=false) or stop the live session
// of room; cur is the running session when stopping.
func (a *API) authorize(ctx context.Context, room protocol.Room, who auth.Identity, stop bool, cur session.Session) error {
	if who.Role == protocol.RoleAdmin {
		return nil
	}
	forbidden := protocol.Errorf(http.StatusForbidden, protocol.CodeForbidden, "",
		"only the room's anchor or an admin may start or stop its live session")
	if who.Role != protocol.RoleAnchor {
		return forbidden
	}
	if a.cfg.Anchors != nil {
		anchor := a.cfg.Anchors.Anchor(room)
		if anchor == "" && !stop {
			got, err := a.cfg.Anchors.ClaimAnchor(ctx, room, who.User)
			if err != nil {
				return fmt.Errorf("cannot claim the room's anchor: %w", err)
			}
			anchor = got
		}
		if anchor != who.User {
			return forbidden
		}
		return nil
	}
	if stop && cur.By != string(who.User) {
		return forbidden
	}
	return nil
}

// sessionAnswer is a session as the API shows it.
type sessionAnswer struct {
	ID        string `json:"id"`
	Room      string `json:"room"`
	StartedMS int64  `json:"started_ms"`
	StoppedMS int64  `json:"stopped_ms,omitempty"`
	Live      bool   `json:"live"`
	// DurationMS is the session's length so far.
	DurationMS int64 `json:"duration_ms"`
	// Messages is how many messages the archive holds (-1: no archive here).
	Messages int64 `json:"messages"`
}

func (a *API) answer(s session.Session) sessionAnswer {
	end := s.StoppedMS
	if end == 0 {
		end = time.Now().UnixMilli()
	}
	out := sessionAnswer{ID: s.ID, Room: s.Room, StartedMS: s.StartedMS, StoppedMS: s.StoppedMS, Live: s.Live(),
		DurationMS: max(end-s.StartedMS, 0), Messages: -1}
	if a.cfg.Store != nil {
		out.Messages = 0
		if m, err := a.cfg.Store.Meta(protocol.Room(s.Room), s.ID); err == nil {
			out.Messages = m.Messages
		}
	}
	return out
}

func (a *API) start(ctx context.Context, w http.ResponseWriter, room protocol.Room, who auth.Identity) {
	if err := a.authorize(ctx, room, who, false, session.Session{}); err != nil {
		a.fail(w, err)
		return
	}
	s, started, err := a.cfg.Sessions.Start(ctx, room, who.User)
	if err != nil {
		a.fail(w, err)
		return
	}
	status := http.StatusOK
	if started {
		status = http.StatusCreated
		a.log.Info("live session started", "room", room, "session", s.ID, "by", who.User)
	}
	// Published (again) on a repeated start too: the notice's id makes the
	// stream drop the copy, and a start whose notice failed gets it now.
	if err := a.notice(ctx, s, who, ActionLiveStart, s.StartedMS); err != nil {
		a.fail(w, err)
		return
	}
	protocol.WriteJSON(w, status, a.answer(s))
}

func (a *API) stop(ctx context.Context, w http.ResponseWriter, room protocol.Room, who auth.Identity) {
	s, err := a.cfg.Sessions.StopIf(ctx, room, func(cur session.Session) error {
		return a.authorize(ctx, room, who, true, cur)
	})
	if err != nil {
		a.fail(w, err)
		return
	}
	a.log.Info("live session stopped", "room", room, "session", s.ID, "by", who.User)
	if err := a.notice(ctx, s, who, ActionLiveStop, s.StoppedMS); err != nil {
		a.fail(w, err)
		return
	}
	protocol.WriteJSON(w, http.StatusOK, a.answer(s))
}

// notice stores a live_start or live_stop notice in the room's reliable
// stream, stamped with the session, under an id derived from the session so
// a retry is stored once.
func (a *API) notice(ctx context.Context, s session.Session, who auth.Identity, action string, ts int64) error {
	m := protocol.Message{
		ID: action + "-" + s.ID, Type: protocol.TypeNotice, Room: s.Room, User: string(who.User), Name: who.Name,
		Role: who.Role, TS: ts, Action: action, Session: s.ID, OffsetMS: s.Offset(ts),
	}
	m.Text = "The live stream started."
	if action == ActionLiveStop {
		m.Text = "The live stream ended."
	}
	_, err := a.cfg.JS.PublishMsg(ctx, &nats.Msg{Subject: bus.StoreSubject(protocol.Room(s.Room)), Data: protocol.Encode(m)},
		jetstream.WithMsgID(m.ID), jetstream.WithExpectStream(bus.ReliableStream))
	if err != nil {
		return fmt.Errorf("cannot store %s notice: %w", action, err)
	}
	return nil
}

type listAnswer struct {
	Room     string          `json:"room"`
	Sessions []sessionAnswer `json:"sessions"`
}

func (a *API) list(w http.ResponseWriter, r *http.Request) {
	room, err := roomOf(r)
	if err != nil {
		protocol.WriteError(w, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	ss, err := a.cfg.Sessions.List(ctx, room)
	if err != nil {
		a.fail(w, err)
		return
	}
	out := listAnswer{Room: string(room), Sessions: make([]sessionAnswer, 0, len(ss))}
	for _, s := range ss {
		out.Sessions = append(out.Sessions, a.answer(s))
	}
	protocol.WriteJSON(w, http.StatusOK, out)
}

// fail maps errors of the session registry to answers.
func (a *API) fail(w http.ResponseWriter, err error) {
	var pe *protocol.Error
	switch {
	case errors.As(err, &pe):
	case errors.Is(err, session.ErrNotLive):
		err = protocol.Errorf(http.StatusConflict, protocol.CodeNotLive, "", "the room has no live session running")
	case errors.Is(err, session.ErrNotFound):
		err = protocol.Errorf(http.StatusNotFound, protocol.CodeNotFound, "session", "no such session in this room")
	default:
		a.log.Warn("session request failed", "err", err)
		err = protocol.Errorf(http.StatusServiceUnavailable, protocol.CodeUnavailable, "",
			"the session store is unavailable; retry").WithRetry(1000)
	}
	protocol.WriteError(w, err)
}

func queryMS(r *http.Request, name string, def int64) (int64, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, protocol.Errorf(http.StatusBadRequest, protocol.CodeInvalidField, name,
			name+" must be a whole number of milliseconds from the session start, 0 or more")
	}
	return n, nil
}
