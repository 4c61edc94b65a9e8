package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/liveroom/liveroom/internal/protocol"
)

// ErrDraining is the cause carried by EventReconnecting when the gateway
// asked the client to move (a reconnect frame): it is draining before it
// stops.
var ErrDraining = errors.New("liveroom client: gateway is draining")

// ErrReplayContinues is the cause carried by EventReconnecting when the
// gateway replayed part of what the client missed and asked it to reconnect
// at once for the rest (reconnect frame with reason "replay_continues").
var ErrReplayContinues = errors.New("liveroom client: replay continues on a new connection")

// DefaultEventBuffer is the capacity of a Conn's event channel.
const DefaultEventBuffer = 256

// maxServerDelay bounds the after_ms of a reconnect frame.
const maxServerDelay = 5 * time.Minute

// EventKind says what an Event reports.
type EventKind int

// Event kinds, in the order a Conn's life produces them.
const (
	// EventWelcome is the first event: the welcome frame of the first
	// gateway (Welcome, Gateway).
	EventWelcome EventKind = iota + 1
	// EventMessage carries one room message (Msg).
	EventMessage
	// EventReconnecting reports a drop and the wait before the next attempt
	// (Err: the cause, ErrDraining for a drain; Delay; Attempt from 1;
	// Gateway: the gateway that was left). It repeats for each attempt.
	EventReconnecting
	// EventReconnected reports a new gateway's welcome (Welcome, Gateway);
	// replayed reliable messages follow as EventMessage.
	EventReconnected
	// EventClosed is the last event (Err: ErrClosed after Close, otherwise
	// the fatal error, see IsFatal). The event channel is closed after it.
	EventClosed
	// EventWaiting reports that dispatch asked to wait: every gateway is
	// full and the fleet is growing (Delay: the wait before asking again;
	// Attempt from 1). It is no error: show "joining…". It comes before
	// EventWelcome while Connect runs, and between EventReconnecting and
	// EventReconnected. Delivered on the channel only when there is room
	// (it is dropped otherwise, never waited for).
	EventWaiting
	// EventHistory carries the room's recent danmaku and gifts (History,
	// oldest first), right after the EventWelcome of a connection that did
	// not resume (Config.Since zero) into a room with recent traffic
	// (Welcome.History says how many). They are context for a viewer who
	// joins late, not deliveries: they are not de-duplicated against later
	// messages, never come again as EventMessage, and do not move LastSeq
	// (a history gift's Seq is at most the welcome's).
	EventHistory
)

// String returns the kind's name.
func (k EventKind) String() string {
	switch k {
	case EventWelcome:
		return "welcome"
	case EventMessage:
		return "message"
	case EventReconnecting:
		return "reconnecting"
	case EventReconnected:
		return "reconnected"
	case EventClosed:
		return "closed"
	case EventWaiting:
		return "waiting"
	case EventHistory:
		return "history"
	}
	return fmt.Sprintf("EventKind(%d)", int(k))
}

// Event is one thing that happened on a Conn; which fields are set depends
// on Kind (see the EventKind constants).
type Event struct {
	Kind    EventKind
	Msg     Message
	Welcome *Welcome
	// History holds EventHistory's messages, oldest first.
	History []Message
	Err     error
	// Gateway is the id of the gateway concerned.
	Gateway string
	// Delay is the wait before a reconnect attempt.
	Delay time.Duration
	// Attempt numbers reconnect attempts after one drop, from 1.
	Attempt int
}

