package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	neturl "net/url"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Stream and bucket names.
const (
	ReliableStream = "LR_RELIABLE"
	// LiveStream buffers live-class messages for the non-core consumers
	// (archive); the gateways keep reading the core subjects.
	LiveStream  = "LR_LIVE"
	RoomStateKV = "lr_rooms"
	// ModerationKV holds room controls, mutes and bans; see
	// internal/moderation for its keys.
	ModerationKV = "lr_moderation"
	// SessionsKV holds the rooms' live sessions; see internal/session.
	SessionsKV = "lr_sessions"
	// AnnouncementsKV holds the announced audiences (a room expects N
	// viewers from time T); see internal/announce. Written by the admin
	// API, watched by the autoscaler.
	AnnouncementsKV = "lr_announcements"
	// OrdersKV remembers the paid gifts of the server API by order id
	// (internal/uplink serverops.go), for OrderTTL: a retry of an order
	// after the reliable stream's de-duplication window is still answered
	// "duplicate" instead of showing the gift twice.
	OrdersKV = "lr_orders"
)

// StreamConfig sizes the durable parts.
type StreamConfig struct {
	// Replicas for streams and buckets: 3 on a 3-node cluster, 1 otherwise.
	// Default 1.
	Replicas int
	// DedupeWindow is how long a gift's idempotency key is remembered.
	// Default 5 minutes (a client retrying for 2 minutes is covered).
	DedupeWindow time.Duration
	// ReliableMaxAge bounds how long reliable messages are kept for replay
	// after reconnects. Default 24h.
	ReliableMaxAge time.Duration
	// LiveMaxAge and LiveMaxBytes bound the live buffer stream: it lets the
	// archive stop and catch up, it is not the archive. Defaults 1h, 1 GiB.
	LiveMaxAge   time.Duration
	LiveMaxBytes int64
	// OrderTTL is how long a paid gift's order id is remembered (OrdersKV).
	// Default 7 days.
	OrderTTL time.Duration
}

// Client liveness settings of every role's NATS connection.
const (
	ClientPingInterval = 750 * time.Millisecond
	ClientMaxPingsOut  = 2
)

// Connect connects to NATS with reconnects that never give up, logging state
// changes. name identifies the role in NATS monitoring. It is
// ConnectContext without a way to stop its wait of up to 2 s for the first
// connection.
func Connect(url, name string, log *slog.Logger, extra ...nats.Option) (*nats.Conn, error) {
	return ConnectContext(context.Background(), url, name, log, extra...)
}

