package moderation

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base32"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/liveroom/liveroom/internal/auth"
	"github.com/liveroom/liveroom/internal/bus"
	"github.com/liveroom/liveroom/internal/protocol"
)

// Path is the room route of the moderation API (after /v1/rooms/{room}/).
const Path = "moderation"

// Actions.
const (
	ActionMute      = "mute"
	ActionUnmute    = "unmute"
	ActionBan       = "ban"
	ActionUnban     = "unban"
	ActionKick      = "kick"
	ActionSlowMode  = "slow_mode"
	ActionMuteAll   = "mute_all"
	ActionAnnounce  = "announce"
	ActionClose     = "close"
	ActionReopen    = "reopen"
	ActionSetAnchor = "set_anchor"
)

// Limits of a request.
const (
	MaxDuration    = 365 * 24 * time.Hour
	MaxReasonLen   = 200 // runes
	MaxAnnounceLen = 500 // runes
	MaxSlowModeS   = 3600
	maxBody        = 4096
)

// Request is the body of POST /v1/rooms/{room}/moderation.
type Request struct {
	Action    string `json:"action"`
	User      string `json:"user,omitempty"`
	DurationS int64  `json:"duration_s,omitempty"`
	Reason    string `json:"reason,omitempty"`
	IntervalS *int   `json:"interval_s,omitempty"`
	On        *bool  `json:"on,omitempty"`
	Text      string `json:"text,omitempty"`
}

// Result answers an action. Changed is false when the action found the room
// already as asked (a repeated request): every action is idempotent.
type Result struct {
	Room    string     `json:"room"`
	Action  string     `json:"action"`
	User    string     `json:"user,omitempty"`
	UntilMS int64      `json:"until_ms,omitempty"`
	Changed bool       `json:"changed"`
	State   *RoomState `json:"state,omitempty"`
	// ID and Seq identify the reliable notice an announce, close or reopen
	// published.
	ID  string `json:"id,omitempty"`
	Seq uint64 `json:"seq,omitempty"`
}

// View answers GET /v1/rooms/{room}/moderation.
type View struct {
	Room string `json:"room"`
	RoomState
	Mutes []Entry `json:"mutes"`
	Bans  []Entry `json:"bans"`
}

// Config configures a Service.
type Config struct {
	NC       *nats.Conn          // publishes user notices; required
	JS       jetstream.JetStream // stores decisions and notices; required
	Cache    *Cache              // required; read for authorization and GET
	Verifier *auth.Verifier      // required
	Logger   *slog.Logger
	// Timeout bounds one action's storage. Default 5s.
	Timeout time.Duration
	// Stamp, when set, is applied to every room notice before it is
	// stored: the uplink's live-session stamp (session, offset_ms), so a
	// notice takes its place in the session's replay like any message.
	Stamp func(*protocol.Message)
}

// Service applies moderation actions. Safe for concurrent use.
type Service struct {
	cfg Config
	kv  jetstream.KeyValue
	log *slog.Logger
}

