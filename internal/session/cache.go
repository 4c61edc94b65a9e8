package session

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/liveroom/liveroom/internal/protocol"
)

// Cache holds every room's current session in memory, kept up to date by a
// watch of the bucket, so stamping a message costs a map lookup and never a
// request. Create it with NewCache and run Run. The watch opens on the first
// Current call, so a process that never stamps a message never watches; that
// first call waits up to FirstWait for the initial values. Current is safe
// for concurrent use.
type Cache struct {
	js  jetstream.JetStream
	log *slog.Logger

	wantOnce sync.Once
	want     chan struct{} // closed by the first Current
	readyCh  chan struct{} // closed when the first watch is in

	mu    sync.RWMutex
	rooms map[protocol.Room]Session
}

// FirstWait bounds how long the first Current call waits for the watch.
const FirstWait = 2 * time.Second

// NewCache returns a Cache reading the bucket through js. It does no I/O.
func NewCache(js jetstream.JetStream, log *slog.Logger) *Cache {
	if log == nil {
		log = slog.Default()
	}
	return &Cache{js: js, log: log.With("component", "sessions"), rooms: map[protocol.Room]Session{},
		want: make(chan struct{}), readyCh: make(chan struct{})}
}

// Current returns the running session of room.
func (c *Cache) Current(room protocol.Room) (Session, bool) {
	c.open()
	c.mu.RLock()
	s, ok := c.rooms[room]
	c.mu.RUnlock()
	return s, ok
}

// Live returns every running session, in no order.
func (c *Cache) Live() []Session {
	c.open()
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make([]Session, 0, len(c.rooms))
	for _, s := range c.rooms {
		out = append(out, s)
	}
	return out
}

// open starts the watch on first use and waits up to FirstWait for it.
func (c *Cache) open() {
	c.wantOnce.Do(func() {
		close(c.want)
		select {
		case <-c.readyCh:
		case <-time.After(FirstWait):
			c.log.Warn("sessions not loaded yet; messages go out without a session offset")
		}
	})
}

// Ready reports whether the cache has read the bucket once.
func (c *Cache) Ready() bool {
	select {
	case <-c.readyCh:
		return true
	default:
		return false
	}
}

// Run watches the bucket until ctx ends, re-opening the watch after an
// error (the bucket may not exist yet, or NATS may be reconnecting).
func (c *Cache) Run(ctx context.Context) {
	select {
	case <-ctx.Done():
		return
	case <-c.want:
	}
	for ctx.Err() == nil {
		err := c.watch(ctx)
		if err != nil && ctx.Err() == nil {
			c.log.Warn("session watch stopped; retrying", "err", err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

func (c *Cache) watch(ctx context.Context) error {
	kv, err := c.js.KeyValue(ctx, Bucket)
	if err != nil {
		return err
	}
	w, err := kv.Watch(ctx, "cur.*")
	if err != nil {
		return err
	}
	defer func() { _ = w.Stop() }()
	fresh := map[protocol.Room]Session{}
	initial := true
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-w.Updates():
			if !ok {
				return errors.New("watch closed")
			}
			if e == nil {
				// The initial values are in: swap them in at once so a
				// re-opened watch forgets sessions stopped meanwhile.
				c.mu.Lock()
				c.rooms = fresh
				if !c.Ready() {
					close(c.readyCh)
				}
				c.mu.Unlock()
				initial = false
				continue
			}
			room, err := protocol.ParseRoom(strings.TrimPrefix(e.Key(), "cur."))
			if err != nil {
				continue
			}
			var s Session
			live := e.Operation() == jetstream.KeyValuePut && json.Unmarshal(e.Value(), &s) == nil
			if initial {
				if live {
					fresh[room] = s
				}
				continue
			}
			c.mu.Lock()
			if live {
				c.rooms[room] = s
			} else {
				delete(c.rooms, room)
			}
			c.mu.Unlock()
		}
	}
}
