package protocol

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
)

// Stable error codes. Clients branch on these; never change their meaning.
const (
	CodeBadRequest       = "bad_request"
	CodeInvalidJSON      = "invalid_json"
	CodeInvalidRoom      = "invalid_room"
	CodeInvalidField     = "invalid_field"
	CodeUnknownType      = "unknown_type"
	CodeUnknownGift      = "unknown_gift"
	CodeMissingIdemKey   = "missing_idempotency_key"
	CodeTooLarge         = "body_too_large"
	CodeUnauthorized     = "unauthorized"
	CodeForbidden        = "forbidden"
	CodeMuted            = "muted"
	CodeBanned           = "banned"
	CodeRoomClosed       = "room_closed"
	CodeSlowMode         = "slow_mode"
	CodeMutedAll         = "room_muted"
	CodeBlockedWord      = "blocked_word"
	CodeKicked           = "kicked"
	CodeUserRateLimited  = "user_rate_limited"
	CodeRoomRateLimited  = "room_rate_limited"
	CodeUnavailable      = "unavailable"
	CodeDraining         = "draining"
	CodeNotFound         = "not_found"
	CodeMethodNotAllowed = "method_not_allowed"
	CodeInternal         = "internal"
	CodeSlowConsumer     = "slow_consumer"
	CodeFrameTooLarge    = "frame_too_large"
	CodeProtocol         = "protocol_error"
	CodeDevOnly          = "dev_mode_only"
	// CodeDevLocalOnly: a dev token asked for from another machine (403).
	CodeDevLocalOnly = "dev_token_local_only"
	// CodeNotLive: stopping the live session of a room that has none (409).
	CodeNotLive = "not_live"
	// CodeTooManyAnnouncements: announcing a show while the most there may
	// be are scheduled (409).
	CodeTooManyAnnouncements = "too_many_announcements"
	// Gateway edge (docs/SECURITY.md).
	CodeOriginNotAllowed     = "origin_not_allowed"
	CodeTooManyConnections   = "too_many_connections"
	CodeHandshakeRateLimited = "handshake_rate_limited"
	// CodeTooManyUserConnections: the token's user already holds the most
	// connections one user may hold on this gateway (429).
	CodeTooManyUserConnections = "too_many_user_connections"
	// CodeDuplicateOrigin: a WebSocket handshake with more than one Origin
	// header (400).
	CodeDuplicateOrigin = "duplicate_origin"
	// CodeInternalOnly: an operator route (metrics, fleet views) asked for on
	// a public address of a process that cannot check an admin token (403).
	CodeInternalOnly = "internal_only"
	// Server API credentials (docs/SECURITY.md), all 401: no API key
	// given, a key this server does not know, a key that was revoked, a
	// user's token (JWT) on a server route, and an API key on a user route.
	CodeAPIKeyRequired    = "api_key_required"
	CodeAPIKeyInvalid     = "api_key_invalid"
	CodeAPIKeyRevoked     = "api_key_revoked"
	CodeTokenNotAccepted  = "token_not_accepted"
	CodeAPIKeyNotAccepted = "api_key_not_accepted"
	// CodeClientGiftsOff: a gift sent with a user's token to a server that
	// takes paid gifts only from the platform's backend (403).
	CodeClientGiftsOff = "client_gifts_disabled"
	// CodeOrderReused: a paid gift whose order id was already used for a
	// gift to another room (409).
	CodeOrderReused = "order_id_reused"
)

// ErrorBody is the object under "error" in every error response.
type ErrorBody struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Field   string `json:"field,omitempty"`
	// RetryAfterMS is set on 429 and 503 answers (also sent as Retry-After).
	RetryAfterMS int64 `json:"retry_after_ms,omitempty"`
	// UntilMS is when a mute or ban ends (Unix ms), on muted and banned.
	UntilMS int64 `json:"until_ms,omitempty"`
}

// Error is a client-facing error: an HTTP status plus a stable code. Handlers
// return it and WriteError renders it; anything else becomes a 500 "internal".
type Error struct {
	Status int
	Body   ErrorBody
}

// Error implements error.
func (e *Error) Error() string {
	if e.Body.Field != "" {
		return e.Body.Code + " (" + e.Body.Field + "): " + e.Body.Message
	}
	return e.Body.Code + ": " + e.Body.Message
}

// Errorf builds an Error.
func Errorf(status int, code, field, msg string) *Error {
	return &Error{Status: status, Body: ErrorBody{Code: code, Message: msg, Field: field}}
}

// WithUntil sets the end of a mute or ban (Unix ms) and returns e.
func (e *Error) WithUntil(ms int64) *Error {
	e.Body.UntilMS = ms
	return e
}

// WithRetry sets the retry hint in milliseconds and returns e.
func (e *Error) WithRetry(ms int64) *Error {
	e.Body.RetryAfterMS = ms
	return e
}

// WriteError writes err as a JSON error answer. A *Error keeps its status and
// code; any other error is reported as 500 "internal" without its text, which
// may hold details the client must not see.
func WriteError(w http.ResponseWriter, err error) {
	var pe *Error
	if !errors.As(err, &pe) {
		pe = Errorf(http.StatusInternalServerError, CodeInternal, "", "internal error")
	}
	if pe.Body.RetryAfterMS > 0 {
		secs := (pe.Body.RetryAfterMS + 999) / 1000
		w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
	}
	WriteJSON(w, pe.Status, struct {
		Error ErrorBody `json:"error"`
	}{pe.Body})
}

// WriteJSON writes v as a JSON answer with status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b = []byte(`{"error":{"code":"internal","message":"cannot encode answer"}}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// Endpoint is one route of an HTTP API, as a router lists it (the
// authorization matrix test walks them): a path pattern whose "{name}"
// segments match any one segment, and the methods served ("*": the handler
// answers every method itself).
type Endpoint struct {
	Pattern string
	Methods []string
}

// MatchEndpoint reports whether path matches pattern segment by segment,
// "{name}" matching any one segment (empty included, for the handler to
// refuse with its own error).
func MatchEndpoint(pattern, path string) bool {
	for {
		ps, prest, pmore := strings.Cut(pattern, "/")
		s, rest, more := strings.Cut(path, "/")
		if pmore != more {
			return false
		}
		if ps != s && !(strings.HasPrefix(ps, "{") && strings.HasSuffix(ps, "}")) {
			return false
		}
		if !more {
			return true
		}
		pattern, path = prest, rest
	}
}
