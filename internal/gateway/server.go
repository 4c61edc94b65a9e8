// Package gateway holds viewers' WebSocket connections and pushes room
// traffic to them. It keeps, in memory, which of its own connections sit in
// which room; subscribes to a room's NATS subjects while it has viewers in
// it; merges each room's messages over a short window into one frame that is
// encoded once and written, as the same bytes, to every local member.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/liveroom/liveroom/internal/bus"
	"github.com/liveroom/liveroom/internal/moderation"
	"github.com/liveroom/liveroom/internal/protocol"
)

// Server is a gateway. Create it with New, then Start it; Close stops it.
// All methods are safe for concurrent use.
type Server struct {
	cfg   Config
	log   *slog.Logger
	hub   *hub
	stats Stats
	edge  *edge // handshake checks (edge.go)

	// Push-delay observers; nil until Register.
	delayLive, delayReliable, delayAggregate prometheus.Observer
	// delays feeds the push-delay percentiles of the beats.
	delays delayHist

	// direct reads the reliable stream (Direct Get); starter, repairs and
	// checkNow are the reliable path's room starts, repairs and checks
	// (starter.go, reliable.go).
	direct *bus.Direct
	// histDirect reads the rooms' history at start (history.go) on a
	// reply subscription of its own, so that room starts, repairs and
	// checks never wait behind its larger answers.
	histDirect *bus.Direct
	// histSlots holds a token per history read in flight (historyReaders).
	histSlots chan struct{}
	// histRate paces the history reads (historyReadRate).
	histRate *rate.Limiter
	starter  *starter
	repairs  *repairQueue
	checkNow chan struct{}
	// beatNow asks the beat loop for a beat now (the NATS connection came
	// back: the beats of the outage were lost).
	beatNow chan struct{}
	// unwatch stops watchNATS.
	unwatch func()
	// dropReliable, set by tests before Start, loses the republished
	// reliable messages it returns true for, as a lossy network would.
	dropReliable func(room protocol.Room, seq uint64) bool

	// natsChs carry the rooms' NATS messages, a room always on the same
	// one (roomShard index modulo their number), each read by one natsLoop:
	// a room's messages are handled in the order they arrived, in parallel
	// with other rooms'.
	natsChs   []chan *nats.Msg
	writeJobs chan writeJob
	connSeq   atomic.Uint64
	started   time.Time
	state     atomic.Value // string: bus.StateActive or bus.StateDraining
	running   atomic.Bool
	closing   atomic.Bool
	cpuAvg    atomic.Uint64 // float64 bits: smoothed CPU use in cores

	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup // background loops
	connWG   sync.WaitGroup // one per connection, until reaped
	writerWG sync.WaitGroup // writer pool

	// poll watches the established connections (netpoll_linux.go); nil
	// until Start.
	poll *netpoll
	// Handshakes in progress (handshake.go): counted so that Close waits
	// for them, their connections tracked so that Close can interrupt
	// them, hsCtx bounding their room joins.
	hsMu     sync.Mutex
	hsWG     sync.WaitGroup
	hsConns  map[net.Conn]struct{}
	hsClosed bool
	hsCtx    context.Context
	hsCancel context.CancelFunc

	closeOnce sync.Once
	drainOnce sync.Once
	drained   chan struct{}
	ctlSub    *nats.Subscription
	// mod caches moderation; userSub receives user notices.
	mod     *moderation.Cache
	userSub *nats.Subscription
	// admitMu orders connection admission against Close, so that no
	// connection is registered after Close started waiting for them.
	admitMu sync.Mutex
}

// New validates cfg and returns a gateway that is not yet started.
func New(cfg Config) (*Server, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	e, err := newEdge(&cfg)
	if err != nil {
		return nil, err
	}
	s := &Server{
		edge:      e,
		cfg:       cfg,
		log:       cfg.Logger.With("role", "gateway", "gateway", cfg.ID),
		hub:       newHub(cfg.Shards),
		natsChs:   newNATSChans(natsLoops),
		drained:   make(chan struct{}),
		starter:   newStarter(),
		histSlots: make(chan struct{}, historyReaders),
		histRate:  rate.NewLimiter(historyReadRate, historyReadBurst),
		checkNow:  make(chan struct{}, 1),
		beatNow:   make(chan struct{}, 1),
		hsConns:   map[net.Conn]struct{}{},
	}
	s.hsCtx, s.hsCancel = context.WithCancel(context.Background())
	s.repairs = newRepairQueue(s)
	s.state.Store(bus.StateActive)
	return s, nil
}

