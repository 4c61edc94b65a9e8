package gateway

import (
	"sync"

	"github.com/liveroom/liveroom/internal/protocol"
)

// Lock order. A goroutine that holds a lock may take only locks further
// down this list, never one further up:
//
//	Server.admitMu   admission against Close (handshake.go, Close)
//	shard.mu         a shard's rooms and connections (hub.go)
//	room.mu          a room's members, pending messages and window (room.go)
//	conn.mu          a connection's socket writes and backlog (conn.go);
//	                 a join writes the welcome and catch-up under room.mu
//	poller.mu        a poller's reap list (netpoll_linux.go); conn.close
//	                 releases conn.mu before it hands over to the poller
//
// Leaves, held alone: shard.dirtyMu, netpoll.mu, edge's per-address map,
// the starter's and the repair queue's locks. reap leaves a room, so it
// never runs under room.mu; flushes and heartbeats copy a room's members
// under room.mu and write after releasing it.

// hub is the gateway's local registry: which of its own connections sit in
// which room. It is sharded so that joins, leaves and message routing for
// different rooms do not contend; nothing on the push path asks anyone else.
type hub struct {
	shards []*shard
}

type shard struct {
	mu    sync.RWMutex
	rooms map[protocol.Room]*room
	conns map[*conn]struct{}
	// dirty holds rooms with pending messages, flushed on the next tick.
	dirtyMu sync.Mutex
	dirty   []*room
}

func newHub(n int) *hub {
	h := &hub{shards: make([]*shard, n)}
	for i := range h.shards {
		h.shards[i] = &shard{rooms: make(map[protocol.Room]*room), conns: make(map[*conn]struct{})}
	}
	return h
}

// roomShard picks a room's shard with FNV-1a.
func (h *hub) roomShard(id protocol.Room) *shard { return h.shards[h.roomShardIndex(id)] }

func (h *hub) roomShardIndex(id protocol.Room) int {
	x := uint32(2166136261)
	for i := 0; i < len(id); i++ {
		x ^= uint32(id[i])
		x *= 16777619
	}
	return int(x % uint32(len(h.shards)))
}

func (h *hub) connShard(c *conn) *shard { return h.shards[c.id%uint64(len(h.shards))] }

// lookup returns the room if this gateway hosts it.
func (h *hub) lookup(id protocol.Room) *room {
	s := h.roomShard(id)
	s.mu.RLock()
	r := s.rooms[id]
	s.mu.RUnlock()
	return r
}

// markDirty queues r for the next flush of its shard.
func (s *shard) markDirty(r *room) {
	s.dirtyMu.Lock()
	s.dirty = append(s.dirty, r)
	s.dirtyMu.Unlock()
}

// takeDirty swaps out the dirty list; buf is reused storage.
func (s *shard) takeDirty(buf []*room) []*room {
	s.dirtyMu.Lock()
	d := s.dirty
	s.dirty = buf[:0]
	s.dirtyMu.Unlock()
	return d
}

// allRooms returns a snapshot of all rooms.
func (h *hub) allRooms(dst []*room) []*room {
	for _, s := range h.shards {
		s.mu.RLock()
		for _, r := range s.rooms {
			dst = append(dst, r)
		}
		s.mu.RUnlock()
	}
	return dst
}

// allConns returns a snapshot of all connections.
func (h *hub) allConns(dst []*conn) []*conn {
	for _, s := range h.shards {
		s.mu.RLock()
		for c := range s.conns {
			dst = append(dst, c)
		}
		s.mu.RUnlock()
	}
	return dst
}