// NewService opens the bucket (which must exist).
func NewService(ctx context.Context, cfg Config) (*Service, error) {
	if cfg.NC == nil || cfg.JS == nil || cfg.Cache == nil || cfg.Verifier == nil {
		return nil, errors.New("cannot create moderation service: NC, JS, Cache and Verifier are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	kv, err := bus.OpenKV(ctx, cfg.JS, bus.ModerationKV)
	if err != nil {
		return nil, fmt.Errorf("cannot open bucket %s: %w", bus.ModerationKV, err)
	}
	return &Service{cfg: cfg, kv: kv, log: cfg.Logger.With("component", "moderation")}, nil
}

// Cache returns the service's cache.
func (s *Service) Cache() *Cache { return s.cfg.Cache }

// Handler serves GET and POST on /v1/rooms/{room}/moderation; the router has
// validated the room and set r.PathValue("room").
func (s *Service) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		room, err := protocol.ParseRoom(r.PathValue("room"))
		if err != nil {
			protocol.WriteError(w, protocol.Errorf(http.StatusBadRequest, protocol.CodeInvalidRoom, "room", err.Error()))
			return
		}
		who, err := s.cfg.Verifier.FromRequest(r)
		if err != nil {
			protocol.WriteError(w, err)
			return
		}
		if !s.mayModerate(room, who) {
			protocol.WriteError(w, protocol.Errorf(http.StatusForbidden, protocol.CodeForbidden, "",
				"only an admin or this room's anchor may moderate it"))
			return
		}
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			mutes, bans := s.cfg.Cache.Sanctions(room, time.Now())
			protocol.WriteJSON(w, http.StatusOK, View{Room: string(room), RoomState: s.cfg.Cache.Room(room), Mutes: mutes, Bans: bans})
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
		if err != nil {
			protocol.WriteError(w, protocol.Errorf(http.StatusRequestEntityTooLarge, protocol.CodeTooLarge, "", "body is larger than 4096 bytes"))
			return
		}
		var req Request
		if err := protocol.CheckKeys(body, "action", "user", "duration_s", "reason", "interval_s", "on", "text"); err != nil {
			protocol.WriteError(w, protocol.Errorf(http.StatusBadRequest, protocol.CodeInvalidJSON, "", "body must be a JSON object: "+strings.TrimPrefix(err.Error(), protocol.ErrKeys.Error()+": ")))
			return
		}
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			protocol.WriteError(w, protocol.Errorf(http.StatusBadRequest, protocol.CodeInvalidJSON, "", "body must be a JSON object: "+protocol.JSONProblem(err)))
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), s.cfg.Timeout)
		defer cancel()
		res, err := s.Apply(ctx, room, who, req, r.Header.Get("Idempotency-Key"))
		if err != nil {
			protocol.WriteError(w, err)
			return
		}
		if res.Changed && res.ID == "" {
			// Announce, close and reopen are room notices in the
			// stream already.
			s.record(ctx, room, who, req, res)
		}
		s.log.Info("moderation", "room", room, "action", res.Action, "user", res.User, "by", who.User, "changed", res.Changed)
		protocol.WriteJSON(w, http.StatusOK, res)
	})
}

// mayModerate: admins everywhere, the room's anchor in their room.
// An anchor runs a room when it is the room's recorded anchor, or, for a
// room nobody runs yet, when its token names the room (auth.Identity.Owns):
// an anchor token cannot take over a room the platform did not give it.
func (s *Service) mayModerate(room protocol.Room, who auth.Identity) bool {
	return who.Role == protocol.RoleAdmin || Runs(s.cfg.Cache, room, who)
}

// Runs reports whether who is an anchor that runs room (see mayModerate).
func Runs(c *Cache, room protocol.Room, who auth.Identity) bool {
	if who.Role != protocol.RoleAnchor {
		return false
	}
	a := c.Anchor(room)
	return a == who.User || (a == "" && who.Owns(room))
}

// Exempt reports whether who escapes slow mode and mute-all in room: admins
// and the anchor who runs it.
func Exempt(c *Cache, room protocol.Room, who auth.Identity) bool {
	return who.Role == protocol.RoleAdmin || Runs(c, room, who)
}

// Sanctionable reports whether mutes and bans apply to who: never to an
// admin (an anchor cannot silence or lock out the platform's staff, whatever
// user id it names).
func Sanctionable(who auth.Identity) bool { return who.Role != protocol.RoleAdmin }

func invalid(field, msg string) error {
	return protocol.Errorf(http.StatusBadRequest, protocol.CodeInvalidField, field, msg)
}

var errUnavailable = protocol.Errorf(http.StatusServiceUnavailable, protocol.CodeUnavailable, "", "cannot store the decision now; retry").WithRetry(1000)