// Config configures Connect.
type Config struct {
	// BaseURL is the liveroom HTTP base, e.g. http://127.0.0.1:8080.
	// Required.
	BaseURL string
	// Room is the room id. Required.
	Room string
	// Token is the viewer's JWT. Required.
	Token string
	// Since resumes from a known reliable sequence: the first connection
	// asks for since=Since. Zero starts at the room's current sequence.
	Since uint64
	// HTTP asks dispatch; nil means a client with a 10 s timeout.
	HTTP *http.Client
	// Dialer opens gateway connections; the zero value uses the defaults
	// documented on Dialer.
	Dialer Dialer
	// Logger receives connection life-cycle logs; nil means none.
	Logger *slog.Logger
	// Buffer is the capacity of the event channel; zero means
	// DefaultEventBuffer. When it is full the reader waits: no message is
	// ever dropped inside the client, and a consumer that stays slow is
	// eventually disconnected by the gateway, then recovers by replay.
	Buffer int
	// DedupeSize is how many recent reliable message ids are remembered to
	// drop duplicates; zero means DefaultDedupeSize.
	DedupeSize int
	// OnEvent, when set, receives every event instead of the channel
	// returned by Events (which then only closes when the Conn ends). It is
	// called from the Conn's reader goroutine, one event at a time (and,
	// for EventWaiting before the first welcome, from the goroutine that
	// called Connect); it must not call Close.
	OnEvent func(Event)
	// Liveness is how long a connection may hear nothing (no frame, not
	// even a heartbeat) before the Conn leaves that gateway as hung and
	// resumes elsewhere with since. Zero: protocol.LivenessFactor times
	// the heartbeat interval the gateway announces in its welcome (1.75 s
	// for 1 s), or the Dialer's read timeout from a gateway that announces
	// none; negative: the Dialer's read timeout only.
	Liveness time.Duration
	// HedgeDelay: when a candidate gateway has not completed its WebSocket
	// handshake within this long, the next candidate is dialed too, and the
	// first handshake wins. A hung gateway's kernel still accepts TCP
	// connections, so without it a viewer sent there (dispatch offers a
	// gateway until its beats have been missing for 3 s) would wait the
	// whole dial timeout. Zero: DefaultHedgeDelay; negative: one at a time.
	HedgeDelay time.Duration
}

// DefaultHedgeDelay is Config.HedgeDelay's default: far above a handshake's
// time on a working network, far below the dial timeout.
const DefaultHedgeDelay = time.Second

// Conn is a viewer's subscription to one room that survives drops, drains and
// gateway failures: it reconnects through dispatch and resumes from the last
// reliable sequence it delivered. It owns one reader goroutine. Its methods
// are safe for concurrent use.
type Conn struct {
	cfg    Config
	log    *slog.Logger
	events chan Event
	cancel context.CancelFunc
	done   chan struct{}
	// dials are the handshakes dialHedged started: a losing one is
	// cancelled and, if it completes anyway, closed; Close (and a failed
	// Connect) wait for them.
	dials sync.WaitGroup

	lastSeq atomic.Uint64
	gwMu    sync.Mutex
	gateway string

	// Owned by the reader goroutine (and Connect before it starts).
	policy  ReconnectPolicy
	dd      *dedupe
	resumed bool // a connection was established: reconnects send since
	rnd     func() float64
	// shunned is a gateway this Conn left because it went silent, tried
	// last until shunnedUntil: dispatch may list it until its missing
	// beats show, and a hung gateway costs a dial timeout.
	shunned      string
	shunnedUntil time.Time
}