// ConnectContext is Connect that gives up its wait for the first connection
// (up to 2 s) when ctx ends: the connection is then closed and the error
// wraps ctx's.
func ConnectContext(ctx context.Context, url, name string, log *slog.Logger, extra ...nats.Option) (*nats.Conn, error) {
	if log == nil {
		log = slog.Default()
	}
	opts := []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.ReconnectJitter(100*time.Millisecond, time.Second),
		nats.RetryOnFailedConnect(true),
		// Liveness tuned for live traffic (docs/RELIABILITY.md): a NATS
		// node that hangs (GC pause, stuck disk, a paused VM) keeps its
		// socket open; two unanswered pings 750 ms apart (1.5–2.3 s) make
		// the client leave it for another node of the cluster and
		// resubscribe there, where gateways check their rooms. A ping is
		// a few bytes per connection per 750 ms.
		nats.PingInterval(ClientPingInterval),
		nats.MaxPingsOutstanding(ClientMaxPingsOut),
		nats.ReconnectBufSize(8 << 20),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			// nats.go calls this with a nil error on Close too: a clean
			// stop is no warning.
			if err != nil {
				log.Warn("nats disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("nats reconnected", "url", nc.ConnectedUrlRedacted())
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subj := ""
			if sub != nil {
				subj = sub.Subject
			}
			if errors.Is(err, nats.ErrPermissionViolation) {
				// A role doing what its credential does not allow is a bug
				// (or the wrong credential): never a quiet warning.
				log.Error("nats refused an operation of this role", "subject", subj, "err", err)
				return
			}
			log.Warn("nats async error", "subject", subj, "err", err)
		}),
		nats.ClosedHandler(func(nc *nats.Conn) {
			if err := nc.LastError(); err != nil {
				log.Error("nats connection closed for good", "err", err)
			}
		}),
	}
	opts = append(opts, extra...)
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, fmt.Errorf("cannot connect to nats at %s: %w", redactURL(url), err)
	}
	// With RetryOnFailedConnect, Connect returns before the first attempt
	// is known; a server that refuses the credentials closes the connection
	// at once. Say so now rather than wait on a dead connection.
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline) && !nc.IsConnected(); {
		if nc.IsClosed() {
			err := nc.LastError()
			if errors.Is(err, nats.ErrAuthorization) || errors.Is(err, nats.ErrAuthExpired) || errors.Is(err, nats.ErrAuthRevoked) {
				return nil, fmt.Errorf("nats at %s refused the credentials of %s: %w (give this process its NATS credential: "+
					"--nats-key-file, or --nats-user and $LIVEROOM_NATS_PASSWORD; see liveroom creds -h)", redactURL(url), name, err)
			}
			return nil, fmt.Errorf("cannot connect to nats at %s: %w", redactURL(url), err)
		}
		select {
		case <-ctx.Done():
			nc.Close()
			return nil, fmt.Errorf("cannot connect to nats at %s: %w", redactURL(url), ctx.Err())
		case <-tick.C:
		}
	}
	return nc, nil
}

// redactURL hides the passwords of a comma-separated NATS URL list.
func redactURL(s string) string {
	parts := strings.Split(s, ",")
	for i, p := range parts {
		if u, err := neturl.Parse(strings.TrimSpace(p)); err == nil && u.User != nil {
			parts[i] = u.Redacted()
		}
	}
	return strings.Join(parts, ",")
}

// keepReplicas is the replica count to create or update stream (a KV
// bucket's is "KV_"+bucket) with: want, but never fewer than it has. A
// role started without --replicas 3 must not turn a clustered stream into
// a single copy another role (or an operator) made.
func keepReplicas(ctx context.Context, js jetstream.JetStream, stream string, want int) int {
	if st, err := js.Stream(ctx, stream); err == nil {
		return max(want, st.CachedInfo().Config.Replicas)
	}
	return want
}

