package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/liveroom/liveroom/internal/protocol"
)

// Server calls the server API (/v1/server/…) with an API key: what the
// platform's backend uses to send paid gifts after payment, announcements
// and notices, and to read room state. An API key is not a user token: keep
// it on the backend, never in an app. The zero value is not usable: BaseURL
// and APIKey are required. Safe for concurrent use as long as its fields are
// not modified.
type Server struct {
	// BaseURL is the liveroom HTTP base (serve, or an uplink).
	BaseURL string
	// APIKey is the key (lrk_…) the server lists in its key file.
	APIKey string
	// HTTP sends the requests; nil means a client with a 10 s timeout.
	HTTP *http.Client
	// Retries is how many times SendGift and Batch retry after network
	// errors, timeouts and 5xx answers (with the same order ids, so nothing
	// is stored twice); zero means DefaultGiftRetries, negative none.
	Retries int
	// MaxBackoff caps the wait between attempts; zero means
	// DefaultMaxBackoff.
	MaxBackoff time.Duration
}

// PaidGift is a gift the platform has been paid for.
type PaidGift struct {
	Room string `json:"-"`
	// User is who sent it; Name their display name (optional).
	User string `json:"user"`
	Name string `json:"name,omitempty"`
	Gift string `json:"gift"`
	// Count is 1 to MaxCount; zero is refused (never sent as a default).
	Count int `json:"count"`
	// OrderID is the platform's order id: the idempotency key, so that
	// retrying an order never shows its gift twice.
	OrderID string `json:"order_id"`
	// Amount (minor units, e.g. cents) and Currency (ISO 4217) travel with
	// the gift to viewers, the archive and webhooks; optional.
	Amount   int64  `json:"amount,omitempty"`
	Currency string `json:"currency,omitempty"`
}

// Announcement is a notice to one or many rooms (up to 1000).
type Announcement struct {
	Rooms []string `json:"rooms"`
	Text  string   `json:"text"`
	// From is the sender's display name shown to viewers; optional.
	From string `json:"from,omitempty"`
	// Key makes the announcement idempotent per room: a retry with the same
	// key is not stored twice. Optional.
	Key string `json:"key,omitempty"`
}

// Notice is a notice to one user's connections in a room. It is not
// stored: a user who is not connected never sees it.
type Notice struct {
	Room string `json:"-"`
	User string `json:"-"`
	Text string `json:"text"`
	From string `json:"from,omitempty"`
}

// ServerResult is the server's answer to one message.
type ServerResult struct {
	// Status is the HTTP status of this message (202 accepted).
	Status int    `json:"status"`
	Room   string `json:"room,omitempty"`
	ID     string `json:"id,omitempty"`
	Seq    uint64 `json:"seq,omitempty"`
	// Duplicate is true when the message had been stored before (a retried
	// order id or announcement key).
	Duplicate bool       `json:"duplicate,omitempty"`
	Error     *ErrorBody `json:"error,omitempty"`
}

// OK reports whether the message was accepted.
func (r ServerResult) OK() bool { return r.Status >= 200 && r.Status < 300 && r.Error == nil }

// BatchMessage is one message of a batch; build it with GiftMessage,
// AnnounceMessage or NoticeMessage.
type BatchMessage struct {
	body map[string]any
}

// GiftMessage is a paid gift as a batch message.
func GiftMessage(g PaidGift) BatchMessage {
	m := map[string]any{"op": "gift", "room": g.Room, "user": g.User, "gift": g.Gift, "count": g.Count, "order_id": g.OrderID}
	if g.Name != "" {
		m["name"] = g.Name
	}
	if g.Amount != 0 || g.Currency != "" {
		m["amount"], m["currency"] = g.Amount, g.Currency
	}
	return BatchMessage{m}
}

