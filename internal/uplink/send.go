package uplink

import (
	"context"
	"crypto/sha256"
	"encoding/base32"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/liveroom/liveroom/internal/auth"
	"github.com/liveroom/liveroom/internal/bus"
	"github.com/liveroom/liveroom/internal/protocol"
)

// SendPath is the route of the send API; {room} is the room id.
const SendPath = "/v1/rooms/{room}/messages"

// unavailableRetryMS is the retry hint of a 503: long enough for a NATS
// reconnect or a JetStream leader election, short enough for a gift to reach
// the screen within the 10 s promise on the second try.
const unavailableRetryMS = 1000

// Handler returns the HTTP handler of the send API:
// "POST /v1/rooms/{room}/messages"; other methods on that path answer 405.
// It routes on the full path: mount it in the app's mux on SendPath with no
// method (so that the 405 answers are JSON too), or at the root.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+SendPath, s.serveSend)
	mux.HandleFunc(SendPath, s.serveMethodNotAllowed)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// ServeMux answers a path it would clean (/v1/rooms//messages,
		// /v1/rooms/../messages) with a 301 elsewhere, which a client would
		// follow as a GET. Such a path only ever holds a bad room id: say so.
		if mid, ok := strings.CutPrefix(r.URL.Path, "/v1/rooms/"); ok && strings.HasSuffix(mid, "/messages") &&
			path.Clean(r.URL.Path) != r.URL.Path {
			s.fail(w, r, badRequest(protocol.CodeInvalidRoom, "room", protocol.ErrInvalidRoom.Error()))
			return
		}
		mux.ServeHTTP(w, r)
	})
}

func (s *Server) serveMethodNotAllowed(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Allow", http.MethodPost)
	s.fail(w, r, protocol.Errorf(http.StatusMethodNotAllowed, protocol.CodeMethodNotAllowed, "", "use POST to send a message"))
}

// serveSend checks, in this order, the room id (before anything can reach a
// NATS subject), the token, the body size and the body, then hands the
// request to the handler of its type.
func (s *Server) serveSend(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	room, err := protocol.ParseRoom(r.PathValue("room"))
	if err != nil {
		s.fail(w, r, badRequest(protocol.CodeInvalidRoom, "room", err.Error()))
		return
	}
	id, err := s.cfg.Verifier.FromRequest(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(bodyReadTimeout)) // edge.go
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			s.fail(w, r, protocol.Errorf(http.StatusRequestEntityTooLarge, protocol.CodeTooLarge, "",
				"body is larger than the limit"))
			return
		}
		s.fail(w, r, badRequest(protocol.CodeBadRequest, "", "cannot read body"))
		return
	}
	req, perr := decodeSend(body, s.gifts)
	if perr != nil {
		s.fail(w, r, perr)
		return
	}
	if perr := s.moderate(time.Now(), room, id, &req); perr != nil {
		s.fail(w, r, perr)
		return
	}
	defer s.observe(req.Type, start)
	switch req.Type {
	case protocol.TypeDanmaku:
		s.sendDanmaku(w, r, room, id, req)
	case protocol.TypeGift:
		s.sendGift(w, r, room, id, req)
	case protocol.TypeLike:
		s.sendLike(w, r, room, id, req)
	}
}

type idAnswer struct {
	ID string `json:"id"`
}

type giftAnswer struct {
	ID  string `json:"id"`
	Seq uint64 `json:"seq"`
}

func (s *Server) sendDanmaku(w http.ResponseWriter, r *http.Request, room protocol.Room, id auth.Identity, req sendRequest) {
	now := time.Now()
	if perr := s.admitDanmaku(now, id.User, room); perr != nil {
		s.fail(w, r, perr)
		return
	}
	m := protocol.Message{
		ID:   nuid.Next(),
		Type: protocol.TypeDanmaku,
		Room: string(room),
		User: string(id.User),
		Name: id.Name,
		Role: id.Role,
		TS:   now.UnixMilli(),
		Text: req.Text,
	}
	s.stampSession(&m)
	msg := &nats.Msg{Subject: bus.LiveSubject(room), Data: protocol.Encode(m)}
	if id.IsStaff() {
		// NATS headers are case-sensitive: set the key exactly as declared.
		msg.Header = nats.Header{bus.HeaderPrio: []string{"1"}}
	}
	if err := s.cfg.NC.PublishMsg(msg); err != nil {
		s.log.Warn("cannot publish danmaku", "room", room, "err", err)
		s.fail(w, r, unavailable())
		return
	}
	s.stats.danmaku.Add(1)
	protocol.WriteJSON(w, http.StatusAccepted, idAnswer{ID: m.ID})
}

