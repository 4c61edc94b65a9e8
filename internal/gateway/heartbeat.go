package gateway

import (
	"time"
)

// Heartbeats: liveness a viewer can see.
//
// A gateway that hangs (a long GC pause, a VM paused by its host, SIGSTOP)
// keeps its sockets open, so its viewers cannot tell it from a quiet room.
// The welcome therefore promises a frame at least every HeartbeatInterval
// H (hb_ms), and a room that pushed nothing for 15/16 of it gets one small
// shared frame, {"type":"hb"} (15 bytes on the wire), written to all its
// members like any room frame. A busy room never gets one: its frames are
// the proof. A client that hears nothing for LivenessFactor × hb_ms leaves
// and resumes elsewhere with since= (docs/PROTOCOL.md).
//
// The cost is per quiet room member, one write system call per interval:
// the loop runs every eighth of the interval over the hosted rooms, not
// over the connections, and encodes nothing. With an eighth-interval tick
// and a 15/16 threshold, a quiet room gets exactly one heartbeat per
// interval (the heartbeat counts as the room's last frame) and its viewers
// never wait more than 17/16 of it between two frames, which lets clients
// leave after 1.75 intervals with most of a second of slack. Rooms, not
// connections, keep the time of their last frame; a viewer who joined a
// quiet room gets its first heartbeat within about one interval of its
// welcome.
//
// A gateway cut off from NATS for longer than HeartbeatNATSGrace stops
// them: it is alive but cannot deliver, and its viewers are better served
// elsewhere. A NATS reconnect (about 1.5 s to a hung node, bus.Connect)
// stays well inside the grace.

// heartbeatLoop sends heartbeats to the members of quiet rooms.
func (s *Server) heartbeatLoop() {
	every := s.cfg.HeartbeatInterval / 8
	quiet := s.cfg.HeartbeatInterval * 15 / 16
	t := time.NewTicker(every)
	defer t.Stop()
	var rooms []*room
	var members []*conn
	var downSince time.Time
	for {
		select {
		case <-s.ctx.Done():
			return
		case now := <-t.C:
			if !s.cfg.NC.IsConnected() {
				if downSince.IsZero() {
					downSince = now
				}
				if now.Sub(downSince) > s.cfg.HeartbeatNATSGrace {
					continue
				}
			} else {
				downSince = time.Time{}
			}
			rooms = s.hub.allRooms(rooms[:0])
			for _, r := range rooms {
				members = s.heartbeatRoom(r, now, quiet, members[:0])
				clear(members)
			}
			clear(rooms)
		}
	}
}

// heartbeatRoom sends a heartbeat to r's members if r sent them nothing for
// quiet. members is a reusable buffer, returned.
func (s *Server) heartbeatRoom(r *room, now time.Time, quiet time.Duration, members []*conn) []*conn {
	n := now.UnixNano()
	if n-r.sentAt.Load() < int64(quiet) {
		return members
	}
	r.mu.Lock()
	if r.started && !r.dead {
		members = append(members, r.members...)
	}
	r.mu.Unlock()
	if len(members) == 0 {
		return members
	}
	r.sentAt.Store(n)
	s.stats.Heartbeats.Add(int64(len(members)))
	s.writeAll(heartbeatFrame, members)
	return members
}
