// Package moderation holds what anchors and admins decide about a room: the
// room's anchor, slow mode, mute-all, closing, and per-user mutes and bans
// with an end time. Decisions are stored in the NATS key-value bucket
// bus.ModerationKV and cached in every uplink and gateway through a watch, so
// that checking a send or a join never asks anyone: it reads a map.
//
// Keys (room and user ids are validated before a key is built):
//
//	<room>.room          RoomState (anchor, slow mode, mute-all, closed)
//	<room>.mute.<user>   Sanction
//	<room>.ban.<user>    Sanction
//
// A sanction carries its end (until_ms) and simply stops applying then; the
// Service deletes expired keys later, which changes nothing for a reader.
package moderation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/liveroom/liveroom/internal/bus"
	"github.com/liveroom/liveroom/internal/protocol"
)

// RoomState is a room's controls.
type RoomState struct {
	// Anchor is the user who runs the room; empty until claimed or set.
	Anchor string `json:"anchor,omitempty"`
	// SlowModeS is the least interval between two danmaku of one user, in
	// seconds; 0 is off. Anchor and admins are exempt.
	SlowModeS int `json:"slow_mode_s,omitempty"`
	// MuteAll refuses danmaku from everyone but the anchor and admins.
	MuteAll bool `json:"mute_all,omitempty"`
	// Closed refuses joins (except admins') and sends; viewers are
	// disconnected when it is set.
	Closed bool `json:"closed,omitempty"`
	// Reason is the reason given when the room was closed.
	Reason string `json:"reason,omitempty"`
}

// Sanction is a mute or a ban of one user in one room.
type Sanction struct {
	// UntilMS is when it ends, Unix milliseconds.
	UntilMS int64 `json:"until_ms"`
	// DurationS is the duration asked for, so that a repeated request is
	// recognised as the same one and does not extend it.
	DurationS int64  `json:"duration_s"`
	Reason    string `json:"reason,omitempty"`
	By        string `json:"by,omitempty"`
	// AtMS is when it was set.
	AtMS int64 `json:"at_ms"`
}

// Active reports whether s applies at now.
func (s Sanction) Active(now time.Time) bool { return now.UnixMilli() < s.UntilMS }

// Kind is what a key holds.
type Kind string

// Kinds of keys.
const (
	KindRoom Kind = "room"
	KindMute Kind = "mute"
	KindBan  Kind = "ban"
)

// Change is one update seen by a Cache's watch.
type Change struct {
	Kind Kind
	Room protocol.Room
	// User is set for mutes and bans.
	User protocol.User
	// Deleted is true when the key was removed (unmute, unban, expiry).
	Deleted bool
	// State is the room's new state (KindRoom); Before is its previous one.
	State, Before RoomState
	// Sanction is the new mute or ban.
	Sanction Sanction
}

// roomKey, sanctionKey build bucket keys from validated ids.
func roomKey(room protocol.Room) string { return string(room) + ".room" }
func sanctionKey(room protocol.Room, kind Kind, user protocol.User) string {
	return string(room) + "." + string(kind) + "." + string(user)
}

// parseKey splits a key; ok is false for a key this package did not write.
func parseKey(key string) (kind Kind, room protocol.Room, user protocol.User, ok bool) {
	parts := strings.Split(key, ".")
	var err error
	switch {
	case len(parts) == 2 && parts[1] == string(KindRoom):
		room, err = protocol.ParseRoom(parts[0])
		return KindRoom, room, "", err == nil
	case len(parts) == 3 && (parts[1] == string(KindMute) || parts[1] == string(KindBan)):
		if room, err = protocol.ParseRoom(parts[0]); err != nil {
			return "", "", "", false
		}
		if user, err = protocol.ParseUser(parts[2]); err != nil {
			return "", "", "", false
		}
		return Kind(parts[1]), room, user, true
	}
	return "", "", "", false
}

type userKey struct {
	room protocol.Room
	user protocol.User
}

// Cache is a process's copy of the moderation bucket, kept current by a
// watch. Reads are lock-shared map lookups, safe for concurrent use.
type Cache struct {
	log      *slog.Logger
	onChange func(Change)

	mu    sync.RWMutex
	rooms map[protocol.Room]RoomState
	mutes map[userKey]Sanction
	bans  map[userKey]Sanction

	cancel context.CancelFunc
	done   chan struct{}
}

// CacheConfig configures a Cache.
type CacheConfig struct {
	// JS opens the bucket, which must exist (bus.EnsureStreams). Required.
	JS jetstream.JetStream
	// OnChange, when set, is called for every update after the initial
	// values, in order, from the watch goroutine; it must not block long.
	OnChange func(Change)
	Logger   *slog.Logger
}

