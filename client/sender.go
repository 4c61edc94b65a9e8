package client

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/liveroom/liveroom/internal/protocol"
)

// Defaults of Sender.
const (
	// DefaultGiftRetries is how many times a gift is retried after its first
	// attempt.
	DefaultGiftRetries = 5
	// DefaultMaxBackoff caps the wait between two attempts of a gift.
	DefaultMaxBackoff = 10 * time.Second
)

// giftBackoff is the wait between gift attempts before MaxBackoff applies.
var giftBackoff = ReconnectPolicy{BaseMS: 200, Jitter: 0.5}

// userAgent identifies this client to the server.
const userAgent = "liveroom-go-client/1"

// Sender posts messages to rooms through the uplink. The zero value is not
// usable: BaseURL and Token are required. A Sender is safe for concurrent use
// as long as its fields are not modified.
type Sender struct {
	// BaseURL is the liveroom HTTP base, e.g. http://127.0.0.1:8080.
	BaseURL string
	// Token is the sender's JWT.
	Token string
	// HTTP sends the requests; nil means a client with a 10 s timeout. Its
	// timeout bounds one attempt, not the retries of a gift.
	HTTP *http.Client
	// Retries is how many times a gift is retried after its first attempt;
	// zero means DefaultGiftRetries, negative means none. Danmaku and likes
	// are never retried: they are not idempotent, and a lost comment or like
	// is acceptable where a doubled one is not.
	Retries int
	// MaxBackoff caps the wait between gift attempts; zero means
	// DefaultMaxBackoff. A Retry-After longer than that ends the retries and
	// is returned in the *APIError for the caller to decide.
	MaxBackoff time.Duration
}

// SendResult is the uplink's acceptance of a message.
type SendResult struct {
	// ID is the message id assigned by the server.
	ID string
	// Seq is the reliable sequence of a gift; zero for other types.
	Seq uint64
	// Status is the HTTP status of the last attempt (202 on success).
	Status int
	// Attempts is how many requests were made.
	Attempts int
	// Key is the Idempotency-Key a gift was sent with.
	Key string
}

type sendBody struct {
	Type  string `json:"type"`
	Text  string `json:"text,omitempty"`
	Gift  string `json:"gift,omitempty"`
	Count int    `json:"count,omitempty"`
}

// Danmaku posts a bullet comment to room. It is sent once, never retried.
// Non-2xx answers are returned as *APIError.
func (s *Sender) Danmaku(ctx context.Context, room, text string) (SendResult, error) {
	return s.send(ctx, room, sendBody{Type: protocol.TypeDanmaku, Text: text}, "", 0)
}

// MaxCount is the largest gift or like count of one send; counts are 1 to
// MaxCount.
const MaxCount = protocol.MaxCount

// ErrInvalidCount is returned, before anything is sent, for a gift or like
// count outside 1 to MaxCount. A zero is never sent as "the default": the
// server would read a missing count as one, and a gift is paid.
var ErrInvalidCount = errors.New("liveroom client: a count must be 1 to " + strconv.Itoa(MaxCount))

func checkCount(count int) error {
	if count < 1 || count > MaxCount {
		return fmt.Errorf("%w, not %d", ErrInvalidCount, count)
	}
	return nil
}

// Like posts count likes (1 to MaxCount) to room. It is sent once, never
// retried.
func (s *Sender) Like(ctx context.Context, room string, count int) (SendResult, error) {
	if err := checkCount(count); err != nil {
		return SendResult{}, err
	}
	return s.send(ctx, room, sendBody{Type: protocol.TypeLike, Count: count}, "", 0)
}

// Gift posts count (1 to MaxCount) gifts named gift to room with idempotency key idemKey
// ("" means a random one, reported in SendResult.Key). It retries with the
// same key after network errors, timeouts and 5xx answers, waiting with a
// bounded exponential backoff or the server's Retry-After, so the gift is
// stored once however many attempts it takes. 4xx answers are never retried.
func (s *Sender) Gift(ctx context.Context, room, gift string, count int, idemKey string) (SendResult, error) {
	if err := checkCount(count); err != nil {
		return SendResult{}, err
	}
	if idemKey == "" {
		idemKey = NewIdempotencyKey()
	}
	retries := s.Retries
	if retries == 0 {
		retries = DefaultGiftRetries
	}
	retries = max(retries, 0)
	return s.send(ctx, room, sendBody{Type: protocol.TypeGift, Gift: gift, Count: count}, idemKey, retries)
}

// NewIdempotencyKey returns a random key for Sender.Gift.
func NewIdempotencyKey() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails on supported platforms
	return hex.EncodeToString(b[:])
}