// Connect asks dispatch for the gateways of cfg.Room, tries them in order and
// returns once one sent its welcome (delivered as the first event). ctx
// bounds Connect only; the Conn lives until Close or a fatal error. Errors
// are *APIError for refusals (IsFatal says whether retrying can help).
func Connect(ctx context.Context, cfg Config) (*Conn, error) {
	if _, err := parseBase(cfg.BaseURL); err != nil {
		return nil, err
	}
	if _, err := protocol.ParseRoom(cfg.Room); err != nil {
		return nil, fmt.Errorf("cannot connect: %w", err)
	}
	if cfg.Token == "" {
		return nil, errors.New("cannot connect: a token is required")
	}
	if cfg.Buffer <= 0 {
		cfg.Buffer = DefaultEventBuffer
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Conn{
		cfg:     cfg,
		log:     log.With("room", cfg.Room),
		events:  make(chan Event, cfg.Buffer),
		done:    make(chan struct{}),
		policy:  DefaultReconnectPolicy,
		dd:      newDedupe(cfg.DedupeSize),
		resumed: cfg.Since > 0,
		rnd:     rand.Float64,
	}
	c.lastSeq.Store(cfg.Since)
	gc, w, err := c.connectOnce(ctx)
	if err != nil {
		c.dials.Wait()
		return nil, err
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	c.cancel = cancel
	go c.run(runCtx, gc, w)
	return c, nil
}

// Events returns the channel events are delivered on. It is closed after
// EventClosed. When Config.OnEvent is set nothing is sent on it.
func (c *Conn) Events() <-chan Event { return c.events }

// Done is closed when the Conn has ended and its goroutine has returned.
func (c *Conn) Done() <-chan struct{} { return c.done }

// LastSeq returns the highest reliable sequence delivered (or, before any,
// the room's sequence at the first welcome). Reconnects ask for since=LastSeq.
func (c *Conn) LastSeq() uint64 { return c.lastSeq.Load() }

// Gateway returns the id of the gateway currently (or last) connected.
func (c *Conn) Gateway() string {
	c.gwMu.Lock()
	defer c.gwMu.Unlock()
	return c.gateway
}

// Close stops the Conn, closes its gateway connection and waits for its
// goroutines. It is idempotent. Events still buffered stay readable.
func (c *Conn) Close() error {
	c.cancel()
	<-c.done
	c.dials.Wait()
	return nil
}

func (c *Conn) setGateway(id string) {
	c.gwMu.Lock()
	c.gateway = id
	c.gwMu.Unlock()
}

// connectOnce asks dispatch, waiting as long as it asks to, and tries every
// candidate in order.
func (c *Conn) connectOnce(ctx context.Context) (*GatewayConn, *Welcome, error) {
	var ans DispatchAnswer
	for attempt := 0; ; attempt++ {
		var err error
		ans, err = DispatchWith(ctx, c.cfg.HTTP, c.cfg.BaseURL, c.cfg.Room,
			DispatchParams{Resume: c.resumed, Since: c.lastSeq.Load(), Attempt: attempt})
		if err != nil {
			return nil, nil, err
		}
		c.policy = ans.Reconnect
		wait := ans.Wait()
		if wait == 0 {
			break
		}
		c.log.Info("every gateway is full; waiting for the fleet to grow", "wait", wait, "attempt", attempt+1)
		c.notify(ctx, Event{Kind: EventWaiting, Delay: wait, Attempt: attempt + 1})
		if !sleep(ctx, wait) {
			return nil, nil, ctx.Err()
		}
	}
	if len(ans.Gateways) == 0 {
		return nil, nil, ErrNoGateway
	}
	since := c.lastSeq.Load()
	cands := c.order(ans.Gateways)
	var errs []error
	for len(cands) > 0 {
		gw, gc, rest, derrs := c.dialHedged(ctx, cands, since)
		errs = append(errs, derrs...)
		cands = rest
		if gc == nil {
			if ctx.Err() != nil {
				return nil, nil, ctx.Err()
			}
			if n := len(derrs); n > 0 && IsFatal(derrs[n-1]) {
				return nil, nil, derrs[n-1]
			}
			continue
		}
		w, err := c.welcome(ctx, gc)
		if err == nil {
			id := w.Gateway
			if id == "" {
				id = gw.ID
			}
			c.setGateway(id)
			c.log.Info("connected", "gateway", id, "since", since, "resumed", c.resumed,
				"seq", w.Seq, "replayed", w.Replayed)
			return gc, w, nil
		}
		if ctx.Err() != nil {
			return nil, nil, ctx.Err()
		}
		c.log.Warn("gateway refused", "gateway", gw.ID, "err", err)
		if IsFatal(err) {
			return nil, nil, err
		}
		errs = append(errs, fmt.Errorf("gateway %s: %w", gw.ID, err))
	}
	return nil, nil, fmt.Errorf("cannot connect to any of %d gateways: %w", len(ans.Gateways), errors.Join(errs...))
}

// dialResult is the outcome of one candidate's handshake.
type dialResult struct {
	gw  Gateway
	gc  *GatewayConn
	err error
}

// dialHedged dials cands in order until one completes its WebSocket
// handshake: the next candidate starts when the previous one failed or has
// not finished within the hedge delay, and the first handshake wins (the
// others are cancelled, and closed if they complete anyway). It returns the
// winner (gc nil when none), the candidates it did not start, and the
// errors of those that failed, the last one last.
func (c *Conn) dialHedged(ctx context.Context, cands []Gateway, since uint64) (Gateway, *GatewayConn, []Gateway, []error) {
	hedge := c.cfg.HedgeDelay
	if hedge == 0 {
		hedge = DefaultHedgeDelay
	}
	dctx, cancel := context.WithCancel(ctx)
	results := make(chan dialResult, len(cands))
	pending, next := 0, 0
	var errs []error
	start := func() bool {
		for next < len(cands) {
			gw := cands[next]
			next++
			u, err := GatewayURL(c.cfg.BaseURL, gw.URL, c.cfg.Room, c.cfg.Token, since, c.resumed)
			if err != nil {
				errs = append(errs, fmt.Errorf("gateway %s: %w", gw.ID, err))
				continue
			}
			pending++
			c.dials.Go(func() {
				gc, err := c.cfg.Dialer.Dial(dctx, u)
				results <- dialResult{gw: gw, gc: gc, err: err}
			})
			return true
		}
		return false
	}
	// finish cancels the dials still running and closes any that complete.
	finish := func() {
		cancel()
		if pending == 0 {
			return
		}
		n := pending
		c.dials.Go(func() {
			for range n {
				if r := <-results; r.gc != nil {
					_ = r.gc.Close()
				}
			}
		})
	}
	start()
	// A nil channel never fires: no hedging when hedge is negative.
	var timer <-chan time.Time
	var t *time.Timer
	if hedge > 0 {
		t = time.NewTimer(hedge)
		defer t.Stop()
		timer = t.C
	}
	for pending > 0 {
		select {
		case r := <-results:
			pending--
			if r.err == nil {
				finish()
				return r.gw, r.gc, cands[next:], errs
			}
			c.log.Warn("gateway refused", "gateway", r.gw.ID, "err", r.err)
			errs = append(errs, fmt.Errorf("gateway %s: %w", r.gw.ID, r.err))
			if IsFatal(r.err) || ctx.Err() != nil {
				finish()
				return Gateway{}, nil, nil, errs
			}
			if pending == 0 && start() && t != nil {
				t.Reset(hedge)
			}
		case <-timer:
			if start() {
				t.Reset(hedge)
			}
		case <-ctx.Done():
			finish()
			return Gateway{}, nil, nil, append(errs, ctx.Err())
		}
	}
	cancel()
	return Gateway{}, nil, cands[next:], errs
}

// welcome waits for the welcome frame on a new connection, closing it on
// failure.
func (c *Conn) welcome(ctx context.Context, gc *GatewayConn) (*Welcome, error) {
	wctx, cancel := context.WithTimeout(ctx, DefaultWelcomeTimeout)
	f, err := gc.ReadFrame(wctx)
	cancel()
	switch {
	case err != nil:
		err = fmt.Errorf("cannot read welcome: %w", err)
	case f.Error != nil:
		err = &FrameError{Body: f.Error.Error}
	case f.Welcome == nil:
		err = fmt.Errorf("cannot read welcome: got a %q frame first", f.Type)
	}
	if err != nil {
		_ = gc.Close()
		return nil, err
	}
	return f.Welcome, nil
}

// run is the Conn's one goroutine: it reads, delivers and reconnects.
func (c *Conn) run(ctx context.Context, gc *GatewayConn, w *Welcome) {
	defer close(c.done)
	err := c.loop(ctx, gc, w)
	ev := Event{Kind: EventClosed, Err: err, Gateway: c.Gateway()}
	switch {
	case c.cfg.OnEvent != nil:
		c.cfg.OnEvent(ev)
	case ctx.Err() != nil:
		// Closed by the owner, who may not be reading any more.
		select {
		case c.events <- ev:
		default:
		}
	default:
		select {
		case c.events <- ev:
		case <-ctx.Done():
		}
	}
	close(c.events)
	c.log.Info("closed", "err", err)
}

func (c *Conn) loop(ctx context.Context, gc *GatewayConn, w *Welcome) error {
	kind := EventWelcome
	for {
		c.onWelcome(w)
		if d := c.liveness(w); d > 0 {
			gc.SetReadTimeout(d)
		}
		if !c.emit(ctx, Event{Kind: kind, Welcome: w, Gateway: c.Gateway()}) {
			_ = gc.Close()
			return ErrClosed
		}
		at, cause := c.pump(ctx, gc)
		_ = gc.Close()
		if ctx.Err() != nil {
			return ErrClosed
		}
		if IsFatal(cause) {
			return cause
		}
		c.log.Info("connection lost", "gateway", c.Gateway(), "err", cause)
		var err error
		gc, w, err = c.reconnect(ctx, cause, time.Until(at))
		if err != nil {
			return err
		}
		kind = EventReconnected
	}
}

// liveness is the silence after which the Conn leaves a gateway; 0 keeps
// the Dialer's read timeout.
func (c *Conn) liveness(w *Welcome) time.Duration {
	switch {
	case c.cfg.Liveness < 0:
		return 0
	case c.cfg.Liveness > 0:
		return c.cfg.Liveness
	case w.HeartbeatMS > 0:
		return time.Duration(float64(w.HeartbeatMS)*protocol.LivenessFactor) * time.Millisecond
	}
	return 0
}

// onWelcome adopts the room's sequence on a first connection. On a resumed
// one it keeps its own: the replay that follows the welcome carries the
// sequences it missed, which adopting would drop.
func (c *Conn) onWelcome(w *Welcome) {
	if !c.resumed {
		if w.Seq > c.lastSeq.Load() {
			c.lastSeq.Store(w.Seq)
		}
		c.resumed = true
		return
	}
	if last := c.lastSeq.Load(); w.Seq > last && w.Replayed == 0 {
		c.log.Warn("gateway replayed nothing although the room moved on", "since", last, "seq", w.Seq)
	}
}

// pump reads gc until it fails, delivering messages. It returns the
// earliest time to reconnect and why it stopped: for a drain, the gateway's
// after_ms, during which it keeps reading because the draining gateway
// still serves the room.
func (c *Conn) pump(ctx context.Context, gc *GatewayConn) (time.Time, error) {
	readCtx := ctx
	var drainAt time.Time
	for {
		f, err := gc.ReadFrame(readCtx)
		if err != nil {
			if !drainAt.IsZero() {
				return drainAt, ErrDraining
			}
			return time.Time{}, err
		}
		switch f.Type {
		case protocol.FrameBatch:
			for _, m := range f.Batch.Msgs {
				if !c.deliver(ctx, m) {
					return time.Time{}, ErrClosed
				}
			}
		case protocol.FrameHistory:
			// Context, not deliveries: past the dedupe and the position.
			if len(f.History.Msgs) > 0 && !c.emit(ctx, Event{Kind: EventHistory, History: f.History.Msgs, Gateway: c.Gateway()}) {
				return time.Time{}, ErrClosed
			}
		case protocol.FrameReconnect:
			if !drainAt.IsZero() {
				continue
			}
			after := time.Duration(f.Reconnect.AfterMS) * time.Millisecond
			after = min(max(after, 0), maxServerDelay)
			if f.Reconnect.Reason == "replay_continues" {
				return time.Time{}, ErrReplayContinues
			}
			c.log.Info("gateway draining", "gateway", c.Gateway(), "after", after, "reason", f.Reconnect.Reason)
			if after == 0 {
				return time.Time{}, ErrDraining
			}
			drainAt = time.Now().Add(after)
			var cancel context.CancelFunc
			readCtx, cancel = context.WithDeadline(ctx, drainAt)
			defer cancel()
		case protocol.FrameError:
			return time.Time{}, &FrameError{Body: f.Error.Error}
		case protocol.FrameHeartbeat:
			// Proof of life: the read deadline moved on.
		default:
			// A second welcome or a frame type newer than this client.
			c.log.Debug("ignored frame", "type", f.Type)
		}
	}
}

// deliver emits m unless it is a reliable message already delivered. It
// reports false when the Conn is closing.
func (c *Conn) deliver(ctx context.Context, m Message) bool {
	if m.Seq > 0 || protocol.Reliable(m.Type) {
		if m.Seq > 0 && m.Seq <= c.lastSeq.Load() {
			c.log.Debug("dropped replayed message", "id", m.ID, "seq", m.Seq)
			return true
		}
		if m.ID != "" && c.dd.seen(m.ID) {
			c.log.Debug("dropped duplicate message", "id", m.ID, "seq", m.Seq)
			return true
		}
	}
	if !c.emit(ctx, Event{Kind: EventMessage, Msg: m}) {
		return false
	}
	if m.Seq > c.lastSeq.Load() {
		c.lastSeq.Store(m.Seq)
	}
	return true
}

// shunFor is how long a gateway left for its silence is tried last.
const shunFor = 30 * time.Second

// order returns gws with the shunned gateway, if listed, moved last.
func (c *Conn) order(gws []Gateway) []Gateway {
	if c.shunned == "" || time.Now().After(c.shunnedUntil) {
		return gws
	}
	out := make([]Gateway, 0, len(gws))
	var last []Gateway
	for _, g := range gws {
		if g.ID == c.shunned {
			last = append(last, g)
		} else {
			out = append(out, g)
		}
	}
	return append(out, last...)
}

// reconnect waits and reconnects through dispatch until it succeeds, the
// Conn closes or an attempt fails fatally. wait, if positive, is the first
// delay (a drain's after_ms); otherwise the policy's.
func (c *Conn) reconnect(ctx context.Context, cause error, wait time.Duration) (*GatewayConn, *Welcome, error) {
	// A drain's wait was mostly spent still reading the old gateway.
	delay := max(wait, 0)
	if delay == 0 && !errors.Is(cause, ErrDraining) && !errors.Is(cause, ErrReplayContinues) && !errors.Is(cause, ErrSilent) {
		// A hung gateway is left at once: its silence was the wait.
		delay = c.policy.Delay(0, c.rnd)
	}
	left := c.Gateway()
	if errors.Is(cause, ErrSilent) && left != "" {
		c.shunned, c.shunnedUntil = left, time.Now().Add(shunFor)
	}
	for attempt := 1; ; attempt++ {
		if !c.emit(ctx, Event{Kind: EventReconnecting, Err: cause, Delay: delay, Attempt: attempt, Gateway: left}) {
			return nil, nil, ErrClosed
		}
		if !sleep(ctx, delay) {
			return nil, nil, ErrClosed
		}
		gc, w, err := c.connectOnce(ctx)
		if err == nil {
			return gc, w, nil
		}
		if ctx.Err() != nil {
			return nil, nil, ErrClosed
		}
		if IsFatal(err) {
			return nil, nil, err
		}
		c.log.Info("reconnect failed", "attempt", attempt, "err", err)
		cause = err
		delay = c.policy.Delay(attempt, c.rnd)
	}
}

// emit hands ev to OnEvent or the channel, waiting for room. It reports
// false when ctx is done.
func (c *Conn) emit(ctx context.Context, ev Event) bool {
	if c.cfg.OnEvent != nil {
		if ctx.Err() != nil {
			return false
		}
		c.cfg.OnEvent(ev)
		return true
	}
	select {
	case c.events <- ev:
		return true
	case <-ctx.Done():
		return false
	}
}

// notify hands ev to OnEvent, or to the channel when it has room: it never
// waits, so that Connect, which runs before anyone reads the channel, cannot
// block on it.
func (c *Conn) notify(ctx context.Context, ev Event) {
	if ctx.Err() != nil {
		return
	}
	if c.cfg.OnEvent != nil {
		c.cfg.OnEvent(ev)
		return
	}
	select {
	case c.events <- ev:
	default:
	}
}

// sleep waits d or until ctx is done, reporting false in the latter case.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

var _ io.Closer = (*Conn)(nil)