// AnnounceMessage is an announcement to one room as a batch message; key
// ("" for none) makes it idempotent.
func AnnounceMessage(room, text, from, key string) BatchMessage {
	m := map[string]any{"op": "announce", "room": room, "text": text}
	if from != "" {
		m["from"] = from
	}
	if key != "" {
		m["key"] = key
	}
	return BatchMessage{m}
}

// NoticeMessage is a notice to one user as a batch message.
func NoticeMessage(n Notice) BatchMessage {
	m := map[string]any{"op": "notice", "room": n.Room, "user": n.User, "text": n.Text}
	if n.From != "" {
		m["from"] = n.From
	}
	return BatchMessage{m}
}

// MaxBatch is the most messages of one Batch call.
const MaxBatch = 100

// Session is a live session of a room.
type Session struct {
	ID        string `json:"id"`
	Room      string `json:"room"`
	StartedMS int64  `json:"started_ms"`
	StoppedMS int64  `json:"stopped_ms,omitempty"`
	By        string `json:"by,omitempty"`
}

// RoomState is a room's state across the fleet.
type RoomState struct {
	Room string `json:"room"`
	// Online is the room's viewers on every gateway.
	Online int64 `json:"online"`
	Likes  int64 `json:"likes"`
	// Live is true while the room has a live session (Session).
	Live    bool     `json:"live"`
	Session *Session `json:"session,omitempty"`
}

// LiveRoom is a room with viewers or a live session; LiveRooms a list of
// them, most viewers first (GET /v1/server/rooms).
type (
	LiveRoom  = protocol.LiveRoom
	LiveRooms = protocol.LiveRooms
)

// ErrInvalidOrder is returned before anything is sent for a gift without an
// order id.
var ErrInvalidOrder = errors.New("liveroom client: a paid gift needs its order id")

// SendGift sends a paid gift on behalf of g.User. It retries after network
// errors, timeouts and 5xx answers with the same order id: the gift is shown
// once however many attempts it takes (a retry answers Duplicate true with
// the first attempt's id and seq). 4xx answers are *APIError.
func (s *Server) SendGift(ctx context.Context, g PaidGift) (ServerResult, error) {
	if err := checkCount(g.Count); err != nil {
		return ServerResult{}, err
	}
	if g.OrderID == "" {
		return ServerResult{}, ErrInvalidOrder
	}
	u, err := endpointURL(s.BaseURL, nil, "v1", "server", "rooms", g.Room, "gifts")
	if err != nil {
		return ServerResult{}, err
	}
	var res ServerResult
	return res, s.call(ctx, http.MethodPost, u, g, &res, s.retries())
}

// Announce stores a notice in every room of a (one call, up to 1000 rooms)
// and returns a result per room, in order. A room that failed has an Error;
// the call itself fails only when no result came back. Not retried unless
// a.Key is set.
func (s *Server) Announce(ctx context.Context, a Announcement) ([]ServerResult, error) {
	u, err := endpointURL(s.BaseURL, nil, "v1", "server", "announcements")
	if err != nil {
		return nil, err
	}
	var res struct {
		Results []ServerResult `json:"results"`
	}
	retries := -1
	if a.Key != "" {
		retries = s.retries()
	}
	return res.Results, s.call(ctx, http.MethodPost, u, a, &res, retries)
}

// Notify sends a notice to one user's connections in a room (not stored,
// not retried).
func (s *Server) Notify(ctx context.Context, n Notice) (ServerResult, error) {
	u, err := endpointURL(s.BaseURL, nil, "v1", "server", "rooms", n.Room, "users", n.User, "notices")
	if err != nil {
		return ServerResult{}, err
	}
	var res ServerResult
	return res, s.call(ctx, http.MethodPost, u, n, &res, -1)
}

