package announce

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/liveroom/liveroom/internal/bus"
	"github.com/liveroom/liveroom/internal/protocol"
)

// ErrNotFound is returned by Delete for an id that holds no announcement.
var ErrNotFound = errors.New("no such announcement")

// Config configures a Store.
type Config struct {
	// JS opens the bucket bus.AnnouncementsKV, which must exist
	// (bus.EnsureStreams creates it). Required.
	JS     jetstream.JetStream
	Logger *slog.Logger
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Store reads and writes the announcements. Reads come from a copy kept
// current by a watch of the bucket; writes go to the bucket and are applied
// to the copy at once, so that a process reads its own writes. Safe for
// concurrent use.
type Store struct {
	js  jetstream.JetStream
	log *slog.Logger
	now func() time.Time

	mu sync.RWMutex
	m  map[string]Announcement
	kv jetstream.KeyValue // nil until the bucket is found

	// wmu serialises this process's writes, so that its count of live
	// announcements holds against its own concurrent creates. Writers in
	// other processes may still race it by one or two: MaxActive is a
	// bound on the bucket's growth, not an exact quota.
	wmu sync.Mutex

	cancel context.CancelFunc
	done   chan struct{}
}

// ErrNotReady is returned by writes while the bucket does not exist yet.
var ErrNotReady = errors.New("announcements are not available yet: no uplink (or serve) has created their bucket")

// Open opens the bucket, loads its announcements and starts the watch, and
// returns once the copy holds the bucket's contents (or fails when ctx ends
// first). When the bucket cannot be opened yet (the uplink, which creates
// it, has not run; JetStream is still electing a leader), Open returns at
// once a Store that holds no announcement and looks for the bucket every
// second in the background; until it is found, writes fail with
// ErrNotReady. Close stops the watch.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if cfg.JS == nil {
		return nil, errors.New("cannot open announcements: JS is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	// Any failure to find the bucket (not created yet, or JetStream still
	// electing its leader in a cluster that just formed) is retried in
	// the background: announcements must never keep a role from starting.
	kv, err := cfg.JS.KeyValue(ctx, bus.AnnouncementsKV)
	runCtx, cancel := context.WithCancel(context.Background())
	s := &Store{js: cfg.JS, log: cfg.Logger.With("component", "announce"), now: cfg.Now, m: map[string]Announcement{},
		cancel: cancel, done: make(chan struct{})}
	ready := make(chan struct{})
	if err != nil {
		kv = nil
	}
	go s.run(runCtx, kv, ready)
	if kv == nil {
		s.log.Info("the announcements bucket cannot be opened yet; looking for it every second", "bucket", bus.AnnouncementsKV, "err", err)
		return s, nil
	}
	select {
	case <-ready:
		return s, nil
	case <-ctx.Done():
		_ = s.Close()
		return nil, fmt.Errorf("cannot load bucket %s: %w", bus.AnnouncementsKV, ctx.Err())
	}
}

// Close stops the watch and waits for it. Idempotent.
func (s *Store) Close() error {
	s.cancel()
	<-s.done
	return nil
}

// run binds the bucket (waiting for it when kv is nil), then applies its
// watch until ctx ends; ready is closed once the copy holds the bucket.
func (s *Store) run(ctx context.Context, kv jetstream.KeyValue, ready chan struct{}) {
	defer close(s.done)
	for kv == nil {
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		kv, _ = s.js.KeyValue(actx, bus.AnnouncementsKV)
		cancel()
	}
	for {
		w, err := kv.WatchAll(ctx)
		if err == nil {
			s.mu.Lock()
			s.kv = kv
			s.mu.Unlock()
			bus.ApplyUpdates(w, ready, func(e jetstream.KeyValueEntry, _ bool) { s.apply(e) })
			return
		}
		s.log.Warn("cannot watch the announcements; trying again", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

// bucket returns the bound bucket, nil while it is not found.
func (s *Store) bucket() jetstream.KeyValue {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.kv
}

func (s *Store) apply(e jetstream.KeyValueEntry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e.Operation() != jetstream.KeyValuePut {
		delete(s.m, e.Key())
		return
	}
	var a Announcement
	if err := json.Unmarshal(e.Value(), &a); err != nil || !a.valid() || a.ID != e.Key() {
		s.log.Warn("ignoring an announcement that does not have the documented shape", "key", e.Key())
		delete(s.m, e.Key())
		return
	}
	s.m[a.ID] = a
}

// List returns the announcements that have not expired at now, by At then
// id.
func (s *Store) List(now time.Time) []Announcement {
	s.mu.RLock()
	out := make([]Announcement, 0, len(s.m))
	for _, a := range s.m {
		if !a.Expired(now) {
			out = append(out, a)
		}
	}
	s.mu.RUnlock()
	slices.SortFunc(out, func(a, b Announcement) int { return cmp.Or(a.At.Compare(b.At), cmp.Compare(a.ID, b.ID)) })
	return out
}

// Create stores a (built by Request.Build). It first deletes the expired
// announcements, then refuses with 409 when MaxActive are live.
func (s *Store) Create(ctx context.Context, a Announcement) error {
	if !a.valid() {
		return errors.New("cannot store an announcement that was not built by Request.Build")
	}
	b, err := json.Marshal(a)
	if err != nil {
		return fmt.Errorf("cannot encode announcement: %w", err)
	}
	kv := s.bucket()
	if kv == nil {
		return ErrNotReady
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.purgeExpired(ctx, kv)
	if n := len(s.List(s.now())); n >= MaxActive {
		return protocol.Errorf(http.StatusConflict, protocol.CodeTooManyAnnouncements, "",
			fmt.Sprintf("%d announcements are already scheduled, the most there may be; delete one first", n))
	}
	if _, err := kv.Create(ctx, a.ID, b); err != nil {
		return fmt.Errorf("cannot store announcement %s: %w", a.ID, err)
	}
	s.mu.Lock()
	s.m[a.ID] = a
	s.mu.Unlock()
	return nil
}

// Delete removes announcement id; ErrNotFound when it holds none (or an
// expired one, which is deleted all the same), or while the bucket is not
// found.
func (s *Store) Delete(ctx context.Context, id string) error {
	kv := s.bucket()
	if kv == nil {
		return ErrNotFound
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.RLock()
	a, ok := s.m[id]
	s.mu.RUnlock()
	if !ok {
		return ErrNotFound
	}
	if err := kv.Delete(ctx, id); err != nil {
		return fmt.Errorf("cannot delete announcement %s: %w", id, err)
	}
	s.mu.Lock()
	delete(s.m, id)
	s.mu.Unlock()
	if a.Expired(s.now()) {
		return ErrNotFound
	}
	return nil
}

// purgeExpired deletes the expired announcements from the bucket (purge:
// no delete marker is left to count). Errors are logged: an expired entry
// left behind is ignored by every reader anyway. The caller holds s.wmu.
func (s *Store) purgeExpired(ctx context.Context, kv jetstream.KeyValue) {
	now := s.now()
	s.mu.RLock()
	var old []string
	for id, a := range s.m {
		if a.Expired(now) {
			old = append(old, id)
		}
	}
	s.mu.RUnlock()
	for _, id := range old {
		if err := kv.Purge(ctx, id); err != nil {
			s.log.Warn("cannot delete an expired announcement", "id", id, "err", err)
			continue
		}
		s.mu.Lock()
		delete(s.m, id)
		s.mu.Unlock()
	}
}
