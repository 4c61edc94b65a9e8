// Package webhook forwards room events (gifts, live start and stop,
// moderation notices) to third-party HTTP endpoints. It is a non-core
// consumer: each endpoint has its own durable JetStream consumer on the
// reliable stream, so a slow or dead endpoint delays only itself and the
// live path never notices.
//
// Delivery is at least once: an event is acknowledged to JetStream only
// after the endpoint answered 2xx. Every POST carries the event id
// (X-Liveroom-Event-Id, stable across retries: de-duplicate on it), the
// attempt's time (X-Liveroom-Timestamp, Unix seconds) and an HMAC-SHA256 of
// timestamp "." body under the endpoint's secret (X-Liveroom-Signature:
// sha256=<hex>): a receiver that checks the signature and refuses a
// timestamp outside a few minutes (VerifyRequest) cannot be fed a captured
// delivery later. No redirect is ever followed: a 3xx answer is a failed
// attempt (an endpoint cannot bounce the signed body to another address).
// Failures are retried with exponential backoff; after MaxAttempts the event
// is written to the dead-letter stream DLQStream and dropped from the
// endpoint's queue. Endpoint URLs appear in logs and dead letters without
// user info or query (they may hold credentials).
package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Event types an endpoint may subscribe to.
const (
	EventGift       = "gift"
	EventLiveStart  = "live_start"
	EventLiveStop   = "live_stop"
	EventModeration = "moderation" // a notice with any other action (mute, ban, kick, close, …)
	EventAll        = "*"
)

// Headers of every delivery.
const (
	HeaderEventID   = "X-Liveroom-Event-Id"
	HeaderEvent     = "X-Liveroom-Event"
	HeaderSignature = "X-Liveroom-Signature"
	HeaderTimestamp = "X-Liveroom-Timestamp" // Unix seconds of this attempt
	HeaderAttempt   = "X-Liveroom-Attempt"
)

// DLQStream holds dead-letter records on DLQSubjectPrefix + endpoint id.
const (
	DLQStream        = "LR_WEBHOOK_DLQ"
	DLQSubjectPrefix = "lr.webhook.dlq."
)

// Endpoint is one receiver.
type Endpoint struct {
	// URL receives POSTs. http or https.
	URL string `json:"url"`
	// Events it wants: gift, live_start, live_stop, moderation, or * for all.
	Events []string `json:"events"`
	// Secret keys the HMAC signature. Required.
	Secret string `json:"secret"`
}

// Wants reports whether the endpoint subscribed to event.
func (e Endpoint) Wants(event string) bool {
	return slices.Contains(e.Events, event) || slices.Contains(e.Events, EventAll)
}

// Config configures a Dispatcher. Zero values mean the defaults.
type Config struct {
	// JS reads the reliable stream and writes dead letters. Required.
	JS jetstream.JetStream `json:"-"`
	// Logger; default slog.Default().
	Logger *slog.Logger `json:"-"`
	// Endpoints to deliver to. At least one.
	Endpoints []Endpoint `json:"endpoints"`
	// MaxAttempts before an event is dead-lettered. Default 10 (with the
	// default backoff: about 4 minutes of trying).
	MaxAttempts int `json:"max_attempts"`
	// Backoff is the wait before the first retry; it doubles up to
	// MaxBackoff. Defaults 1s and 60s.
	Backoff    Duration `json:"backoff"`
	MaxBackoff Duration `json:"max_backoff"`
	// Timeout bounds one POST. Default 5s.
	Timeout Duration `json:"timeout"`
	// Concurrency is how many deliveries one endpoint may have in flight.
	// Default 4.
	Concurrency int `json:"concurrency"`
	// Replicas of the dead-letter stream (never lowered). Default 1.
	Replicas int `json:"replicas"`
	// Client sends the POSTs; default a client with Timeout.
	Client *http.Client `json:"-"`
}

// Duration is a time.Duration that reads "5s" or a number of nanoseconds
// from JSON.
type Duration time.Duration

