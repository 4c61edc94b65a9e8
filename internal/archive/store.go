// Package archive keeps every message of every live session for replay: a
// durable JetStream consumer on the live buffer stream (LR_LIVE) and one on
// the reliable stream (LR_RELIABLE) write them into a local ordered
// key-value store (bbolt), keyed so that a time window of a session is one
// range scan. It is a non-core consumer: it may stop or fall behind and
// the live path never notices; it catches up from the streams.
package archive

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/liveroom/liveroom/internal/lockfile"
	"github.com/liveroom/liveroom/internal/protocol"
)

// Source says which stream a record came from; with the stream sequence it
// identifies a record, so a redelivered message overwrites itself.
type Source byte

// Sources.
const (
	SourceLive     Source = 1
	SourceReliable Source = 2
)

// Record is one archived message.
type Record struct {
	Room     protocol.Room
	Session  string
	OffsetMS int64
	Source   Source
	Seq      uint64 // stream sequence
	Data     []byte // the message as viewers got it (JSON object)
}

// Meta describes one archived session.
type Meta struct {
	Room     string `json:"room"`
	Session  string `json:"session"`
	Messages int64  `json:"messages"`
	// LastOffsetMS is the largest offset archived.
	LastOffsetMS int64 `json:"last_offset_ms"`
	// WrittenMS is when the archive last wrote to the session (Unix ms);
	// retention counts from it.
	WrittenMS int64 `json:"written_ms"`
}

var (
	msgsBucket = []byte("msgs") // room → session → key(offset, source, seq) → message
	metaBucket = []byte("meta") // room "/" session → Meta
)

// keyLen is 8 bytes of offset, 1 of source, 8 of sequence, big-endian so
// that byte order is time order.
const keyLen = 17

func recordKey(dst []byte, offset int64, src Source, seq uint64) []byte {
	dst = binary.BigEndian.AppendUint64(dst, uint64(max(offset, 0)))
	dst = append(dst, byte(src))
	return binary.BigEndian.AppendUint64(dst, seq)
}

// Store is the archive on disk: one bbolt file. All methods are safe for
// concurrent use (bbolt allows one writer and many readers).
type Store struct {
	db   *bolt.DB
	lock *lockfile.Lock
}

// Open opens or creates the store at path. noSync skips the fsync of each
// commit (only for building test fixtures). The store is locked (path.lock)
// until Close: an archive another process has open fails at once with a
// *lockfile.HeldError naming that process, instead of bbolt's wait and
// "timeout".
func Open(path string, noSync bool) (_ *Store, err error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("cannot create archive dir: %w", err)
	}
	lock, err := lockfile.Acquire(path+".lock", "archive "+path, lockfile.Command())
	if err != nil {
		return nil, fmt.Errorf("cannot open archive: %w", err)
	}
	defer func() {
		if err != nil {
			_ = lock.Close()
		}
	}()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second, NoSync: noSync, NoFreelistSync: true})
	if err != nil {
		return nil, fmt.Errorf("cannot open archive %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		if _, err := tx.CreateBucketIfNotExists(msgsBucket); err != nil {
			return err
		}
		_, err := tx.CreateBucketIfNotExists(metaBucket)
		return err
	})
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("cannot init archive %s: %w", path, err)
	}
	return &Store{db: db, lock: lock}, nil
}

// Close closes the file and releases its lock.
func (s *Store) Close() error {
	err := s.db.Close()
	_ = s.lock.Close()
	return err
}

func metaKey(room protocol.Room, session string) []byte {
	return []byte(string(room) + "/" + session)
}