// Apply performs req on room for who, who having been authorized.
// idemKey, when set, makes an announce idempotent (same key, same notice).
func (s *Service) Apply(ctx context.Context, room protocol.Room, who auth.Identity, req Request, idemKey string) (Result, error) {
	res := Result{Room: string(room), Action: req.Action}
	if utf8.RuneCountInString(req.Reason) > MaxReasonLen {
		return res, invalid("reason", fmt.Sprintf("reason is longer than %d characters", MaxReasonLen))
	}
	if p := protocol.TextProblem(req.Reason); p != "" {
		return res, invalid("reason", "reason "+p)
	}
	var user protocol.User
	switch req.Action {
	case ActionMute, ActionUnmute, ActionBan, ActionUnban, ActionKick, ActionSetAnchor:
		u, err := protocol.ParseUser(req.User)
		if err != nil {
			return res, invalid("user", "user: "+err.Error())
		}
		user = u
		res.User = string(u)
	}
	now := time.Now()
	switch req.Action {
	case ActionMute, ActionBan:
		if req.DurationS <= 0 || req.DurationS > int64(MaxDuration/time.Second) {
			return res, invalid("duration_s", "duration_s must be between 1 and 31536000 seconds")
		}
		if user == s.cfg.Cache.Anchor(room) {
			return res, protocol.Errorf(http.StatusForbidden, protocol.CodeForbidden, "user", "the room's anchor cannot be muted or banned in their own room")
		}
		return s.sanction(ctx, room, user, Kind(req.Action), who, req, now)
	case ActionUnmute, ActionUnban:
		kind := KindMute
		if req.Action == ActionUnban {
			kind = KindBan
		}
		return s.lift(ctx, room, user, kind, who, now)
	case ActionKick:
		n := protocol.Message{ID: nuid.Next(), Type: protocol.TypeNotice, Action: ActionKick, Room: string(room),
			User: string(who.User), Name: who.Name, Role: who.Role, TS: now.UnixMilli(), Text: req.Reason}
		if err := s.notifyUser(user, n); err != nil {
			return res, errUnavailable
		}
		res.Changed = true
		return res, nil
	case ActionSlowMode:
		if req.IntervalS == nil || *req.IntervalS < 0 || *req.IntervalS > MaxSlowModeS {
			return res, invalid("interval_s", "interval_s must be between 0 (off) and 3600 seconds")
		}
		return s.updateRoom(ctx, room, res, func(st *RoomState) { st.SlowModeS = *req.IntervalS })
	case ActionMuteAll:
		if req.On == nil {
			return res, invalid("on", "on must be true or false")
		}
		return s.updateRoom(ctx, room, res, func(st *RoomState) { st.MuteAll = *req.On })
	case ActionSetAnchor:
		if who.Role != protocol.RoleAdmin {
			return res, protocol.Errorf(http.StatusForbidden, protocol.CodeForbidden, "", "only an admin may set a room's anchor")
		}
		return s.updateRoom(ctx, room, res, func(st *RoomState) { st.Anchor = string(user) })
	case ActionAnnounce:
		if p := protocol.TextProblem(req.Text); p != "" && strings.TrimSpace(req.Text) != "" {
			return res, invalid("text", "text "+p)
		}
		if strings.TrimSpace(req.Text) == "" || utf8.RuneCountInString(req.Text) > MaxAnnounceLen || !utf8.ValidString(req.Text) {
			return res, invalid("text", fmt.Sprintf("text must be 1 to %d characters of valid UTF-8", MaxAnnounceLen))
		}
		return s.announce(ctx, room, who, ActionAnnounce, req.Text, idemKey, now, res)
	case ActionClose, ActionReopen:
		closing := req.Action == ActionClose
		res, err := s.updateRoom(ctx, room, res, func(st *RoomState) {
			st.Closed = closing
			st.Reason = ""
			if closing {
				st.Reason = req.Reason
			}
		})
		if err != nil || !res.Changed {
			return res, err
		}
		text := "The room was reopened."
		if closing {
			text = "The room was closed."
			if req.Reason != "" {
				text = "The room was closed: " + req.Reason
			}
		}
		// The key carries the room state revision's time, so a retry of
		// the same close (which finds the room closed: Changed false) never
		// reaches here, and two different closes are two notices.
		return s.announce(ctx, room, who, req.Action, text, fmt.Sprintf("%s-%d", req.Action, now.UnixNano()), now, res)
	case "":
		return res, invalid("action", "action is required")
	default:
		return res, invalid("action", "unknown action "+quote(req.Action)+"; want mute, unmute, ban, unban, kick, slow_mode, mute_all, announce, close, reopen or set_anchor")
	}
}

func quote(s string) string {
	if r := []rune(s); len(r) > 40 {
		s = string(r[:40]) + "…"
	}
	return fmt.Sprintf("%q", s)
}

