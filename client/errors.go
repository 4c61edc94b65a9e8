package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/liveroom/liveroom/internal/protocol"
)

// ErrClosed is returned by operations on a Conn or GatewayConn after Close,
// and carried by the final EventClosed of a Conn closed by its owner.
var ErrClosed = errors.New("liveroom client: connection closed")

// ErrSilent is wrapped by the error of a connection that heard nothing (no
// frame, no heartbeat, no ping) for its read timeout: a gateway that hangs.
// The Conn then resumes at once through dispatch, on another gateway.
var ErrSilent = errors.New("gateway silent")

// ErrNoGateway is returned when dispatch answers with no gateway to try.
var ErrNoGateway = errors.New("liveroom client: dispatch returned no gateway")

// maxErrorBody bounds how much of an error answer is read.
const maxErrorBody = 64 << 10

// APIError is a non-2xx HTTP answer from a liveroom endpoint: dispatch, the
// uplink, the dev token endpoint, or a gateway refusing the WebSocket
// upgrade. Match it with errors.As.
type APIError struct {
	// Status is the HTTP status code.
	Status int
	// Body is the decoded JSON error. When the answer was not a liveroom
	// JSON error (a proxy's HTML page, say), Code is empty and Message holds
	// the start of the body.
	Body ErrorBody
	// RetryAfter is the server's retry hint (retry_after_ms in the body,
	// else the Retry-After header); zero when absent.
	RetryAfter time.Duration
}

// Error implements error.
func (e *APIError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "liveroom: %d", e.Status)
	if e.Body.Code != "" {
		b.WriteString(" " + e.Body.Code)
	}
	if e.Body.Field != "" {
		b.WriteString(" (" + e.Body.Field + ")")
	}
	if e.Body.Message != "" {
		b.WriteString(": " + e.Body.Message)
	}
	if e.RetryAfter > 0 {
		fmt.Fprintf(&b, " (retry after %v)", e.RetryAfter)
	}
	return b.String()
}

// Temporary reports whether the same request may succeed later: 408, 425,
// 429 and 5xx answers.
func (e *APIError) Temporary() bool {
	switch {
	case e.Status == http.StatusRequestTimeout, e.Status == http.StatusTooEarly,
		e.Status == http.StatusTooManyRequests, e.Status >= 500:
		return true
	}
	return false
}

// FrameError is an error frame a gateway sent before closing the connection.
type FrameError struct {
	Body ErrorBody
}

// Error implements error.
func (e *FrameError) Error() string {
	return "liveroom: gateway closed the connection: " + e.Body.Code + ": " + e.Body.Message
}

// fatalCodes are error codes that reconnecting cannot fix: the caller must
// change something (a fresh token, another room) first.
var fatalCodes = map[string]bool{
	protocol.CodeUnauthorized:     true,
	protocol.CodeForbidden:        true,
	protocol.CodeBanned:           true,
	protocol.CodeInvalidRoom:      true,
	protocol.CodeBadRequest:       true,
	protocol.CodeInvalidField:     true,
	protocol.CodeNotFound:         true,
	protocol.CodeMethodNotAllowed: true,
}

// IsFatal reports whether err means that reconnecting with the same
// configuration is pointless: the token was rejected, the user is banned, the
// room id is invalid. A Conn stops with such an error instead of retrying.
func IsFatal(err error) bool {
	var fe *FrameError
	if errors.As(err, &fe) {
		return fatalCodes[fe.Body.Code]
	}
	var ae *APIError
	if errors.As(err, &ae) {
		if fatalCodes[ae.Body.Code] {
			return true
		}
		switch ae.Status {
		case http.StatusBadRequest, http.StatusUnauthorized, http.StatusForbidden, http.StatusNotFound:
			return true
		}
	}
	return false
}

// readAPIError builds an *APIError from a non-2xx answer and consumes
// (a bounded part of) its body.
func readAPIError(resp *http.Response) *APIError {
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	return newAPIError(resp.StatusCode, resp.Header, raw)
}

func newAPIError(status int, h http.Header, raw []byte) *APIError {
	e := &APIError{Status: status}
	var env struct {
		Error *ErrorBody `json:"error"`
	}
	if err := json.Unmarshal(raw, &env); err == nil && env.Error != nil && env.Error.Code != "" {
		e.Body = *env.Error
	} else {
		msg := strings.TrimSpace(string(raw))
		if len(msg) > 200 {
			msg = msg[:200] + "…"
		}
		if msg == "" {
			msg = http.StatusText(status)
		}
		e.Body.Message = msg
	}
	// The body's milliseconds are preferred: the header is rounded up to
	// whole seconds.
	if ms := e.Body.RetryAfterMS; ms > 0 {
		e.RetryAfter = time.Duration(min(ms, int64(24*time.Hour/time.Millisecond))) * time.Millisecond
	} else {
		e.RetryAfter = parseRetryAfter(h.Get("Retry-After"), time.Now())
	}
	return e
}

// parseRetryAfter reads a Retry-After value: delay-seconds or an HTTP date.
// It returns zero for anything absent, malformed or in the past.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs <= 0 {
			return 0
		}
		const maxSecs = int64(24 * time.Hour / time.Second)
		return time.Duration(min(secs, maxSecs)) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return d
		}
	}
	return 0
}