// EnsureStreams creates or updates liveroom's streams and buckets. The
// uplink and serve call it at start (only their credentials may); it is
// idempotent, and never lowers a stream's replicas (keepReplicas).
func EnsureStreams(ctx context.Context, js jetstream.JetStream, cfg StreamConfig) error {
	if cfg.Replicas <= 0 {
		cfg.Replicas = 1
	}
	if cfg.DedupeWindow <= 0 {
		cfg.DedupeWindow = 5 * time.Minute
	}
	if cfg.ReliableMaxAge <= 0 {
		cfg.ReliableMaxAge = 24 * time.Hour
	}
	if cfg.LiveMaxAge <= 0 {
		cfg.LiveMaxAge = time.Hour
	}
	if cfg.LiveMaxBytes <= 0 {
		cfg.LiveMaxBytes = 1 << 30
	}
	if cfg.OrderTTL <= 0 {
		cfg.OrderTTL = 7 * 24 * time.Hour
	}
	streams := []jetstream.StreamConfig{{
		Name:        ReliableStream,
		Description: "liveroom reliable-class room messages (gifts, notices)",
		Subjects:    []string{StoreWildcard, ModerationWildcard},
		// Gateways hear stored messages on core subjects, with their
		// sequence and the room's previous one, and repair gaps with
		// Direct Get from any replica: no consumer per room.
		RePublish:  &jetstream.RePublish{Source: StoreWildcard, Destination: "lr.room.{{wildcard(1)}}.reliable"},
		MaxAge:     cfg.ReliableMaxAge,
		Duplicates: cfg.DedupeWindow,
	}, {
		// Core publishes to the live subjects are captured without an ack
		// to the publisher: the live path does not wait for this stream.
		// Gateways read a room's last danmaku from any replica when they
		// start it (the history frame of late joiners), by Direct Get.
		Name:        LiveStream,
		Description: "liveroom live-class room messages, buffered for the archive",
		Subjects:    []string{LiveWildcard},
		MaxAge:      cfg.LiveMaxAge,
		MaxBytes:    cfg.LiveMaxBytes,
	}}
	for _, sc := range streams {
		sc.AllowDirect, sc.Storage, sc.Retention, sc.Discard = true, jetstream.FileStorage, jetstream.LimitsPolicy, jetstream.DiscardOld
		sc.Replicas = keepReplicas(ctx, js, sc.Name, cfg.Replicas)
		if _, err := js.CreateOrUpdateStream(ctx, sc); err != nil {
			return fmt.Errorf("cannot create stream %s: %w", sc.Name, err)
		}
	}
	buckets := []jetstream.KeyValueConfig{
		{Bucket: RoomStateKV, Description: "liveroom room state (likes totals)"},
		{Bucket: ModerationKV, Description: "liveroom moderation: room anchors and controls, mutes and bans (watched by every uplink and gateway)"},
		{Bucket: SessionsKV, Description: "liveroom live sessions of rooms (watched by every uplink)"},
		// A few dozen small entries at most (internal/announce bounds their
		// count and size); the byte limit is the backstop against a writer
		// that ignores those bounds. An announcement ends at most 8 days
		// after it was made (7 days ahead, 24 hours long): the bucket
		// forgets every entry, and the delete marker of every removed one,
		// an hour after that.
		{Bucket: AnnouncementsKV, Description: "liveroom announced audiences: a room expects N viewers from time T (watched by the autoscaler)",
			TTL: 8*24*time.Hour + time.Hour, MaxValueSize: 1024, MaxBytes: 1 << 20},
		// One small entry per paid gift, forgotten after the TTL.
		{Bucket: OrdersKV, Description: "liveroom paid gifts by order id (the server API's idempotency beyond the stream's de-duplication window)",
			TTL: cfg.OrderTTL, MaxValueSize: 512},
	}
	for _, kc := range buckets {
		kc.History, kc.Storage = 1, jetstream.FileStorage
		kc.Replicas = keepReplicas(ctx, js, "KV_"+kc.Bucket, cfg.Replicas)
		if _, err := js.CreateOrUpdateKeyValue(ctx, kc); err != nil {
			return fmt.Errorf("cannot create bucket %s: %w", kc.Bucket, err)
		}
	}
	return nil
}

// StreamsOf lists the streams and buckets (as their streams, KV_<bucket>)
// a role reads: WaitStreamsExist waits for them.
func StreamsOf(role Role) []string {
	switch role {
	case RoleGateway:
		return []string{ReliableStream, "KV_" + RoomStateKV, "KV_" + ModerationKV}
	case RoleArchive:
		return []string{ReliableStream, LiveStream, "KV_" + ModerationKV, "KV_" + SessionsKV}
	}
	return []string{ReliableStream, LiveStream, "KV_" + RoomStateKV, "KV_" + ModerationKV, "KV_" + SessionsKV}
}

