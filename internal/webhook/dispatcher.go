package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/liveroom/liveroom/internal/bus"
	"github.com/liveroom/liveroom/internal/protocol"
)

// Dispatcher delivers events to the configured endpoints. Start and Stop
// may be called again after Stop; Stats is safe for concurrent use.
type Dispatcher struct {
	cfg Config
	log *slog.Logger

	mu     sync.Mutex
	cancel context.CancelFunc
	wg     sync.WaitGroup

	delivered, failed, dead atomic.Int64
}

// New validates cfg and fills defaults. It does no I/O.
func New(cfg Config) (*Dispatcher, error) {
	if cfg.JS == nil {
		return nil, errors.New("cannot create webhooks: JS is required")
	}
	if len(cfg.Endpoints) == 0 {
		return nil, errors.New("cannot create webhooks: no endpoints")
	}
	if err := cfg.check(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = 10
	}
	if cfg.Backoff <= 0 {
		cfg.Backoff = Duration(time.Second)
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = Duration(time.Minute)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = Duration(5 * time.Second)
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 4
	}
	if cfg.Replicas <= 0 {
		cfg.Replicas = 1
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: time.Duration(cfg.Timeout)}
	}
	// Never follow a redirect, with any client: an endpoint (or whoever
	// took its address) must not bounce the signed body elsewhere, an
	// internal address included. A 3xx is a failed attempt.
	cl := *cfg.Client
	cl.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	cfg.Client = &cl
	return &Dispatcher{cfg: cfg, log: cfg.Logger.With("component", "webhook")}, nil
}

// Stats are counters since New.
type Stats struct {
	Delivered int64 // POSTs answered 2xx
	Failed    int64 // failed attempts (each retry counts)
	Dead      int64 // events dead-lettered
}

// Stats returns the counters.
func (d *Dispatcher) Stats() Stats {
	return Stats{Delivered: d.delivered.Load(), Failed: d.failed.Load(), Dead: d.dead.Load()}
}

// ConsumerName is the durable consumer of the endpoint at url.
func ConsumerName(url string) string { return "lr_webhook_" + endpointID(url) }

// Start creates the dead-letter stream and each endpoint's durable consumer
// (a new endpoint gets events from now on), then starts delivering. A
// no-op when already started.
func (d *Dispatcher) Start(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cancel != nil {
		return nil
	}
	replicas := d.cfg.Replicas
	if st, err := d.cfg.JS.Stream(ctx, DLQStream); err == nil {
		replicas = max(replicas, st.CachedInfo().Config.Replicas)
	}
	_, err := d.cfg.JS.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        DLQStream,
		Description: "liveroom webhook deliveries that ran out of attempts",
		Subjects:    []string{DLQSubjectPrefix + ">"},
		Storage:     jetstream.FileStorage,
		MaxAge:      30 * 24 * time.Hour,
		Replicas:    replicas,
	})
	if err != nil {
		return fmt.Errorf("cannot create stream %s: %w", DLQStream, err)
	}
	type ep struct {
		e Endpoint
		c jetstream.Consumer
	}
	eps := make([]ep, 0, len(d.cfg.Endpoints))
	for _, e := range d.cfg.Endpoints {
		c, err := d.cfg.JS.CreateOrUpdateConsumer(ctx, bus.ReliableStream, jetstream.ConsumerConfig{
			Durable:       ConsumerName(e.URL),
			Description:   "liveroom webhook " + Redact(e.URL),
			DeliverPolicy: jetstream.DeliverNewPolicy,
			AckPolicy:     jetstream.AckExplicitPolicy,
			// A POST in flight must never be redelivered for being slow.
			AckWait:       time.Duration(d.cfg.Timeout) + 30*time.Second,
			MaxAckPending: 10_000,
			// An endpoint removed from the config leaves its consumer
			// behind; the server deletes it after a week unused.
			InactiveThreshold: 7 * 24 * time.Hour,
		})
		if err != nil {
			return fmt.Errorf("cannot create webhook consumer for %s: %w", Redact(e.URL), err)
		}
		eps = append(eps, ep{e, c})
	}
	rctx, cancel := context.WithCancel(context.Background())
	d.cancel = cancel
	for _, p := range eps {
		for range d.cfg.Concurrency {
			d.wg.Go(func() { d.work(rctx, p.e, p.c) })
		}
	}
	return nil
}