func (s *Service) sanction(ctx context.Context, room protocol.Room, user protocol.User, kind Kind, who auth.Identity, req Request, now time.Time) (Result, error) {
	res := Result{Room: string(room), Action: req.Action, User: string(user)}
	key := sanctionKey(room, kind, user)
	// A repeat of the request that set the current sanction changes
	// nothing: same duration and reason, still running.
	if cur, err := s.kv.Get(ctx, key); err == nil {
		var old Sanction
		if json.Unmarshal(cur.Value(), &old) == nil && old.Active(now) && old.DurationS == req.DurationS && old.Reason == req.Reason {
			res.UntilMS = old.UntilMS
			return res, s.tellSanction(user, room, req.Action, who, old)
		}
	} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
		return res, errUnavailable
	}
	sn := Sanction{UntilMS: now.Add(time.Duration(req.DurationS) * time.Second).UnixMilli(), DurationS: req.DurationS,
		Reason: req.Reason, By: string(who.User), AtMS: now.UnixMilli()}
	b, _ := json.Marshal(sn)
	if _, err := s.kv.Put(ctx, key, b); err != nil {
		return res, errUnavailable
	}
	s.cfg.Cache.storeLocal(kind, room, user, RoomState{}, &sn)
	res.UntilMS, res.Changed = sn.UntilMS, true
	return res, s.tellSanction(user, room, req.Action, who, sn)
}

// tellSanction sends the user a notice on their own subject. A failure is
// logged, not returned: the decision is stored and applies anyway.
func (s *Service) tellSanction(user protocol.User, room protocol.Room, action string, who auth.Identity, sn Sanction) error {
	n := protocol.Message{ID: nuid.Next(), Type: protocol.TypeNotice, Action: action, Room: string(room),
		User: string(who.User), Name: who.Name, Role: who.Role, TS: time.Now().UnixMilli(), Text: sn.Reason, UntilMS: sn.UntilMS}
	if err := s.notifyUser(user, n); err != nil {
		s.log.Warn("cannot notify user", "user", user, "action", action, "err", err)
	}
	return nil
}

func (s *Service) lift(ctx context.Context, room protocol.Room, user protocol.User, kind Kind, who auth.Identity, now time.Time) (Result, error) {
	action := "un" + string(kind)
	res := Result{Room: string(room), Action: action, User: string(user)}
	key := sanctionKey(room, kind, user)
	cur, err := s.kv.Get(ctx, key)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return res, nil
	case err != nil:
		return res, errUnavailable
	}
	var old Sanction
	active := json.Unmarshal(cur.Value(), &old) == nil && old.Active(now)
	if err := s.kv.Delete(ctx, key); err != nil {
		return res, errUnavailable
	}
	s.cfg.Cache.storeLocal(kind, room, user, RoomState{}, nil)
	res.Changed = active
	if active {
		_ = s.tellSanction(user, room, action, who, Sanction{})
	}
	return res, nil
}

// updateRoom changes room's state with compare-and-set, retrying when
// another process changed it in between.
func (s *Service) updateRoom(ctx context.Context, room protocol.Room, res Result, change func(*RoomState)) (Result, error) {
	key := roomKey(room)
	for range 10 {
		var st RoomState
		var rev uint64
		cur, err := s.kv.Get(ctx, key)
		switch {
		case err == nil:
			rev = cur.Revision()
			if err := json.Unmarshal(cur.Value(), &st); err != nil {
				return res, protocol.Errorf(http.StatusInternalServerError, protocol.CodeInternal, "", "stored room state is unreadable")
			}
		case !errors.Is(err, jetstream.ErrKeyNotFound):
			return res, errUnavailable
		}
		next := st
		change(&next)
		res.State = &next
		if next == st {
			return res, nil
		}
		b, _ := json.Marshal(next)
		if rev == 0 {
			_, err = s.kv.Create(ctx, key, b)
		} else {
			_, err = s.kv.Update(ctx, key, b, rev)
		}
		if err == nil {
			s.cfg.Cache.storeLocal(KindRoom, room, "", next, nil)
			res.Changed = true
			return res, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) && !isWrongSequence(err) {
			return res, errUnavailable
		}
	}
	return res, errUnavailable
}

func isWrongSequence(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence
}

