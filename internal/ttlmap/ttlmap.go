// Package ttlmap is a sharded map with expiring entries and a memory bound:
// the shape of the verified-token cache (internal/auth), the per-key rate
// limiters and the slow-mode memory (internal/uplink), which were three
// hand-written copies of it.
//
// Keys spread over independent shards, each with its own lock, so that
// concurrent callers rarely contend. Each shard holds at most PerShard
// entries: inserting a new key into a full shard first sweeps that shard's
// expired entries and then, if that freed too little, drops arbitrary ones
// (Go's map order is random) down to LowWater. A flood of distinct keys thus
// costs bounded memory; what is dropped is the owner's to define by Expired.
//
// The map never runs a goroutine or a timer: expiry happens when the owner
// calls Sweep, when Get meets an expired entry, and when a full shard needs
// room.
package ttlmap

import (
	"hash/maphash"
	"sync"
	"time"
)

// Op is what a Do callback asks the map to do with the key's entry.
type Op uint8

const (
	// Keep leaves the map as it is: an existing entry keeps its value
	// (changes made through a pointer V are kept, being in the pointee),
	// an absent key stays absent.
	Keep Op = iota
	// Store stores the value the callback returned under the key,
	// inserting it if it was absent.
	Store
	// Delete removes the key's entry, if any. OnEvict is not called: the
	// caller decided it.
	Delete
)

// Config describes a Map. Shards, PerShard and Expired are required.
type Config[K comparable, V any] struct {
	// Shards is the number of independently locked shards, a power of two
	// (the shard index is then a mask, not a division: the hit path
	// measured the difference).
	Shards int
	// PerShard bounds the entries of one shard; the map holds at most
	// Shards × PerShard entries.
	PerShard int
	// LowWater is how many entries a full shard keeps when a sweep of its
	// expired entries did not free enough and arbitrary entries must go:
	// PerShard-1 (drop one per insert) when zero or not below PerShard.
	// A lower mark amortises the sweep over many inserts.
	LowWater int
	// Hash maps a key to its shard, Hash(key) % Shards. Nil means
	// hash/maphash with a seed of the map's own.
	Hash func(K) uint64
	// Expired reports whether an entry holding v may be forgotten at now.
	// It runs under the shard's lock; it may update what a pointer V
	// points to. (v is a copy, not a pointer: a pointer would make every
	// Get allocate.)
	Expired func(v V, now time.Time) bool
	// OnEvict, if not nil, is called under the shard's lock for each entry
	// the map drops on its own (expired, or pushed out by the bound), with
	// the index of its shard.
	OnEvict func(shard int, k K, v V)
}

// Map is a sharded, bounded map whose entries expire; see the package
// comment. Its methods are safe for concurrent use. The callbacks (Config's
// and Do's) run under a shard's lock and must not call the Map.
type Map[K comparable, V any] struct {
	cfg    Config[K, V]
	mask   uint64 // Shards-1
	shards []shard[K, V]
}

type shard[K comparable, V any] struct {
	mu sync.Mutex
	m  map[K]V
}

// New returns an empty Map. It panics on a Config without Shards (a power
// of two), PerShard or Expired: those are constants of the calling code,
// not input.
func New[K comparable, V any](cfg Config[K, V]) *Map[K, V] {
	if cfg.Shards < 1 || cfg.Shards&(cfg.Shards-1) != 0 || cfg.PerShard < 1 || cfg.Expired == nil {
		panic("ttlmap: Config needs Shards a power of two, PerShard ≥ 1 and Expired")
	}
	if cfg.LowWater <= 0 || cfg.LowWater >= cfg.PerShard {
		cfg.LowWater = cfg.PerShard - 1
	}
	if cfg.Hash == nil {
		seed := maphash.MakeSeed()
		cfg.Hash = func(k K) uint64 { return maphash.Comparable(seed, k) }
	}
	m := &Map[K, V]{cfg: cfg, mask: uint64(cfg.Shards - 1), shards: make([]shard[K, V], cfg.Shards)}
	for i := range m.shards {
		m.shards[i].m = make(map[K]V)
	}
	return m
}

