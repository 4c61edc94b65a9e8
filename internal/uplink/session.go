package uplink

import (
	"context"
	"sync"

	"github.com/liveroom/liveroom/internal/protocol"
)

// stampSession sets m's live session and offset when its room is live. The
// sessions come from an in-memory cache kept by a bucket watch (see
// session.Cache), so a send never waits for a lookup.
func (s *Server) stampSession(m *protocol.Message) {
	cur, ok := s.sessions.Current(protocol.Room(m.Room))
	if !ok {
		return
	}
	m.Session = cur.ID
	m.OffsetMS = cur.Offset(m.TS)
}

// runSessions starts the session watch for as long as Run runs; the
// returned func stops it and waits.
func (s *Server) runSessions(ctx context.Context) func() {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { s.sessions.Run(ctx) })
	return func() {
		cancel()
		wg.Wait()
	}
}

// StampSession sets m's live session and offset_ms when its room is live,
// for messages other components publish into a room (moderation notices).
func (s *Server) StampSession(m *protocol.Message) { s.stampSession(m) }

// LiveSession returns the id of room's live session as this uplink sees it,
// or "" when the room is not live (tests wait on it after a start).
func (s *Server) LiveSession(room protocol.Room) string {
	cur, _ := s.sessions.Current(room)
	return cur.ID
}