func (s *Sender) send(ctx context.Context, room string, body sendBody, idemKey string, retries int) (SendResult, error) {
	res := SendResult{Key: idemKey}
	u, err := endpointURL(s.BaseURL, nil, "v1", "rooms", room, "messages")
	if err != nil {
		return res, err
	}
	payload, err := json.Marshal(body)
	if err != nil {
		return res, fmt.Errorf("cannot encode message: %w", err)
	}
	err = withRetries(ctx, retries, s.MaxBackoff, func() (time.Duration, error) {
		res.Attempts++
		status, retryAfter, err := s.attempt(ctx, u, payload, idemKey, &res)
		res.Status = status
		return retryAfter, err
	})
	if err != nil && ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
		err = fmt.Errorf("cannot send %s: %w (last error: %w)", body.Type, ctx.Err(), err)
	}
	return res, err
}

// withRetries calls try until it succeeds, fails for good or has been
// retried retries times: network errors, timeouts and 5xx answers are
// retried after a bounded exponential backoff (at most maxWait; zero means
// DefaultMaxBackoff) or the server's Retry-After, when that is not longer
// than maxWait. 4xx answers and accepted answers that did not decode are
// never retried. Only idempotent requests may be retried.
func withRetries(ctx context.Context, retries int, maxWait time.Duration, try func() (time.Duration, error)) error {
	if maxWait <= 0 {
		maxWait = DefaultMaxBackoff
	}
	policy := giftBackoff
	policy.MaxMS = max(maxWait.Milliseconds(), 1)
	for attempt := 0; ; attempt++ {
		retryAfter, err := try()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return err
		}
		var ae *APIError
		var de *decodeError
		retryable := !errors.As(err, &de) && (!errors.As(err, &ae) || ae.Status >= 500)
		if !retryable || attempt >= retries {
			return err
		}
		wait := policy.Delay(attempt, nil)
		if retryAfter > 0 {
			if retryAfter > maxWait {
				return err
			}
			wait = retryAfter
		}
		if !sleep(ctx, wait) {
			return err
		}
	}
}

// attempt makes one request. It fills res on success and returns the status
// (0 without an answer) and the server's retry hint.
func (s *Sender) attempt(ctx context.Context, u string, payload []byte, idemKey string, res *SendResult) (int, time.Duration, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(payload))
	if err != nil {
		return 0, 0, fmt.Errorf("cannot build request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", userAgent)
	if s.Token != "" {
		req.Header.Set("Authorization", "Bearer "+s.Token)
	}
	if idemKey != "" {
		req.Header.Set("Idempotency-Key", idemKey)
	}
	hc := s.HTTP
	if hc == nil {
		hc = defaultHTTP
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, 0, fmt.Errorf("cannot post message: %w", err)
	}
	defer drainClose(resp.Body)
	if resp.StatusCode/100 != 2 {
		ae := readAPIError(resp)
		return resp.StatusCode, ae.RetryAfter, ae
	}
	var ok struct {
		ID  string `json:"id"`
		Seq uint64 `json:"seq"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxAnswer)).Decode(&ok); err != nil {
		// Accepted all the same: retrying could only duplicate.
		return resp.StatusCode, 0, &decodeError{status: resp.StatusCode, err: err}
	}
	res.ID, res.Seq = ok.ID, ok.Seq
	return resp.StatusCode, 0, nil
}

// decodeError is an accepted answer whose body did not decode. It is not
// retried.
type decodeError struct {
	status int
	err    error
}

func (e *decodeError) Error() string {
	return fmt.Sprintf("message accepted (%d) but the answer did not decode: %v", e.status, e.err)
}

func (e *decodeError) Unwrap() error { return e.err }

// DevToken asks a dev-mode server (one started without a JWT secret) for a
// token: POST {baseURL}/v1/dev/token. role "" means viewer. A `liveroom
// serve` with a secret answers 404 with code dev_mode_only (*APIError); a
// single-role server answers 404 not_found. rooms, for an anchor, are the
// rooms the token owns (its rooms claim).
func DevToken(ctx context.Context, baseURL, user, name, role string, rooms ...string) (string, error) {
	u, err := endpointURL(baseURL, nil, "v1", "dev", "token")
	if err != nil {
		return "", err
	}
	if role == "" {
		role = protocol.RoleViewer
	}
	payload, err := json.Marshal(struct {
		User  string   `json:"user"`
		Name  string   `json:"name,omitempty"`
		Role  string   `json:"role"`
		Rooms []string `json:"rooms,omitempty"`
	}{user, name, role, rooms})
	if err != nil {
		return "", fmt.Errorf("cannot encode token request: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(payload))
	if err != nil {
		return "", fmt.Errorf("cannot build token request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", userAgent)
	resp, err := defaultHTTP.Do(req)
	if err != nil {
		return "", fmt.Errorf("cannot get dev token: %w", err)
	}
	defer drainClose(resp.Body)
	if resp.StatusCode/100 != 2 {
		return "", readAPIError(resp)
	}
	var ok struct {
		Token string `json:"token"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxAnswer)).Decode(&ok); err != nil {
		return "", fmt.Errorf("cannot decode dev token answer: %w", err)
	}
	if ok.Token == "" {
		return "", errors.New("cannot get dev token: empty answer")
	}
	return ok.Token, nil
}