// WaitStreamsExist waits until the streams named exist, for the roles
// whose credential may not create them (only the uplink and serve do; see
// Permissions). It logs what it waits for, and why, after a few seconds and
// then every 15 s (waitLog).
func WaitStreamsExist(ctx context.Context, js jetstream.JetStream, log *slog.Logger, names ...string) error {
	wl := newWaitLog(log, "waiting for liveroom's streams")
	for {
		var missing string
		var merr error
		for _, n := range names {
			actx, cancel := context.WithTimeout(ctx, 5*time.Second)
			_, err := js.Stream(actx, n)
			cancel()
			if err != nil {
				missing, merr = n, err
				break
			}
		}
		if missing == "" {
			wl.done()
			return nil
		}
		wl.still(missing, merr)
		select {
		case <-ctx.Done():
			return fmt.Errorf("cannot find stream %s (%s; %v); is an uplink (or serve) running against this NATS? %w", missing, waitReason(merr), merr, ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// WaitStreams retries EnsureStreams until it succeeds or ctx ends; JetStream
// may need a moment after a cluster forms (a meta leader, then a leader for
// each stream). It logs what it waits for, as WaitStreamsExist does.
func WaitStreams(ctx context.Context, js jetstream.JetStream, log *slog.Logger, cfg StreamConfig) error {
	wl := newWaitLog(log, "waiting to create liveroom's streams")
	var err error
	for {
		// Each attempt gets its own short deadline: a request sent while the
		// cluster is still electing its metadata leader is never answered.
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err = EnsureStreams(actx, js, cfg)
		cancel()
		if err == nil {
			wl.done()
			return nil
		}
		wl.still("", err)
		select {
		case <-ctx.Done():
			return errors.Join(fmt.Errorf("%s: %w", waitReason(err), err), ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// waitLog says, while a role waits for JetStream, what it waits for: first
// after waitLogFirst, then every waitLogEvery, and once more when the wait is
// over. A role that gets its streams at once logs nothing.
type waitLog struct {
	log    *slog.Logger
	what   string
	start  time.Time
	next   time.Time
	logged bool
}

const (
	waitLogFirst = 3 * time.Second
	waitLogEvery = 15 * time.Second
)

func newWaitLog(log *slog.Logger, what string) *waitLog {
	if log == nil {
		log = slog.Default()
	}
	now := time.Now()
	return &waitLog{log: log, what: what, start: now, next: now.Add(waitLogFirst)}
}

func (w *waitLog) still(stream string, err error) {
	now := time.Now()
	if now.Before(w.next) {
		return
	}
	w.next, w.logged = now.Add(waitLogEvery), true
	attrs := []any{"reason", waitReason(err), "err", err, "waited", now.Sub(w.start).Round(time.Second)}
	if stream != "" {
		attrs = append([]any{"stream", stream}, attrs...)
	}
	w.log.Info(w.what, attrs...)
}

func (w *waitLog) done() {
	if w.logged {
		w.log.Info("liveroom's streams are ready", "waited", time.Since(w.start).Round(100*time.Millisecond))
	}
}

// waitReason says in words why a JetStream request failed while the
// streams are not ready: not created yet, JetStream not answering (a
// cluster without a meta leader, or a stream without a leader, while the
// nodes join), or too few servers for the replicas asked.
func waitReason(err error) string {
	var apiErr *jetstream.APIError
	switch {
	case err == nil:
		return ""
	case errors.Is(err, jetstream.ErrStreamNotFound):
		return "not created yet: an uplink (or serve) creates them"
	case errors.Is(err, nats.ErrNoResponders), errors.Is(err, jetstream.ErrJetStreamNotEnabled):
		return "no JetStream server answers yet: are the NATS nodes up, with JetStream?"
	case errors.As(err, &apiErr) && (apiErr.ErrorCode == 10005 || apiErr.ErrorCode == 10023):
		// JSClusterNoPeersErrF, JSInsufficientResourcesErr
		return "too few JetStream servers for the replicas asked (--replicas 3 needs three nodes joined)"
	case errors.As(err, &apiErr) && apiErr.ErrorCode == 10008:
		// JSClusterNotAvailErr
		return "JetStream is not available yet: the cluster has no meta leader (nodes still joining?)"
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout):
		return "JetStream does not answer yet: the cluster is electing its leaders, or a stream has no leader yet (nodes still joining?)"
	}
	return "JetStream refused the request"
}
