package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/liveroom/liveroom/internal/auth"
	"github.com/liveroom/liveroom/internal/bus"
	"github.com/liveroom/liveroom/internal/moderation"
	"github.com/liveroom/liveroom/internal/protocol"
)

// closeRoomDelay is how long after a room is closed its viewers are
// disconnected: time for the reliable "room closed" notice, published just
// before the state changed, to reach them through the room's consumer.
const closeRoomDelay = time.Second

// startModeration loads the moderation cache (its watch then applies bans
// and room closing to this gateway's connections) and subscribes to user
// notices.
func (s *Server) startModeration(ctx context.Context) error {
	c, err := moderation.NewCache(ctx, moderation.CacheConfig{JS: s.cfg.JS, OnChange: s.onModeration, Logger: s.log})
	if err != nil {
		return err
	}
	sub, err := s.cfg.NC.Subscribe(bus.UserWildcard, s.serveUserNotice)
	if err != nil {
		c.Close()
		return fmt.Errorf("cannot subscribe to user notices: %w", err)
	}
	s.mod, s.userSub = c, sub
	return nil
}

func (s *Server) stopModeration() {
	if s.userSub != nil {
		_ = s.userSub.Unsubscribe()
	}
	if s.mod != nil {
		s.mod.Close()
	}
}

// admitJoin refuses a banned user and, for everyone but admins, a closed
// room, before the upgrade.
func (s *Server) admitJoin(id protocol.Room, who auth.Identity) *protocol.Error {
	if s.mod == nil {
		return nil
	}
	if b, ok := s.mod.Banned(id, who.User, time.Now()); ok && moderation.Sanctionable(who) {
		return moderation.BannedError(b)
	}
	if s.mod.Room(id).Closed && who.Role != protocol.RoleAdmin {
		return moderation.RoomClosedError()
	}
	return nil
}

// members returns the local connections in room id, of user when user is
// not empty.
func (s *Server) members(id protocol.Room, user protocol.User) []*conn {
	r := s.hub.lookup(id)
	if r == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*conn
	for _, c := range r.members {
		if user == "" || c.who.User == user {
			out = append(out, c)
		}
	}
	return out
}

// onModeration applies a change seen by the cache's watch, within the watch
// goroutine (so it must not block): a ban closes the user's connections to
// the room now and drops their danmaku from its history; closing a room
// disconnects its viewers after closeRoomDelay.
func (s *Server) onModeration(ch moderation.Change) {
	switch {
	case ch.Kind == moderation.KindBan && !ch.Deleted && ch.Sanction.Active(time.Now()):
		if r := s.hub.lookup(ch.Room); r != nil {
			r.forgetUser(ch.User)
		}
		for _, c := range s.members(ch.Room, ch.User) {
			if !moderation.Sanctionable(c.who) {
				continue // an admin connection under that user id
			}
			c.closeWith(protocol.CodeBanned, moderation.BannedText(ch.Sanction.UntilMS))
		}
	case ch.Kind == moderation.KindRoom && ch.State.Closed && !ch.Before.Closed:
		s.goLoop(func() {
			select {
			case <-s.ctx.Done():
				return
			case <-time.After(closeRoomDelay):
			}
			if !s.mod.Room(ch.Room).Closed {
				return // reopened meanwhile
			}
			n := 0
			for _, c := range s.members(ch.Room, "") {
				if c.who.Role != protocol.RoleAdmin {
					c.closeWith(protocol.CodeRoomClosed, "the room was closed")
					n++
				}
			}
			s.log.Info("room closed", "room", ch.Room, "viewers", n)
		})
	}
}

// serveUserNotice delivers a notice published on lr.user.<user> to that
// user's connections in the notice's room; a kick closes them instead.
func (s *Server) serveUserNotice(m *nats.Msg) {
	user, ok := bus.UserFromSubject(m.Subject)
	if !ok {
		return
	}
	var n protocol.Message
	if err := json.Unmarshal(m.Data, &n); err != nil || n.Type != protocol.TypeNotice {
		s.log.Warn("ignoring bad user notice", "user", user)
		return
	}
	room, err := protocol.ParseRoom(n.Room)
	if err != nil {
		return
	}
	conns := s.members(room, user)
	if n.Action == moderation.ActionKick {
		for _, c := range conns {
			if !moderation.Sanctionable(c.who) {
				continue
			}
			c.closeWith(protocol.CodeKicked, "you were removed from the room; you may join again")
		}
		return
	}
	if len(conns) == 0 {
		return
	}
	f := &frame{b: newTextFrame(func(b []byte) []byte { return protocol.AppendBatch(b, room, 0, [][]byte{m.Data}) }, len(m.Data)+64), msgs: 1}
	for _, c := range conns {
		c.send(f)
	}
}