// Put writes recs in one transaction and returns how many were new: a
// record already stored (same session, offset, source and sequence) is
// not counted again, so redelivery is harmless. Records with an empty
// session are ignored.
func (s *Store) Put(recs []Record) (added int, err error) {
	now := time.Now().UnixMilli()
	err = s.db.Update(func(tx *bolt.Tx) error {
		added = 0
		msgs, meta := tx.Bucket(msgsBucket), tx.Bucket(metaBucket)
		type sessKey struct {
			room    protocol.Room
			session string
		}
		metas := map[sessKey]*Meta{}
		var key [keyLen]byte
		for _, r := range recs {
			if r.Session == "" {
				continue
			}
			rb, err := msgs.CreateBucketIfNotExists([]byte(r.Room))
			if err != nil {
				return err
			}
			sb, err := rb.CreateBucketIfNotExists([]byte(r.Session))
			if err != nil {
				return err
			}
			k := recordKey(key[:0], r.OffsetMS, r.Source, r.Seq)
			if sb.Get(k) != nil {
				continue
			}
			if err := sb.Put(k, r.Data); err != nil {
				return err
			}
			added++
			sk := sessKey{r.Room, r.Session}
			m, ok := metas[sk]
			if !ok {
				m = &Meta{Room: string(r.Room), Session: r.Session}
				if v := meta.Get(metaKey(r.Room, r.Session)); v != nil {
					_ = json.Unmarshal(v, m)
				}
				metas[sk] = m
			}
			m.Messages++
			m.LastOffsetMS = max(m.LastOffsetMS, r.OffsetMS)
			m.WrittenMS = now
		}
		for sk, m := range metas {
			b, _ := json.Marshal(m)
			if err := meta.Put(metaKey(sk.room, sk.session), b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("cannot write archive: %w", err)
	}
	return added, nil
}

// ErrNoSession is returned for a session the archive holds nothing of.
var ErrNoSession = errors.New("no archived messages for this session")

// Window calls fn, in offset order (then stream and sequence), for the
// messages of a session with fromMS <= offset < toMS. After limit messages
// it finishes the current millisecond and stops; next is then the offset
// to continue from (else -1). fn must not keep data past its call.
func (s *Store) Window(room protocol.Room, session string, fromMS, toMS int64, limit int, fn func(offset int64, data []byte)) (next int64, err error) {
	next = -1
	err = s.db.View(func(tx *bolt.Tx) error {
		rb := tx.Bucket(msgsBucket).Bucket([]byte(room))
		if rb == nil {
			return ErrNoSession
		}
		sb := rb.Bucket([]byte(session))
		if sb == nil {
			return ErrNoSession
		}
		var from, to [8]byte
		binary.BigEndian.PutUint64(from[:], uint64(max(fromMS, 0)))
		binary.BigEndian.PutUint64(to[:], uint64(max(toMS, 0)))
		c := sb.Cursor()
		n := 0
		last := int64(-1)
		for k, v := c.Seek(from[:]); k != nil && bytes.Compare(k[:8], to[:]) < 0; k, v = c.Next() {
			off := int64(binary.BigEndian.Uint64(k[:8]))
			if n >= limit && off != last {
				next = off
				return nil
			}
			fn(off, v)
			n++
			last = off
		}
		return nil
	})
	return next, err
}

// Meta returns what the archive holds of a session, or ErrNoSession.
func (s *Store) Meta(room protocol.Room, session string) (Meta, error) {
	var m Meta
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(metaBucket).Get(metaKey(room, session))
		if v == nil {
			return ErrNoSession
		}
		return json.Unmarshal(v, &m)
	})
	return m, err
}

// DeleteWrittenBefore deletes every session last written before cutoff and
// returns how many it deleted.
func (s *Store) DeleteWrittenBefore(cutoff time.Time) (int, error) {
	n := 0
	err := s.db.Update(func(tx *bolt.Tx) error {
		msgs, meta := tx.Bucket(msgsBucket), tx.Bucket(metaBucket)
		var old []Meta
		err := meta.ForEach(func(_, v []byte) error {
			var m Meta
			if json.Unmarshal(v, &m) == nil && m.WrittenMS < cutoff.UnixMilli() {
				old = append(old, m)
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, m := range old {
			if rb := msgs.Bucket([]byte(m.Room)); rb != nil {
				if err := rb.DeleteBucket([]byte(m.Session)); err != nil && !errors.Is(err, bolt.ErrBucketNotFound) {
					return err
				}
			}
			if err := meta.Delete(metaKey(protocol.Room(m.Room), m.Session)); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("cannot delete old sessions: %w", err)
	}
	return n, nil
}