// ID returns the gateway id.
func (s *Server) ID() string { return s.cfg.ID }

// Stats returns the live counters.
func (s *Server) Stats() *Stats { return &s.stats }

// Start checks the reliable stream and starts the gateway's loops. It
// returns once the gateway accepts connections.
func (s *Server) Start(ctx context.Context) error {
	if _, err := s.cfg.JS.Stream(ctx, bus.ReliableStream); err != nil {
		return fmt.Errorf("cannot open stream %s: %w", bus.ReliableStream, err)
	}
	d, err := bus.NewDirect(s.cfg.NC)
	if err != nil {
		return err
	}
	s.direct = d
	if s.histDirect, err = bus.NewDirect(s.cfg.NC); err != nil {
		d.Close()
		return err
	}
	s.started = time.Now()
	s.ctx, s.cancel = context.WithCancel(context.Background())
	unwatch, err := s.watchNATS()
	if err != nil {
		s.cancel()
		d.Close()
		s.histDirect.Close()
		return fmt.Errorf("cannot watch the reliable stream: %w", err)
	}
	s.unwatch = unwatch
	for i := 0; i < s.cfg.Flushers; i++ {
		s.goLoop(func() { s.flushLoop(i) })
	}
	for _, ch := range s.natsChs {
		s.goLoop(func() { s.natsLoop(ch) })
	}
	if s.cfg.HeartbeatInterval > 0 {
		s.goLoop(s.heartbeatLoop)
	}
	for range startLoops {
		s.goLoop(s.startLoop)
	}
	s.repairs.run(s.ctx)
	s.goLoop(s.checkLoop)
	s.startWriters(runtime.GOMAXPROCS(0))
	s.goLoop(s.tickLoop)
	s.goLoop(s.beatLoop)
	stop := func() {
		s.cancel()
		s.unwatch()
		s.wg.Wait()
		s.repairs.wait()
		s.stopWriters()
		s.direct.Close()
		s.histDirect.Close()
	}
	sub, err := s.cfg.NC.Subscribe(bus.ControlSubject(s.cfg.ID), s.serveControl)
	if err != nil {
		stop()
		return fmt.Errorf("cannot subscribe to control subject: %w", err)
	}
	s.ctlSub = sub
	if err := s.startModeration(ctx); err != nil {
		_ = sub.Unsubscribe()
		stop()
		return err
	}
	if s.poll, err = newNetpoll(s, pollerCount()); err != nil {
		s.stopModeration()
		_ = sub.Unsubscribe()
		stop()
		return fmt.Errorf("cannot start the connection pollers: %w", err)
	}
	s.poll.start()
	// Commands may arrive as soon as Start returns: make sure the server
	// knows the subscription.
	if err := s.cfg.NC.FlushTimeout(10 * time.Second); err != nil {
		s.log.Warn("cannot flush control subscription", "err", err)
	}
	s.running.Store(true)
	s.log.Info("gateway started", "url", s.cfg.PublicURL, "merge_window", s.cfg.MergeWindow, "viewer_budget", s.cfg.ViewerBudget)
	return nil
}

func (s *Server) goLoop(f func()) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		f()
	}()
}

// Close stops accepting connections, closes every connection with "going
// away", unsubscribes every room and waits for all goroutines. Idempotent.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.admitMu.Lock()
		s.closing.Store(true)
		s.admitMu.Unlock()
		s.stopHandshakes()
		if !s.running.Load() {
			return
		}
		_ = s.ctlSub.Unsubscribe()
		s.stopModeration()
		// Tell the other gateways this one's viewers are gone, so that
		// online counts drop now rather than when the entries expire.
		for _, r := range s.hub.allRooms(nil) {
			select {
			case <-r.ready:
				if r.readyErr == nil {
					s.publishPresence(r.id, 0)
				}
			default:
			}
		}
		// Every connection, members and those already leaving with their
		// last frames queued (no longer in the registry).
		for _, c := range s.poll.all(s.hub.allConns(nil)) {
			c.close(ws.StatusGoingAway)
		}
		s.connWG.Wait()
		s.poll.stop()
		s.cancel()
		s.unwatch()
		s.wg.Wait()
		s.repairs.wait()
		s.stopWriters()
		for _, r := range s.hub.allRooms(nil) {
			s.stopRoom(r)
		}
		s.direct.Close()
		s.histDirect.Close()
		s.log.Info("gateway stopped")
	})
	return nil
}