// Stop stops delivering and waits for the POSTs in flight (bounded by
// Timeout). Unacknowledged events are redelivered after Start. Idempotent.
func (d *Dispatcher) Stop() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cancel == nil {
		return
	}
	d.cancel()
	d.wg.Wait()
	d.cancel = nil
}

// event is the part of a reliable message that decides its event type.
type event struct {
	ID     string `json:"id"`
	Type   string `json:"type"`
	Room   string `json:"room"`
	TS     int64  `json:"ts"`
	Action string `json:"action"`
}

// EventType returns the webhook event of a reliable message, or "" when it
// is none.
func EventType(typ, action string) string {
	switch {
	case typ == protocol.TypeGift:
		return EventGift
	case typ != protocol.TypeNotice || action == "":
		return ""
	case action == EventLiveStart || action == EventLiveStop:
		return action
	}
	return EventModeration
}

// Payload is the JSON body of a delivery.
type Payload struct {
	ID    string `json:"id"`    // event id: the message id; stable across retries
	Event string `json:"event"` // gift, live_start, live_stop, moderation
	Room  string `json:"room"`
	Seq   uint64 `json:"seq"` // the room stream's sequence, as viewers saw it
	TS    int64  `json:"ts"`  // when the event happened (Unix ms)
	// Message is the room message itself (docs/PROTOCOL.md).
	Message json.RawMessage `json:"message"`
}

func (d *Dispatcher) work(ctx context.Context, e Endpoint, c jetstream.Consumer) {
	for ctx.Err() == nil {
		batch, err := c.Fetch(1, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			d.pause(ctx, e, err)
			continue
		}
		for m := range batch.Messages() {
			d.handle(ctx, e, m)
		}
	}
}

func (d *Dispatcher) pause(ctx context.Context, e Endpoint, err error) {
	if ctx.Err() != nil {
		return
	}
	d.log.Warn("cannot fetch events", "endpoint", Redact(e.URL), "err", err)
	select {
	case <-ctx.Done():
	case <-time.After(time.Second):
	}
}

func (d *Dispatcher) handle(ctx context.Context, e Endpoint, m jetstream.Msg) {
	md, err := m.Metadata()
	if err != nil {
		_ = m.Term()
		return
	}
	var ev event
	if json.Unmarshal(m.Data(), &ev) != nil {
		_ = m.Ack()
		return
	}
	kind := EventType(ev.Type, ev.Action)
	if kind == "" || !e.Wants(kind) {
		_ = m.Ack()
		return
	}
	body := protocol.Encode(Payload{ID: ev.ID, Event: kind, Room: ev.Room, Seq: md.Sequence.Stream, TS: ev.TS, Message: m.Data()})
	attempt := int(md.NumDelivered)
	status, err := d.post(ctx, e, ev.ID, kind, attempt, body)
	if err == nil {
		d.delivered.Add(1)
		if aerr := m.Ack(); aerr != nil {
			// Delivered but not acked: it will come again, with the same
			// event id.
			d.log.Warn("cannot ack delivered event", "endpoint", Redact(e.URL), "id", ev.ID, "err", aerr)
		}
		return
	}
	if ctx.Err() != nil {
		// Stopping: the event is redelivered after the next Start.
		_ = m.Nak()
		return
	}
	d.failed.Add(1)
	if attempt < d.cfg.MaxAttempts {
		wait := d.backoff(attempt)
		d.log.Debug("webhook delivery failed; will retry", "endpoint", Redact(e.URL), "id", ev.ID, "attempt", attempt, "in", wait, "err", err)
		_ = m.NakWithDelay(wait)
		return
	}
	if derr := d.deadLetter(ctx, e, kind, ev.ID, attempt, status, err, body); derr != nil {
		// Not recorded: keep the event, try again later.
		d.log.Error("cannot write dead letter; keeping the event", "endpoint", Redact(e.URL), "id", ev.ID, "err", derr)
		_ = m.NakWithDelay(time.Duration(d.cfg.MaxBackoff))
		return
	}
	d.dead.Add(1)
	d.log.Warn("webhook event dead-lettered", "endpoint", Redact(e.URL), "id", ev.ID, "attempts", attempt, "err", err)
	_ = m.Term()
}