// NewCache opens the bucket, loads every current value and starts the watch.
// It returns once the cache holds the bucket's contents or ctx ends. Close
// stops the watch.
func NewCache(ctx context.Context, cfg CacheConfig) (*Cache, error) {
	if cfg.JS == nil {
		return nil, errors.New("cannot create moderation cache: JS is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	kv, err := bus.OpenKV(ctx, cfg.JS, bus.ModerationKV)
	if err != nil {
		return nil, fmt.Errorf("cannot open bucket %s: %w", bus.ModerationKV, err)
	}
	wctx, cancel := context.WithCancel(context.Background())
	w, err := kv.WatchAll(wctx)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("cannot watch bucket %s: %w", bus.ModerationKV, err)
	}
	c := &Cache{
		log:      cfg.Logger.With("component", "moderation"),
		onChange: cfg.OnChange,
		rooms:    map[protocol.Room]RoomState{},
		mutes:    map[userKey]Sanction{},
		bans:     map[userKey]Sanction{},
		cancel:   cancel,
		done:     make(chan struct{}),
	}
	ready := make(chan struct{})
	go c.watch(w, ready)
	select {
	case <-ready:
		return c, nil
	case <-ctx.Done():
		c.Close()
		return nil, fmt.Errorf("cannot load bucket %s: %w", bus.ModerationKV, ctx.Err())
	}
}

// watch applies updates until Close.
func (c *Cache) watch(w jetstream.KeyWatcher, ready chan struct{}) {
	defer close(c.done)
	bus.ApplyUpdates(w, ready, func(e jetstream.KeyValueEntry, initial bool) {
		ch, ok := c.apply(e)
		if ok && !initial && c.onChange != nil {
			c.onChange(ch)
		}
	})
}

func (c *Cache) apply(e jetstream.KeyValueEntry) (Change, bool) {
	kind, room, user, ok := parseKey(e.Key())
	if !ok {
		c.log.Warn("ignoring unknown moderation key", "key", e.Key())
		return Change{}, false
	}
	ch := Change{Kind: kind, Room: room, User: user}
	ch.Deleted = e.Operation() != jetstream.KeyValuePut
	c.mu.Lock()
	defer c.mu.Unlock()
	switch kind {
	case KindRoom:
		ch.Before = c.rooms[room]
		if ch.Deleted {
			delete(c.rooms, room)
			return ch, true
		}
		if err := json.Unmarshal(e.Value(), &ch.State); err != nil {
			c.log.Warn("ignoring bad room state", "room", room, "err", err)
			return Change{}, false
		}
		c.rooms[room] = ch.State
	case KindMute, KindBan:
		m := c.sanctionsOf(kind)
		k := userKey{room, user}
		if ch.Deleted {
			delete(m, k)
			return ch, true
		}
		if err := json.Unmarshal(e.Value(), &ch.Sanction); err != nil {
			c.log.Warn("ignoring bad sanction", "room", room, "user", user, "err", err)
			return Change{}, false
		}
		m[k] = ch.Sanction
	}
	return ch, true
}

// storeLocal applies a write this process made before its watch echoes it,
// so that the next request here reads its own write (an anchor set, then
// acting). The echo applies the same value again.
func (c *Cache) storeLocal(kind Kind, room protocol.Room, user protocol.User, st RoomState, sn *Sanction) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch kind {
	case KindRoom:
		c.rooms[room] = st
	case KindMute, KindBan:
		m := c.sanctionsOf(kind)
		if sn == nil {
			delete(m, userKey{room, user})
		} else {
			m[userKey{room, user}] = *sn
		}
	}
}

// sanctionsOf returns the map of kind, KindMute or KindBan. The caller
// holds c.mu.
func (c *Cache) sanctionsOf(kind Kind) map[userKey]Sanction {
	if kind == KindBan {
		return c.bans
	}
	return c.mutes
}

// Close stops the watch and waits for it. Idempotent.
func (c *Cache) Close() {
	c.cancel()
	<-c.done
}

// Room returns room's state (the zero state when none was set).
func (c *Cache) Room(room protocol.Room) RoomState {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.rooms[room]
}

// Anchor returns room's anchor, or "" when it has none.
func (c *Cache) Anchor(room protocol.Room) protocol.User {
	return protocol.User(c.Room(room).Anchor)
}

// Muted returns user's mute in room when one applies at now.
func (c *Cache) Muted(room protocol.Room, user protocol.User, now time.Time) (Sanction, bool) {
	return c.sanction(c.mutes, room, user, now)
}

// Banned returns user's ban from room when one applies at now.
func (c *Cache) Banned(room protocol.Room, user protocol.User, now time.Time) (Sanction, bool) {
	return c.sanction(c.bans, room, user, now)
}

func (c *Cache) sanction(m map[userKey]Sanction, room protocol.Room, user protocol.User, now time.Time) (Sanction, bool) {
	c.mu.RLock()
	s, ok := m[userKey{room, user}]
	c.mu.RUnlock()
	if !ok || !s.Active(now) {
		return Sanction{}, false
	}
	return s, true
}

// Entry is one mute or ban, as listed by Sanctions.
type Entry struct {
	User string `json:"user"`
	Sanction
}

// Sanctions lists room's mutes and bans that apply at now, by user.
func (c *Cache) Sanctions(room protocol.Room, now time.Time) (mutes, bans []Entry) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	list := func(m map[userKey]Sanction) []Entry {
		out := []Entry{}
		for k, s := range m {
			if k.room == room && s.Active(now) {
				out = append(out, Entry{User: string(k.user), Sanction: s})
			}
		}
		sortEntries(out)
		return out
	}
	return list(c.mutes), list(c.bans)
}

// expired lists the keys of sanctions that ended before now.
func (c *Cache) expired(now time.Time) []string {
	c.mu.RLock()
	defer c.mu.RUnlock()
	var keys []string
	for k, s := range c.mutes {
		if !s.Active(now) {
			keys = append(keys, sanctionKey(k.room, KindMute, k.user))
		}
	}
	for k, s := range c.bans {
		if !s.Active(now) {
			keys = append(keys, sanctionKey(k.room, KindBan, k.user))
		}
	}
	return keys
}
