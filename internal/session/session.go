// Package session records the live sessions of rooms: an anchor starts and
// stops a room's live session, each session has an id and a start time, and
// every message sent while it runs carries its offset in the session (set by
// the uplink from a Cache). Sessions live in the JetStream key-value bucket
// Bucket, so every role sees the same ones and none is ever asked remotely on
// the send path.
//
// Keys of the bucket:
//
//	cur.<room>          the room's current session (deleted when it stops)
//	s.<room>.<session>  every session of the room, running or stopped
package session

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/liveroom/liveroom/internal/bus"
	"github.com/liveroom/liveroom/internal/protocol"
)

// Bucket is the key-value bucket holding sessions (created by
// bus.EnsureStreams).
const Bucket = bus.SessionsKV

// Errors callers branch on.
var (
	// ErrNotLive is returned by Stop and Current for a room with no running
	// session.
	ErrNotLive = errors.New("the room is not live")
	// ErrNotFound is returned by Get for an unknown session.
	ErrNotFound = errors.New("no such session")
)

// Session is one live session of a room. StoppedMS is 0 while it runs.
type Session struct {
	ID        string `json:"id"`
	Room      string `json:"room"`
	StartedMS int64  `json:"started_ms"`
	StoppedMS int64  `json:"stopped_ms,omitempty"`
	// By is the user who started it.
	By string `json:"by,omitempty"`
}

// Live reports whether the session still runs.
func (s Session) Live() bool { return s.StoppedMS == 0 }

// Offset is the offset in the session of a message sent at tsMS (Unix ms),
// never negative.
func (s Session) Offset(tsMS int64) int64 { return max(tsMS-s.StartedMS, 0) }

func curKey(room protocol.Room) string             { return "cur." + string(room) }
func sessKey(room protocol.Room, id string) string { return "s." + string(room) + "." + id }

// Registry starts, stops and lists sessions. It is safe for concurrent use.
type Registry struct {
	kv  jetstream.KeyValue
	now func() time.Time
}

// NewRegistry returns a Registry over the bucket kv (js.KeyValue(ctx, Bucket)).
func NewRegistry(kv jetstream.KeyValue) *Registry {
	return &Registry{kv: kv, now: time.Now}
}

// NewID returns a session id that sorts by start time: 20261127-101500-k3x9.
func NewID(start time.Time) string {
	const letters = "abcdefghijklmnopqrstuvwxyz0123456789"
	var b [4]byte
	_, _ = rand.Read(b[:])
	suffix := make([]byte, len(b))
	for i, c := range b {
		suffix[i] = letters[int(c)%len(letters)]
	}
	return start.UTC().Format("20060102-150405") + "-" + string(suffix)
}

// Start starts a session of room by user. If one already runs it is
// returned with started false: starting twice is harmless.
func (r *Registry) Start(ctx context.Context, room protocol.Room, user protocol.User) (s Session, started bool, err error) {
	now := r.now()
	s = Session{ID: NewID(now), Room: string(room), StartedMS: now.UnixMilli(), By: string(user)}
	b, _ := json.Marshal(s)
	// The session record is written first: a current session always has
	// its record, so listing never misses a running one.
	if _, err := r.kv.Put(ctx, sessKey(room, s.ID), b); err != nil {
		return Session{}, false, fmt.Errorf("cannot store session: %w", err)
	}
	if _, err := r.kv.Create(ctx, curKey(room), b); err != nil {
		_ = r.kv.Purge(ctx, sessKey(room, s.ID))
		if errors.Is(err, jetstream.ErrKeyExists) {
			cur, cerr := r.Current(ctx, room)
			if cerr == nil {
				return cur, false, nil
			}
		}
		return Session{}, false, fmt.Errorf("cannot start session: %w", err)
	}
	return s, true, nil
}

// Stop stops the running session of room and returns it, or ErrNotLive.
func (r *Registry) Stop(ctx context.Context, room protocol.Room) (Session, error) {
	return r.StopIf(ctx, room, nil)
}

// StopIf is Stop that first asks allow (when not nil) about the running
// session and returns its error, unwrapped, when it refuses. The session
// is read once, and a session started meanwhile is not stopped.
func (r *Registry) StopIf(ctx context.Context, room protocol.Room, allow func(Session) error) (Session, error) {
	s, rev, err := r.get(ctx, curKey(room), ErrNotLive)
	if err != nil {
		return Session{}, err
	}
	if allow != nil {
		if err := allow(s); err != nil {
			return Session{}, err
		}
	}
	s.StoppedMS = max(r.now().UnixMilli(), s.StartedMS)
	b, _ := json.Marshal(s)
	if _, err := r.kv.Put(ctx, sessKey(room, s.ID), b); err != nil {
		return Session{}, fmt.Errorf("cannot store session: %w", err)
	}
	if err := r.kv.Delete(ctx, curKey(room), jetstream.LastRevision(rev)); err != nil {
		return Session{}, fmt.Errorf("cannot stop session: %w", err)
	}
	return s, nil
}

// Current returns the running session of room, or ErrNotLive.
func (r *Registry) Current(ctx context.Context, room protocol.Room) (Session, error) {
	s, _, err := r.get(ctx, curKey(room), ErrNotLive)
	return s, err
}

// Get returns one session of room, or ErrNotFound. id must be a valid id
// (protocol.ValidID): it becomes a key token.
func (r *Registry) Get(ctx context.Context, room protocol.Room, id string) (Session, error) {
	if !protocol.ValidID(id) {
		return Session{}, ErrNotFound
	}
	s, _, err := r.get(ctx, sessKey(room, id), ErrNotFound)
	return s, err
}

// get reads and decodes the session at key, with the entry's revision; a
// missing or deleted key is missing.
func (r *Registry) get(ctx context.Context, key string, missing error) (Session, uint64, error) {
	e, err := r.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return Session{}, 0, missing
	}
	if err != nil {
		return Session{}, 0, fmt.Errorf("cannot read session: %w", err)
	}
	var s Session
	if err := json.Unmarshal(e.Value(), &s); err != nil {
		return Session{}, 0, fmt.Errorf("cannot decode session: %w", err)
	}
	return s, e.Revision(), nil
}

// List returns the sessions of room, newest first.
func (r *Registry) List(ctx context.Context, room protocol.Room) ([]Session, error) {
	w, err := r.kv.Watch(ctx, "s."+string(room)+".*", jetstream.IgnoreDeletes())
	if err != nil {
		return nil, fmt.Errorf("cannot list sessions: %w", err)
	}
	defer func() { _ = w.Stop() }()
	var out []Session
	for {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("cannot list sessions: %w", ctx.Err())
		case e, ok := <-w.Updates():
			if !ok || e == nil {
				slices.SortFunc(out, func(a, b Session) int {
					return cmp.Or(cmp.Compare(b.StartedMS, a.StartedMS), cmp.Compare(b.ID, a.ID))
				})
				return out, nil
			}
			var s Session
			if json.Unmarshal(e.Value(), &s) == nil {
				out = append(out, s)
			}
		}
	}
}

// Purge removes a session's record (retention). A running session is kept.
func (r *Registry) Purge(ctx context.Context, room protocol.Room, id string) error {
	if !protocol.ValidID(id) {
		return ErrNotFound
	}
	return r.kv.Purge(ctx, sessKey(room, id))
}