// Handler serves GET /v1/ws through net/http. With Listener in front of
// the HTTP server, upgrades reach it only on kept-alive connections.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/ws", s.serveWS)
	return mux
}

// canAdmitFromMemory reports whether a join to id with since can be served
// without NATS: the room is hosted and started here, and the viewer saw no
// more of it than this gateway has pushed.
func (s *Server) canAdmitFromMemory(id protocol.Room, since uint64, hasSince bool) bool {
	r := s.hub.lookup(id)
	if r == nil {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.started && !r.dead && (!hasSince || since <= r.lastSeq)
}

// removeConn forgets a closed connection; idempotent.
func (s *Server) removeConn(c *conn) {
	sh := s.hub.connShard(c)
	sh.mu.Lock()
	_, ok := sh.conns[c]
	delete(sh.conns, c)
	sh.mu.Unlock()
	if !ok {
		return
	}
	// The slots admitUpgrade took (attach gave them to c): its address's
	// and its user's.
	s.edge.release(c.ip)
	s.edge.releaseUser(c.who.User)
	s.stats.Conns.Add(-1)
	if r := c.room; r != nil {
		r.leave(c)
	}
}

func (r *room) leave(c *conn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	i := c.idx
	if i < 0 || i >= len(r.members) || r.members[i] != c {
		return
	}
	last := len(r.members) - 1
	r.members[i] = r.members[last]
	r.members[i].idx = i
	r.members[last] = nil
	r.members = r.members[:last]
	c.idx = -1
	if c.deflate {
		r.deflaters--
	}
	if len(r.members) == 0 {
		r.emptySince = time.Now()
	}
}

// The catch-up: a viewer reconnecting with since= gets what it missed, from
// the memory window or the stream, before live traffic. (The protocol calls
// these messages "replayed"; internal/replay is something else, the replay
// of a recorded session.)

// errCatchUpContinues ends a join that sent a first part of what the client
// missed and asked it to reconnect for the rest.
var errCatchUpContinues = errors.New("catch-up continues on the next connection")

// catchUpContinues is the frame that ends a partial catch-up (its reason,
// replay_continues, is the protocol's name).
func catchUpContinues() []byte {
	return textFrame(protocol.Encode(protocol.Reconnect{Type: protocol.FrameReconnect, AfterMS: 0, Reason: "replay_continues"}))
}

func (s *Server) welcomeFrame(id protocol.Room, c *conn, seq uint64, online, likes int64, replayed, history int) []byte {
	return textFrame(protocol.Encode(protocol.Welcome{
		Type: protocol.FrameWelcome, Room: string(id), Seq: seq, Online: online,
		Likes: likes, Gateway: s.cfg.ID, User: string(c.who.User), Replayed: replayed, History: history,
		HeartbeatMS: max(s.cfg.HeartbeatInterval.Milliseconds(), 0),
	}))
}

// errCatchUpRace asks join to fetch again: the memory window moved past what
// was read from JetStream while it was being read.
var errCatchUpRace = errors.New("catch-up raced the window")

// join adds c to room id: it sends the welcome frame, then what the client
// missed since `since` (when asked), then makes c a member so it receives
// every following flush. Holding the room lock across these steps is what
// makes the catch-up and live traffic meet without gap or overlap.
func (s *Server) join(ctx context.Context, c *conn, id protocol.Room, since uint64, hasSince bool) error {
	r, err := s.acquireRoom(ctx, id)
	if err != nil {
		return err
	}
	defer s.releaseRoom(r)
	if hasSince {
		r.mu.Lock()
		behind := since > r.lastSeq
		r.mu.Unlock()
		if behind {
			// The viewer saw more of the room than this gateway has
			// pushed (it comes from another gateway, or the room just
			// started here): read up to since first, so that the welcome
			// never carries an older sequence and nothing the viewer had
			// is sent again.
			s.reachSince(ctx, r, since)
		}
	}
	for attempt := 0; ; attempt++ {
		var fetched []relMsg
		var covered uint64
		r.mu.Lock()
		needJS := hasSince && since < r.lastSeq && since < r.floor
		floor := r.floor
		r.mu.Unlock()
		if needJS {
			var partial bool
			fetched, covered, partial, err = s.fetchReliable(ctx, id, since, floor)
			if err != nil {
				return err
			}
			if partial {
				// Too far behind for one catch-up: send this part, then ask
				// the client to come back for the rest with its new since.
				r.mu.Lock()
				seq, likes := r.lastSeq, r.likes
				online := int64(len(r.members)+1) + r.remoteSum(time.Now())
				r.mu.Unlock()
				c.send(&frame{b: s.welcomeFrame(r.id, c, seq, online, likes, len(fetched), 0), reliable: true})
				for _, f := range catchUpFrames(id, fetched) {
					c.send(f)
				}
				s.stats.Replayed.Add(int64(len(fetched)))
				s.stats.ReplayedFromJS.Add(int64(len(fetched)))
				c.finish(catchUpContinues(), closeFrameBytes(ws.StatusNormalClosure, ""))
				return errCatchUpContinues
			}
		}
		err = r.admit(c, since, hasSince, fetched, covered, needJS)
		if err == errCatchUpRace && attempt < 5 {
			continue
		}
		return err
	}
}

func (r *room) admit(c *conn, since uint64, hasSince bool, fetched []relMsg, covered uint64, usedJS bool) error {
	s := r.srv
	r.mu.Lock()
	defer r.mu.Unlock()
	var missed []relMsg
	if hasSince && since < r.lastSeq {
		from := since
		if usedJS {
			if covered < r.floor {
				return errCatchUpRace
			}
			missed = append(missed, fetched...)
			from = max(since, covered)
		}
		for _, m := range r.window {
			if m.seq > from {
				missed = append(missed, m)
			}
		}
	}
	// Too much to send at once: send the oldest part, then ask the client
	// to come back for the rest with its new since (never skip the middle).
	partial := len(missed) > s.cfg.ReplayMax
	if partial {
		missed = missed[:s.cfg.ReplayMax]
	}
	now := time.Now()
	online := int64(len(r.members)+1) + r.remoteSum(now)
	// A first join (no since=) gets the room's recent danmaku and gifts
	// right after the welcome (history.go); a reconnect gets what it
	// missed instead.
	var hist *frame
	var histN int
	if !hasSince {
		hist, histN = r.historyFrame(now, c.deflate)
	}
	welcome := s.welcomeFrame(r.id, c, r.lastSeq, online, r.likes, len(missed), histN)
	if c.send(&frame{b: welcome, reliable: true}) == sentClosed {
		return errors.New("connection closed during join")
	}
	if hist != nil {
		c.send(hist)
		s.stats.HistoryFrames.Add(1)
	}
	for _, f := range catchUpFrames(r.id, missed) {
		c.send(f)
	}
	s.stats.Replayed.Add(int64(len(missed)))
	if usedJS {
		s.stats.ReplayedFromJS.Add(int64(min(len(fetched), len(missed))))
	}
	if partial {
		c.finish(catchUpContinues(), closeFrameBytes(ws.StatusNormalClosure, ""))
		return errCatchUpContinues
	}
	c.room = r
	c.idx = len(r.members)
	r.members = append(r.members, c)
	if c.deflate {
		r.deflaters++
	}
	return nil
}

// acquireRoom returns the room, starting its subscriptions if this is its
// first viewer here, and holds it against removal until releaseRoom.
func (s *Server) acquireRoom(ctx context.Context, id protocol.Room) (*room, error) {
	sh := s.hub.roomShard(id)
	sh.mu.Lock()
	r := sh.rooms[id]
	if r == nil {
		r = newRoom(s, id, sh)
		sh.rooms[id] = r
		s.startRoom(r)
	}
	r.mu.Lock()
	r.joining++
	r.mu.Unlock()
	sh.mu.Unlock()
	select {
	case <-r.ready:
	case <-ctx.Done():
		s.releaseRoom(r)
		return nil, fmt.Errorf("cannot join room %s: %w", id, ctx.Err())
	}
	if r.readyErr != nil {
		s.releaseRoom(r)
		return nil, r.readyErr
	}
	return r, nil
}

func (s *Server) releaseRoom(r *room) {
	r.mu.Lock()
	r.joining--
	if len(r.members) == 0 && r.joining == 0 && r.emptySince.IsZero() {
		r.emptySince = time.Now()
	}
	r.mu.Unlock()
}
