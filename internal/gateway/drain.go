package gateway

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"time"

	"github.com/gobwas/ws"
	"github.com/nats-io/nats.go"

	"github.com/liveroom/liveroom/internal/bus"
	"github.com/liveroom/liveroom/internal/protocol"
)

// Drain moves every viewer off this gateway without a reconnect storm:
//
//  1. the gateway reports "draining" in an immediate beat, so dispatch stops
//     sending it anyone, and refuses new upgrades with 503 draining;
//  2. after DrainDelay it tells each viewer {"type":"reconnect","after_ms":N}
//     with N spread evenly over DrainWindow (stretched so that no more than
//     DrainRate viewers per second are asked to move);
//  3. a viewer still connected DrainGrace after its time is closed, in the
//     same order and so at the same paced rate;
//  4. it returns when no connection is left or at the deadline (window plus
//     grace plus 5 s).
//
// Viewers reconnect through dispatch with since= and lose no reliable
// message. Drain is idempotent: every call waits for the same drain. ctx
// only bounds the wait; the drain itself goes on until done or Close.
func (s *Server) Drain(ctx context.Context) error {
	s.drainOnce.Do(func() {
		s.state.Store(bus.StateDraining)
		// Announce it before answering whoever asked, so that dispatch
		// stops offering this gateway before the drain is acknowledged.
		s.publishBeat(s.Beat())
		_ = s.cfg.NC.FlushTimeout(2 * time.Second)
		s.log.Info("draining", "conns", s.stats.Conns.Load(), "window", s.cfg.DrainWindow, "rate", s.cfg.DrainRate)
		s.goLoop(s.runDrain)
	})
	select {
	case <-s.drained:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Drained is closed when a drain has finished.
func (s *Server) Drained() <-chan struct{} { return s.drained }

// State is bus.StateActive or bus.StateDraining.
func (s *Server) State() string { return s.state.Load().(string) }

func (s *Server) runDrain() {
	defer close(s.drained)
	if !s.sleepUntil(time.Now().Add(s.cfg.DrainDelay)) {
		return
	}
	conns := s.hub.allConns(nil)
	rand.Shuffle(len(conns), func(i, j int) { conns[i], conns[j] = conns[j], conns[i] })
	n := len(conns)
	spacing := time.Duration(0)
	if n > 0 {
		spacing = max(s.cfg.DrainWindow/time.Duration(n), time.Duration(float64(time.Second)/s.cfg.DrainRate))
	}
	start := time.Now()
	for i, c := range conns {
		after := time.Duration(i) * spacing
		b := textFrame(protocol.Encode(protocol.Reconnect{Type: protocol.FrameReconnect, AfterMS: after.Milliseconds(), Reason: "draining"}))
		if c.send(&frame{b: b, reliable: true}) != sentClosed {
			s.stats.DrainNotified.Add(1)
		}
	}
	s.log.Info("drain: reconnect notices sent", "conns", n, "spacing", spacing, "span", time.Duration(n)*spacing)
	for i, c := range conns {
		if s.stats.Conns.Load() == 0 {
			break // everyone has left already
		}
		if !s.sleepUntil(start.Add(time.Duration(i)*spacing + s.cfg.DrainGrace)) {
			return
		}
		if !c.isClosed() {
			s.stats.DrainClosed.Add(1)
			c.close(ws.StatusGoingAway)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for s.stats.Conns.Load() > 0 && time.Now().Before(deadline) {
		if !s.sleepUntil(time.Now().Add(50 * time.Millisecond)) {
			return
		}
	}
	s.log.Info("drain finished", "left", s.stats.Conns.Load(), "took", time.Since(start).Round(time.Millisecond),
		"closed_by_gateway", s.stats.DrainClosed.Load())
}

// sleepUntil waits until t; false if the gateway is closing.
func (s *Server) sleepUntil(t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return s.ctx.Err() == nil
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return true
	case <-s.ctx.Done():
		return false
	}
}

// serveControl answers commands on the gateway's control subject.
func (s *Server) serveControl(m *nats.Msg) {
	var c bus.Control
	reply := bus.ControlReply{Gateway: s.cfg.ID}
	if err := json.Unmarshal(m.Data, &c); err != nil {
		reply.Error = "bad control message"
	} else {
		switch c.Cmd {
		case bus.CmdDrain:
			ctx, cancel := context.WithCancel(context.Background())
			cancel() // start the drain, do not wait for it
			_ = s.Drain(ctx)
			reply.State = bus.StateDraining
		case bus.CmdStatus:
			reply.State = s.State()
		default:
			reply.Error = "unknown command " + c.Cmd
		}
	}
	reply.Conns = int(s.stats.Conns.Load())
	b, _ := json.Marshal(reply)
	_ = m.Respond(b)
}
