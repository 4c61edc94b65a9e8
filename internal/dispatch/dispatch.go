// Package dispatch tells each new client which gateway to connect to. It
// keeps the gateways' load beats in memory and ranks them; it is stateless
// beyond that, so every replica gives the same answer from the same beats.
package dispatch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/liveroom/liveroom/internal/bus"
	"github.com/liveroom/liveroom/internal/protocol"
)

// ReconnectPolicy is the backoff clients must follow between attempts:
// delay = min(MaxMS, BaseMS × 2^attempt) × (1 − Jitter·rand), rand in [0,1),
// so that clients dropped together spread out and never wait above MaxMS.
type ReconnectPolicy struct {
	BaseMS int64   `json:"base_ms"`
	MaxMS  int64   `json:"max_ms"`
	Jitter float64 `json:"jitter"`
}

// Candidate is one gateway offered to a client.
type Candidate struct {
	ID   string  `json:"id"`
	URL  string  `json:"url"`
	Load float64 `json:"load"`
}

// Answer is the body of GET /v1/dispatch.
type Answer struct {
	Gateways  []Candidate     `json:"gateways"`
	Reconnect ReconnectPolicy `json:"reconnect"`
}

// Config configures dispatch.
type Config struct {
	// NC receives beats. Required.
	NC *nats.Conn
	// Logger; default slog.Default().
	Logger *slog.Logger
	// StaleAfter drops a gateway whose last beat is older. Default 3s
	// (3 beats).
	StaleAfter time.Duration
	// Candidates is how many gateways an answer lists. Default 3.
	Candidates int
	// Reconnect is the policy sent to clients. Default 500ms base, 15s max,
	// jitter 0.5.
	Reconnect ReconnectPolicy
}

// Server answers dispatch requests. Safe for concurrent use.
type Server struct {
	cfg Config
	log *slog.Logger

	mu    sync.RWMutex
	gws   map[string]seen
	sub   *nats.Subscription
	nowFn func() time.Time
}

type seen struct {
	beat bus.Beat
	at   time.Time // local receive time: immune to clock skew between hosts
}

// New validates cfg.
func New(cfg Config) (*Server, error) {
	if cfg.NC == nil {
		return nil, errors.New("cannot create dispatch: a NATS connection is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.StaleAfter <= 0 {
		cfg.StaleAfter = 3 * time.Second
	}
	if cfg.Candidates <= 0 {
		cfg.Candidates = 3
	}
	if cfg.Reconnect.BaseMS <= 0 {
		cfg.Reconnect = ReconnectPolicy{BaseMS: 500, MaxMS: 15000, Jitter: 0.5}
	}
	return &Server{cfg: cfg, log: cfg.Logger.With("role", "dispatch"), gws: map[string]seen{}, nowFn: time.Now}, nil
}

// Start subscribes to beats.
func (s *Server) Start(ctx context.Context) error {
	sub, err := s.cfg.NC.Subscribe(bus.BeatSubject, func(m *nats.Msg) {
		var b bus.Beat
		if err := json.Unmarshal(m.Data, &b); err != nil || b.ID == "" || b.URL == "" {
			return
		}
		s.Observe(b)
	})
	if err != nil {
		return fmt.Errorf("cannot subscribe to beats: %w", err)
	}
	fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := s.cfg.NC.FlushWithContext(fctx); err != nil {
		_ = sub.Unsubscribe()
		return fmt.Errorf("cannot subscribe to beats: %w", err)
	}
	s.sub = sub
	return nil
}

// Close unsubscribes. Idempotent.
func (s *Server) Close() error {
	if s.sub != nil {
		_ = s.sub.Unsubscribe()
	}
	return nil
}

// Observe records a beat (Start feeds it from NATS; tests may call it).
func (s *Server) Observe(b bus.Beat) {
	s.mu.Lock()
	s.gws[b.ID] = seen{beat: b, at: s.nowFn()}
	s.mu.Unlock()
}

// Gateways returns the live gateways (fresh beats), any state, by id.
func (s *Server) Gateways() []bus.Beat {
	now := s.nowFn()
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]bus.Beat, 0, len(s.gws))
	for _, g := range s.gws {
		if now.Sub(g.at) <= s.cfg.StaleAfter {
			out = append(out, g.beat)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Choose ranks the active, fresh gateways, least loaded first.
func (s *Server) Choose(room protocol.Room) []Candidate {
	gws := s.Gateways()
	live := gws[:0]
	for _, g := range gws {
		if g.State == bus.StateActive {
			live = append(live, g)
		}
	}
	sort.SliceStable(live, func(i, j int) bool {
		if live[i].Load != live[j].Load {
			return live[i].Load < live[j].Load
		}
		return live[i].Conns < live[j].Conns
	})
	out := make([]Candidate, 0, min(len(live), s.cfg.Candidates))
	for _, g := range live[:min(len(live), s.cfg.Candidates)] {
		out = append(out, Candidate{ID: g.ID, URL: g.URL, Load: g.Load})
	}
	return out
}

// Handler serves GET /v1/dispatch and GET /v1/gateways.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/dispatch", s.serveDispatch)
	mux.HandleFunc("GET /v1/gateways", func(w http.ResponseWriter, r *http.Request) {
		protocol.WriteJSON(w, http.StatusOK, struct {
			Gateways []bus.Beat `json:"gateways"`
		}{s.Gateways()})
	})
	return mux
}

func (s *Server) serveDispatch(w http.ResponseWriter, r *http.Request) {
	room, err := protocol.ParseRoom(r.URL.Query().Get("room"))
	if err != nil {
		protocol.WriteError(w, protocol.Errorf(http.StatusBadRequest, protocol.CodeInvalidRoom, "room", err.Error()))
		return
	}
	c := s.Choose(room)
	if len(c) == 0 {
		protocol.WriteError(w, protocol.Errorf(http.StatusServiceUnavailable, protocol.CodeUnavailable, "", "no gateway is available; retry shortly").WithRetry(1000))
		return
	}
	protocol.WriteJSON(w, http.StatusOK, Answer{Gateways: c, Reconnect: s.cfg.Reconnect})
}