// backoff is the wait after the attempt-th failure: Backoff doubled per
// attempt, capped at MaxBackoff.
func (d *Dispatcher) backoff(attempt int) time.Duration {
	w := time.Duration(d.cfg.Backoff)
	for i := 1; i < attempt && w < time.Duration(d.cfg.MaxBackoff); i++ {
		w *= 2
	}
	return min(w, time.Duration(d.cfg.MaxBackoff))
}

func (d *Dispatcher) post(ctx context.Context, e Endpoint, id, kind string, attempt int, body []byte) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Duration(d.cfg.Timeout))
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.URL, bytes.NewReader(body))
	if err != nil {
		return 0, fmt.Errorf("cannot build request: %w", err)
	}
	h := req.Header
	h.Set("Content-Type", "application/json")
	h.Set("User-Agent", "liveroom-webhook/1")
	h.Set(HeaderEventID, id)
	h.Set(HeaderEvent, kind)
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	h.Set(HeaderTimestamp, ts)
	h.Set(HeaderAttempt, strconv.Itoa(attempt))
	h.Set(HeaderSignature, Sign(e.Secret, ts, body))
	resp, err := d.cfg.Client.Do(req)
	if err != nil {
		// A *url.Error names the URL, which may hold credentials: keep
		// only the cause.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return 0, fmt.Errorf("cannot post to %s: %w", Redact(e.URL), err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return resp.StatusCode, fmt.Errorf("endpoint answered %s", resp.Status)
	}
	return resp.StatusCode, nil
}

// DeadLetter is a record in DLQStream.
type DeadLetter struct {
	EventID    string          `json:"event_id"`
	Event      string          `json:"event"`
	Endpoint   string          `json:"endpoint"`
	Attempts   int             `json:"attempts"`
	LastStatus int             `json:"last_status,omitempty"`
	LastError  string          `json:"last_error"`
	FailedMS   int64           `json:"failed_ms"`
	Payload    json.RawMessage `json:"payload"`
}

func (d *Dispatcher) deadLetter(ctx context.Context, e Endpoint, kind, id string, attempts, status int, cause error, body []byte) error {
	rec := protocol.Encode(DeadLetter{EventID: id, Event: kind, Endpoint: Redact(e.URL), Attempts: attempts, LastStatus: status,
		LastError: cause.Error(), FailedMS: time.Now().UnixMilli(), Payload: body})
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err := d.cfg.JS.PublishMsg(ctx, &nats.Msg{Subject: DLQSubjectPrefix + endpointID(e.URL), Data: rec},
		jetstream.WithMsgID(endpointID(e.URL)+"-"+id), jetstream.WithExpectStream(DLQStream))
	if err != nil {
		return fmt.Errorf("cannot store dead letter: %w", err)
	}
	return nil
}

// DeadLetters reads every record of the dead-letter stream (tools, tests).
func DeadLetters(ctx context.Context, js jetstream.JetStream) ([]DeadLetter, error) {
	c, err := js.OrderedConsumer(ctx, DLQStream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return nil, fmt.Errorf("cannot read %s: %w", DLQStream, err)
	}
	st, err := js.Stream(ctx, DLQStream)
	if err != nil {
		return nil, fmt.Errorf("cannot read %s: %w", DLQStream, err)
	}
	total := st.CachedInfo().State.Msgs
	var out []DeadLetter
	for uint64(len(out)) < total {
		batch, err := c.Fetch(int(total)-len(out), jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return nil, fmt.Errorf("cannot read %s: %w", DLQStream, err)
		}
		n := 0
		for m := range batch.Messages() {
			var dl DeadLetter
			if json.Unmarshal(m.Data(), &dl) == nil {
				out = append(out, dl)
			}
			n++
		}
		if n == 0 {
			break
		}
	}
	return out, nil
}
