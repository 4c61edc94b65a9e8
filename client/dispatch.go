package client

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Gateway is one candidate returned by dispatch.
type Gateway struct {
	// ID names the gateway process, e.g. "gw-1".
	ID string `json:"id"`
	// URL is the gateway's WebSocket endpoint, e.g. ws://host:8080/v1/ws.
	URL string `json:"url"`
	// Load is the gateway's reported load in [0,1].
	Load float64 `json:"load"`
}

// DispatchAnswer is the answer of GET /v1/dispatch.
type DispatchAnswer struct {
	// Gateways are ordered best first. Empty in a wait answer.
	Gateways []Gateway `json:"gateways"`
	// RetryAfterMS, in an answer without gateways, asks the client to wait
	// this long and ask again: every gateway is full and the fleet is
	// growing. It is no error; dispatch already spread it with jitter.
	RetryAfterMS int64 `json:"retry_after_ms,omitempty"`
	// Reconnect is the backoff clients follow when reconnecting.
	Reconnect ReconnectPolicy `json:"reconnect"`
}

// maxWait bounds a wait answer's retry_after_ms.
const maxWait = time.Minute

// Wait returns how long a wait answer asks to wait before asking again
// (at most a minute), or 0 when the answer lists gateways or is no wait.
func (a DispatchAnswer) Wait() time.Duration {
	if len(a.Gateways) > 0 || a.RetryAfterMS <= 0 {
		return 0
	}
	return min(time.Duration(a.RetryAfterMS)*time.Millisecond, maxWait)
}

// DispatchParams are the optional hints of a dispatch request, which let
// dispatch tell new viewers (the demand the autoscaler plans for) from
// clients it already counted.
type DispatchParams struct {
	// Resume and Since: the client already follows the room and is moving
	// to another gateway (after a drain or a drop), resuming after
	// sequence Since. Sent as since=.
	Resume bool
	Since  uint64
	// Attempt numbers the requests of one join after the first (1 after a
	// wait or a failure, 2 after another…); 0 is the first. Sent as
	// attempt= when positive.
	Attempt int
}

// maxAnswer bounds how much of a successful JSON answer is read.
const maxAnswer = 1 << 20

// defaultHTTP is used when a Config or Sender has no HTTP client. Its
// timeout bounds one request; retries get a fresh one each.
var defaultHTTP = &http.Client{Timeout: 10 * time.Second}

// Dispatch asks the dispatch endpoint of baseURL (e.g. http://host:8080)
// which gateways serve room, as a new viewer. hc nil means a client with a
// 10 s timeout. Non-2xx answers are returned as *APIError; a wait answer
// (no gateways, DispatchAnswer.Wait above zero) is no error.
func Dispatch(ctx context.Context, hc *http.Client, baseURL, room string) (DispatchAnswer, error) {
	return DispatchWith(ctx, hc, baseURL, room, DispatchParams{})
}

// DispatchWith is Dispatch with the hints of p.
func DispatchWith(ctx context.Context, hc *http.Client, baseURL, room string, p DispatchParams) (DispatchAnswer, error) {
	q := url.Values{"room": {room}}
	if p.Resume {
		q.Set("since", strconv.FormatUint(p.Since, 10))
	}
	if p.Attempt > 0 {
		q.Set("attempt", strconv.Itoa(p.Attempt))
	}
	u, err := endpointURL(baseURL, q, "v1", "dispatch")
	if err != nil {
		return DispatchAnswer{}, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return DispatchAnswer{}, fmt.Errorf("cannot build dispatch request: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	if hc == nil {
		hc = defaultHTTP
	}
	resp, err := hc.Do(req)
	if err != nil {
		return DispatchAnswer{}, fmt.Errorf("cannot ask dispatch: %w", err)
	}
	defer drainClose(resp.Body)
	if resp.StatusCode/100 != 2 {
		return DispatchAnswer{}, readAPIError(resp)
	}
	var ans DispatchAnswer
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxAnswer)).Decode(&ans); err != nil {
		return DispatchAnswer{}, fmt.Errorf("cannot decode dispatch answer: %w", err)
	}
	ans.Reconnect = ans.Reconnect.normalize()
	return ans, nil
}

// drainClose reads a little of what is left of body, so the connection can
// be reused, and closes it.
func drainClose(body io.ReadCloser) {
	_, _ = io.Copy(io.Discard, io.LimitReader(body, 4<<10))
	_ = body.Close()
}

// endpointURL appends the path segments segs, each escaped, to baseURL
// (which may carry a path prefix) and sets query q.
func endpointURL(baseURL string, q url.Values, segs ...string) (string, error) {
	u, err := parseBase(baseURL)
	if err != nil {
		return "", err
	}
	raw := strings.TrimSuffix(u.EscapedPath(), "/")
	for _, s := range segs {
		raw += "/" + url.PathEscape(s)
	}
	if u.Path, err = url.PathUnescape(raw); err != nil {
		return "", fmt.Errorf("cannot build URL: %w", err)
	}
	u.RawPath = raw
	u.RawQuery = q.Encode()
	u.Fragment = ""
	return u.String(), nil
}

func parseBase(baseURL string) (*url.URL, error) {
	if baseURL == "" {
		return nil, fmt.Errorf("cannot use base URL: empty")
	}
	u, err := url.Parse(baseURL)
	if err != nil {
		return nil, fmt.Errorf("cannot parse base URL: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("cannot use base URL %q: scheme must be http or https", baseURL)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("cannot use base URL %q: no host", baseURL)
	}
	return u, nil
}

// GatewayURL builds the WebSocket URL to open for room on the gateway at
// gatewayURL: room, token and, when resume is true, since are set as query
// parameters (properly escaped; other parameters of gatewayURL are kept).
// An http or https gatewayURL is mapped to ws or wss. A relative gatewayURL
// (e.g. "/v1/ws") is resolved against baseURL, which may be empty otherwise.
func GatewayURL(baseURL, gatewayURL, room, token string, since uint64, resume bool) (string, error) {
	u, err := url.Parse(gatewayURL)
	if err != nil {
		return "", fmt.Errorf("cannot parse gateway URL: %w", err)
	}
	if !u.IsAbs() {
		b, err := parseBase(baseURL)
		if err != nil {
			return "", fmt.Errorf("cannot resolve relative gateway URL %q: %w", gatewayURL, err)
		}
		u = b.ResolveReference(u)
	}
	switch u.Scheme {
	case "ws", "wss":
	case "http":
		u.Scheme = "ws"
	case "https":
		u.Scheme = "wss"
	default:
		return "", fmt.Errorf("cannot use gateway URL %q: scheme must be ws, wss, http or https", gatewayURL)
	}
	if u.Host == "" {
		return "", fmt.Errorf("cannot use gateway URL %q: no host", gatewayURL)
	}
	q := u.Query()
	q.Set("room", room)
	q.Set("token", token)
	q.Del("since")
	if resume {
		q.Set("since", strconv.FormatUint(since, 10))
	}
	u.RawQuery = q.Encode()
	u.Fragment = ""
	return u.String(), nil
}