// Shard returns the index of key's shard, in [0, Shards).
func (m *Map[K, V]) Shard(key K) int {
	return int(m.cfg.Hash(key) & m.mask)
}

// Get returns key's value if it is present and not expired at now. An
// expired entry is removed.
func (m *Map[K, V]) Get(key K, now time.Time) (V, bool) {
	i := m.Shard(key)
	sh := &m.shards[i]
	sh.mu.Lock()
	v, ok := sh.m[key]
	if ok && m.cfg.Expired(v, now) {
		delete(sh.m, key)
		if m.cfg.OnEvict != nil {
			m.cfg.OnEvict(i, key, v)
		}
		var zero V
		v, ok = zero, false
	}
	sh.mu.Unlock()
	return v, ok
}

// Do runs fn under key's shard lock with the key's current value (the zero
// V and ok false when absent; an expired entry not yet swept is present)
// and applies the Op fn returns, with the value it returns for Store.
// Storing a new key into a full shard first makes room (see the package
// comment), sweeping with now. Callers keep their own semantics in fn:
// check and update, insert or not, atomically. (Values go in and out of fn
// by copy: a pointer to a local would make every call allocate.)
func (m *Map[K, V]) Do(key K, now time.Time, fn func(v V, ok bool) (V, Op)) {
	i := m.Shard(key)
	sh := &m.shards[i]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	v, ok := sh.m[key]
	v, op := fn(v, ok)
	switch op {
	case Store:
		if !ok && len(sh.m) >= m.cfg.PerShard {
			m.makeRoomLocked(i, now)
		}
		sh.m[key] = v
	case Delete:
		if ok {
			delete(sh.m, key)
		}
	}
}

// Put stores v under key, as Do with Store.
func (m *Map[K, V]) Put(key K, v V, now time.Time) {
	m.Do(key, now, func(V, bool) (V, Op) { return v, Store })
}

// Sweep removes every entry expired at now and returns how many.
func (m *Map[K, V]) Sweep(now time.Time) int {
	n := 0
	for i := range m.shards {
		sh := &m.shards[i]
		sh.mu.Lock()
		n += m.sweepLocked(i, now)
		sh.mu.Unlock()
	}
	return n
}

// Len returns the number of entries, expired ones not yet removed included.
func (m *Map[K, V]) Len() int {
	n := 0
	for i := range m.shards {
		n += m.ShardLen(i)
	}
	return n
}

// ShardLen returns the number of entries in shard i.
func (m *Map[K, V]) ShardLen(i int) int {
	sh := &m.shards[i]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return len(sh.m)
}

// Locked runs fn holding shard i's lock. It lets an owner keep state of its
// own per shard (an index of some entries, say) guarded by the same lock as
// the entries, which Do's and Config's callbacks also hold.
func (m *Map[K, V]) Locked(i int, fn func()) {
	sh := &m.shards[i]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	fn()
}

func (m *Map[K, V]) sweepLocked(i int, now time.Time) int {
	sh := &m.shards[i]
	n := 0
	for k, v := range sh.m {
		if m.cfg.Expired(v, now) {
			m.evictLocked(i, k, v)
			n++
		}
	}
	return n
}

// makeRoomLocked sweeps shard i and, if it still holds more than LowWater
// entries, drops arbitrary ones down to LowWater: a flood of distinct live
// keys costs the dropped owners their state (a fresh entry next time), and
// memory stays bounded, which matters more.
func (m *Map[K, V]) makeRoomLocked(i int, now time.Time) {
	sh := &m.shards[i]
	m.sweepLocked(i, now)
	for k, v := range sh.m {
		if len(sh.m) <= m.cfg.LowWater {
			break
		}
		m.evictLocked(i, k, v)
	}
}

func (m *Map[K, V]) evictLocked(i int, k K, v V) {
	delete(m.shards[i].m, k)
	if m.cfg.OnEvict != nil {
		m.cfg.OnEvict(i, k, v)
	}
}