// sendGift stores the gift in JetStream and answers only after the ack. The
// message id is derived from (room, user, Idempotency-Key), so a retry within
// the stream's dedupe window (bus.StreamConfig.DedupeWindow) is recognised by
// JetStream, which answers with the original sequence: the client gets the
// same id and seq and the gift is stored once.
func (s *Server) sendGift(w http.ResponseWriter, r *http.Request, room protocol.Room, id auth.Identity, req sendRequest) {
	if !s.cfg.ClientGifts {
		s.fail(w, r, protocol.Errorf(http.StatusForbidden, protocol.CodeClientGiftsOff, "",
			"gifts are paid for: the platform's backend sends them after payment (POST /v1/server/rooms/{room}/gifts); this server takes none from users' tokens (--client-gifts allows them)"))
		return
	}
	key, perr := checkIdempotencyKey(r.Header.Values(HeaderIdempotencyKey))
	if perr != nil {
		s.fail(w, r, perr)
		return
	}
	if perr := admitUser(s.giftUsers, time.Now(), id.User, 1, "gifts"); perr != nil {
		s.fail(w, r, perr)
		return
	}
	m := protocol.Message{
		ID:    giftID(room, id.User, key),
		Type:  protocol.TypeGift,
		Room:  string(room),
		User:  string(id.User),
		Name:  id.Name,
		Role:  id.Role,
		TS:    time.Now().UnixMilli(),
		Gift:  req.Gift,
		Count: req.Count,
	}
	s.stampSession(&m)
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.PublishTimeout)
	defer cancel()
	ack, err := s.storeGift(ctx, bus.StoreSubject(room), m.ID, protocol.Encode(m))
	if err != nil {
		// Not stored, or not known to be: the client retries with the same
		// key, and the dedupe makes that safe either way.
		s.log.Warn("cannot store gift", "room", room, "user", id.User, "id", m.ID, "err", err)
		s.fail(w, r, unavailable())
		return
	}
	if ack.Duplicate {
		s.stats.giftDuplicates.Add(1)
	}
	s.stats.gifts.Add(1)
	protocol.WriteJSON(w, http.StatusAccepted, giftAnswer{ID: m.ID, Seq: ack.Sequence})
}

func (s *Server) sendLike(w http.ResponseWriter, r *http.Request, room protocol.Room, id auth.Identity, req sendRequest) {
	if perr := admitUser(s.likeUsers, time.Now(), id.User, int(req.Count), "likes"); perr != nil {
		s.fail(w, r, perr)
		return
	}
	if !s.likes.add(room, req.Count) {
		s.log.Warn("too many rooms with pending likes; rejecting", "room", room)
		s.fail(w, r, unavailable())
		return
	}
	s.stats.likeRequests.Add(1)
	s.stats.likes.Add(uint64(req.Count))
	protocol.WriteJSON(w, http.StatusAccepted, idAnswer{ID: nuid.Next()})
}

// storeGift publishes a gift to the reliable stream and waits for the ack.
// A NATS node loss shows up as a timeout or "no responders" while the client
// reconnects or the stream elects a new leader, so it retries, always with
// the same message id (the stream's dedupe makes a retry of a publish that
// was in fact stored harmless), until ctx ends. Each attempt gets at most a
// third of the remaining time, so at least two attempts fit.
func (s *Server) storeGift(ctx context.Context, subject, id string, data []byte) (*jetstream.PubAck, error) {
	wait := 50 * time.Millisecond
	for attempt := 1; ; attempt++ {
		actx, cancel := ctx, context.CancelFunc(func() {})
		if dl, ok := ctx.Deadline(); ok {
			actx, cancel = context.WithTimeout(ctx, max(time.Until(dl)/3, 250*time.Millisecond))
		}
		ack, err := s.cfg.JS.PublishMsg(actx, &nats.Msg{Subject: subject, Data: data},
			jetstream.WithMsgID(id), jetstream.WithExpectStream(bus.ReliableStream))
		cancel()
		if err == nil {
			if attempt > 1 {
				s.log.Info("gift stored after retry", "id", id, "attempts", attempt)
			}
			return ack, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("cannot store gift after %d attempts: %w", attempt, err)
		case <-time.After(wait):
		}
		wait = min(2*wait, time.Second)
	}
}

// giftIDEncoding is lowercase base32 without padding: ids stay readable and
// case-insensitive.
var giftIDEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// giftID is "g" + 24 base32 characters (120 bits) of
// sha256(room|user|key). Room and user ids cannot contain '|', so distinct
// triples never share an input. At 25 characters it cannot collide with a
// 22-character nuid.
func giftID(room protocol.Room, user protocol.User, key string) string {
	h := sha256.Sum256([]byte(string(room) + "|" + string(user) + "|" + key))
	return "g" + giftIDEncoding.EncodeToString(h[:15])
}

func unavailable() *protocol.Error {
	return protocol.Errorf(http.StatusServiceUnavailable, protocol.CodeUnavailable, "",
		"the message store is unavailable; retry (gifts with the same Idempotency-Key)").WithRetry(unavailableRetryMS)
}

// fail writes err as the JSON error answer and counts it. Tokens are never
// logged; rejections are logged at debug level only, they are the client's
// fault and can be triggered at will.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	var pe *protocol.Error
	code := protocol.CodeInternal
	if errors.As(err, &pe) {
		code = pe.Body.Code
	}
	s.stats.reject(code)
	if code == protocol.CodeInternal {
		s.log.Error("send failed", "path", r.URL.Path, "err", err)
	} else {
		s.log.Debug("send rejected", "path", r.URL.Path, "code", code)
	}
	protocol.WriteError(w, err)
}