// ClaimAnchor makes user the anchor of room when it has none, and returns
// the room's anchor afterwards (user, or whoever held it already).
func (s *Service) ClaimAnchor(ctx context.Context, room protocol.Room, user protocol.User) (protocol.User, error) {
	var anchor protocol.User
	_, err := s.updateRoom(ctx, room, Result{}, func(st *RoomState) {
		if st.Anchor == "" {
			st.Anchor = string(user)
		}
		anchor = protocol.User(st.Anchor)
	})
	return anchor, err
}

// announce stores a reliable notice in the room, de-duplicated by idemKey.
func (s *Service) announce(ctx context.Context, room protocol.Room, who auth.Identity, action, text, idemKey string, now time.Time, res Result) (Result, error) {
	id := nuid.Next()
	if idemKey != "" {
		id = hashID("n", []byte(string(room)+"\x00"+string(who.User)+"\x00"+action+"\x00"+idemKey))
	}
	m := protocol.Message{ID: id, Type: protocol.TypeNotice, Action: action, Room: string(room),
		User: string(who.User), Name: who.Name, Role: who.Role, TS: now.UnixMilli(), Text: text}
	if s.cfg.Stamp != nil {
		s.cfg.Stamp(&m)
	}
	b, err := json.Marshal(m)
	if err != nil {
		return res, fmt.Errorf("cannot encode notice: %w", err)
	}
	ack, err := s.cfg.JS.PublishMsg(ctx, &nats.Msg{Subject: bus.StoreSubject(room), Data: b,
		Header: nats.Header{jetstream.MsgIDHeader: []string{id}}})
	if err != nil {
		return res, errUnavailable
	}
	res.ID, res.Seq = id, ack.Sequence
	if action == ActionAnnounce {
		res.Changed = !ack.Duplicate
	}
	return res, nil
}

// record stores an action that changed something on the room's moderation
// subject (in the reliable stream, for webhooks and audits; viewers never
// see it). Only actions that changed something are recorded, so a retried
// request is recorded once. A failure is logged: the decision itself is
// stored and applies.
func (s *Service) record(ctx context.Context, room protocol.Room, who auth.Identity, req Request, res Result) {
	now := time.Now()
	m := protocol.Message{Type: protocol.TypeNotice, Action: res.Action, Room: string(room), User: string(who.User),
		Name: who.Name, Role: who.Role, TS: now.UnixMilli(), Target: res.User, Text: req.Reason, UntilMS: res.UntilMS}
	m.ID = hashID("m", fmt.Appendf(nil, "%s\x00%s\x00%s\x00%d\x00%d", room, res.Action, res.User, res.UntilMS, now.UnixNano()))
	b, err := json.Marshal(m)
	if err != nil {
		return
	}
	if _, err := s.cfg.JS.PublishMsg(ctx, &nats.Msg{Subject: bus.ModerationSubject(room), Data: b,
		Header: nats.Header{jetstream.MsgIDHeader: []string{m.ID}}}); err != nil {
		s.log.Warn("cannot record moderation action", "room", room, "action", res.Action, "err", err)
	}
}

// idEncoding is lowercase base32 without padding.
var idEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// hashID derives a stored message's id from data: prefix and 24 base32
// characters (120 bits) of sha256(data). JetStream de-duplicates on it.
func hashID(prefix string, data []byte) string {
	sum := sha256.Sum256(data)
	return prefix + idEncoding.EncodeToString(sum[:15])
}

// notifyUser publishes n on user's own subject.
func (s *Service) notifyUser(user protocol.User, n protocol.Message) error {
	b, err := json.Marshal(n)
	if err != nil {
		return fmt.Errorf("cannot encode notice: %w", err)
	}
	if err := s.cfg.NC.Publish(bus.UserSubject(user), b); err != nil {
		return fmt.Errorf("cannot publish notice: %w", err)
	}
	return nil
}

// Run deletes expired sanctions every interval until ctx ends. Several
// processes may run it: deleting twice is harmless.
func (s *Service) Run(ctx context.Context, every time.Duration) {
	if every <= 0 {
		every = time.Minute
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			for _, k := range s.cfg.Cache.expired(now) {
				dctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
				_ = s.kv.Delete(dctx, k)
				cancel()
			}
		}
	}
}

func sortEntries(es []Entry) {
	slices.SortFunc(es, func(a, b Entry) int { return strings.Compare(a.User, b.User) })
}