// Batch sends up to MaxBatch messages in one call and returns a result per
// message, in order; one message failing does not fail the others. It is
// retried like SendGift only when every message is idempotent (gifts, and
// announcements with a key): notices could be shown twice.
func (s *Server) Batch(ctx context.Context, msgs []BatchMessage) ([]ServerResult, error) {
	if len(msgs) == 0 || len(msgs) > MaxBatch {
		return nil, fmt.Errorf("liveroom client: a batch holds 1 to %d messages, not %d", MaxBatch, len(msgs))
	}
	u, err := endpointURL(s.BaseURL, nil, "v1", "server", "batch")
	if err != nil {
		return nil, err
	}
	body := struct {
		Messages []map[string]any `json:"messages"`
	}{}
	retries := s.retries()
	for _, m := range msgs {
		if m.body == nil {
			return nil, errors.New("liveroom client: an empty batch message")
		}
		if op := m.body["op"]; op == "notice" || (op == "announce" && m.body["key"] == nil) {
			retries = -1
		}
		body.Messages = append(body.Messages, m.body)
	}
	var res struct {
		Results []ServerResult `json:"results"`
	}
	return res.Results, s.call(ctx, http.MethodPost, u, body, &res, retries)
}

// Room reads a room's online count (every gateway), like total and live
// session.
func (s *Server) Room(ctx context.Context, room string) (RoomState, error) {
	u, err := endpointURL(s.BaseURL, nil, "v1", "server", "rooms", room)
	if err != nil {
		return RoomState{}, err
	}
	var st RoomState
	return st, s.call(ctx, http.MethodGet, u, nil, &st, -1)
}

// LiveRooms lists the rooms with viewers or a live session, most viewers
// first, at most limit (1-1000; 0 means the server's default, 100).
func (s *Server) LiveRooms(ctx context.Context, limit int) (LiveRooms, error) {
	var q url.Values
	if limit != 0 {
		q = url.Values{"limit": {strconv.Itoa(limit)}}
	}
	u, err := endpointURL(s.BaseURL, q, "v1", "server", "rooms")
	if err != nil {
		return LiveRooms{}, err
	}
	var lr LiveRooms
	return lr, s.call(ctx, http.MethodGet, u, nil, &lr, -1)
}

func (s *Server) retries() int {
	if s.Retries == 0 {
		return DefaultGiftRetries
	}
	return max(s.Retries, -1)
}

// call sends one request (body nil: none) and decodes a 2xx answer into out;
// 207 (some messages of a batch or announcement failed) is a success whose
// results say which. It retries up to retries times as Sender.Gift does.
func (s *Server) call(ctx context.Context, method, u string, body, out any, retries int) error {
	var payload []byte
	if body != nil {
		var err error
		if payload, err = json.Marshal(body); err != nil {
			return fmt.Errorf("cannot encode request: %w", err)
		}
	}
	err := withRetries(ctx, retries, s.MaxBackoff, func() (time.Duration, error) {
		return s.attempt(ctx, method, u, payload, out)
	})
	if err != nil && ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
		err = fmt.Errorf("cannot call the server API: %w (last error: %w)", ctx.Err(), err)
	}
	return err
}

func (s *Server) attempt(ctx context.Context, method, u string, payload []byte, out any) (time.Duration, error) {
	var rd io.Reader
	if payload != nil {
		rd = bytes.NewReader(payload)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return 0, fmt.Errorf("cannot build request: %w", err)
	}
	if payload != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", userAgent)
	req.Header.Set("Authorization", "Bearer "+s.APIKey)
	hc := s.HTTP
	if hc == nil {
		hc = defaultHTTP
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, fmt.Errorf("cannot call the server API: %w", err)
	}
	defer drainClose(resp.Body)
	if resp.StatusCode/100 != 2 {
		ae := readAPIError(resp)
		return ae.RetryAfter, ae
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxServerAnswer)).Decode(out); err != nil {
		return 0, &decodeError{status: resp.StatusCode, err: err}
	}
	return 0, nil
}

// maxServerAnswer bounds a server API answer: 1000 results or rooms.
const maxServerAnswer = 4 << 20