// UnmarshalJSON implements json.Unmarshaler.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if json.Unmarshal(b, &s) == nil {
		v, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("cannot parse duration %q: %w", s, err)
		}
		*d = Duration(v)
		return nil
	}
	var n int64
	if err := json.Unmarshal(b, &n); err != nil {
		return errors.New(`a duration is a string like "5s"`)
	}
	*d = Duration(n)
	return nil
}

// LoadFile reads a JSON config file:
//
//	{"endpoints":[{"url":"https://…","events":["gift","live_start"],"secret":"…"}],
//	 "max_attempts":10,"backoff":"1s","max_backoff":"60s","timeout":"5s"}
func LoadFile(path string) (Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("cannot read webhook config: %w", err)
	}
	var c Config
	if err := json.Unmarshal(b, &c); err != nil {
		return Config{}, fmt.Errorf("cannot parse webhook config %s: %w", path, err)
	}
	return c, c.check()
}

func (c *Config) check() error {
	for i, e := range c.Endpoints {
		u, err := url.Parse(e.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("webhook endpoint %d: url %q: want http(s)://host/…", i, Redact(e.URL))
		}
		if e.Secret == "" {
			return fmt.Errorf("webhook endpoint %s: a secret is required (it signs every delivery)", Redact(e.URL))
		}
		if len(e.Events) == 0 {
			return fmt.Errorf("webhook endpoint %s: no events; list some of gift, live_start, live_stop, moderation, *", Redact(e.URL))
		}
		for _, ev := range e.Events {
			switch ev {
			case EventGift, EventLiveStart, EventLiveStop, EventModeration, EventAll:
			default:
				return fmt.Errorf("webhook endpoint %s: unknown event %q; want gift, live_start, live_stop, moderation or *", Redact(e.URL), ev)
			}
		}
	}
	return nil
}

// Sign returns the signature header value of a delivery of body at
// timestamp ts (the X-Liveroom-Timestamp value, Unix seconds) under secret:
// "sha256=" + hex(HMAC-SHA256(secret, ts + "." + body)).
func Sign(secret, ts string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// Verify reports whether sig is the signature of body at ts under secret,
// in constant time. It does not look at the time: VerifyRequest does.
func Verify(secret, ts string, body []byte, sig string) bool {
	return hmac.Equal([]byte(Sign(secret, ts, body)), []byte(sig))
}

// DefaultTolerance is how far a delivery's timestamp may be from the
// receiver's clock: enough for retries in flight and clock skew, short
// enough that a captured delivery cannot be replayed later.
const DefaultTolerance = 5 * time.Minute

// Errors of VerifyRequest.
var (
	ErrBadSignature = errors.New("webhook: bad signature")
	ErrStale        = errors.New("webhook: timestamp outside the tolerance (a replay?)")
)

// VerifyRequest checks a received delivery: its signature over its
// timestamp and body under secret, and that the timestamp lies within
// tolerance of now (DefaultTolerance when zero). A replayed delivery fails
// on the time, one whose timestamp was changed on the signature. Receivers
// should also drop event ids they have already processed (deliveries are at
// least once). See docs/PROTOCOL.md.
func VerifyRequest(secret string, h http.Header, body []byte, now time.Time, tolerance time.Duration) error {
	if tolerance <= 0 {
		tolerance = DefaultTolerance
	}
	ts := h.Get(HeaderTimestamp)
	if !Verify(secret, ts, body, h.Get(HeaderSignature)) {
		return ErrBadSignature
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return ErrBadSignature
	}
	if d := now.Sub(time.Unix(sec, 0)); d > tolerance || d < -tolerance {
		return ErrStale
	}
	return nil
}

// Redact returns u without user info and query (which may carry
// credentials), for logs and dead letters.
func Redact(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "(unparsable url)"
	}
	p.User, p.RawQuery, p.Fragment = nil, "", ""
	return p.String()
}

// endpointID names an endpoint's durable consumer and dead-letter subject.
func endpointID(u string) string {
	h := sha256.Sum256([]byte(u))
	return hex.EncodeToString(h[:6])
}
