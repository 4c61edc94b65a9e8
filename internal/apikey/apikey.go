// Package apikey holds the credentials of the platform's backend: API keys
// that open the server API (/v1/server/…) and nothing else. They are distinct
// from users' tokens on purpose: a viewer, anchor or admin JWT is never
// accepted on a server route, and an API key never on a user route
// (auth.Verifier refuses it there).
//
// Keys come from a file (--api-keys-file, one "name key" per line) and from
// $LIVEROOM_API_KEYS ("name:key,name:key"). The file is re-read when it
// changes, checked at most once per CheckEvery on the request path, so keys
// rotate without a restart: add the new key next to the old one (two keys
// of the same name may be valid at once), move the backend over, then
// remove or mark the old one "revoked". A key that leaves the file is
// remembered as revoked for the life of the process, so a caller still
// using it is told "revoked" rather than "unknown".
package apikey

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/liveroom/liveroom/internal/auth"
	"github.com/liveroom/liveroom/internal/protocol"
)

// Prefix starts every key, so that a key is told from a JWT at a glance
// (and refused on user routes by that prefix).
const Prefix = auth.APIKeyPrefix

// MinSecretLen is the least number of characters after Prefix; a key is
// Prefix followed by MinSecretLen to 256 characters of A-Z a-z 0-9 _ -.
// `echo "backend lrk_$(openssl rand -hex 24)"` makes a line of the file.
const MinSecretLen = 32

// CheckEvery is how often, at most, the key file is looked at for changes.
const CheckEvery = time.Second

// Config configures a Set. The zero value is a Set without keys.
type Config struct {
	// File is the key file; empty: none. Lines are "name key" or
	// "name key revoked"; blank lines and lines starting with # are
	// skipped. Names are 1-64 characters of A-Z a-z 0-9 _ -.
	File string
	// Env is a list of "name:key" pairs separated by commas
	// ($LIVEROOM_API_KEYS). These keys cannot be revoked without a restart.
	Env string
	// Logger; default slog.Default().
	Logger *slog.Logger
}

// Set is the set of valid and revoked keys. It is safe for concurrent use.
type Set struct {
	cfg Config
	log *slog.Logger

	cur       atomic.Pointer[table]
	lastCheck atomic.Int64 // unix nanoseconds of the last look at the file

	mu       sync.Mutex // serialises reloads
	fileHash [32]byte
	extra    map[[32]byte]string // keys added with Add (dev key)
	env      map[[32]byte]string
	gone     map[[32]byte]string // keys seen valid once, now removed: revoked
}

// table is one immutable generation of keys, by sha256 of the key: a map
// lookup on the hash leaks nothing about a key through timing.
type table struct {
	valid   map[[32]byte]string // hash → name
	revoked map[[32]byte]string
}

// New reads the file and the env list; an unreadable file or a bad line is
// an error (at start; later a bad edit keeps the previous keys and logs).
func New(cfg Config) (*Set, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Set{cfg: cfg, log: cfg.Logger.With("component", "apikey"), extra: map[[32]byte]string{}, gone: map[[32]byte]string{}}
	env, err := parseEnv(cfg.Env)
	if err != nil {
		return nil, err
	}
	s.env = env
	var file *parsed
	if cfg.File != "" {
		b, err := os.ReadFile(cfg.File)
		if err != nil {
			return nil, fmt.Errorf("cannot read api keys: %w", err)
		}
		if file, err = parse(b); err != nil {
			return nil, fmt.Errorf("cannot read api keys from %s: %w", cfg.File, err)
		}
		s.fileHash = sha256.Sum256(b)
	}
	s.install(file)
	s.lastCheck.Store(time.Now().UnixNano())
	return s, nil
}

// Add adds a valid key (the dev key of a dev-mode server) for the life of
// the Set.
func (s *Set) Add(name, key string) error {
	if err := checkLine(name, key); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.extra[sha256.Sum256([]byte(key))] = name
	s.install(s.fileKeys())
	return nil
}

// Len is the number of valid keys.
func (s *Set) Len() int {
	s.refresh(time.Now())
	return len(s.cur.Load().valid)
}

// fileKeys rebuilds the file part from the current table; s.mu held. It
// keeps the file's keys across an Add without re-reading the file.
func (s *Set) fileKeys() *parsed {
	t := s.cur.Load()
	p := &parsed{valid: map[[32]byte]string{}, revoked: map[[32]byte]string{}}
	if t == nil {
		return p
	}
	for h, n := range t.valid {
		if _, ok := s.extra[h]; ok {
			continue
		}
		if _, ok := s.env[h]; ok {
			continue
		}
		p.valid[h] = n
	}
	for h, n := range t.revoked {
		if _, ok := s.gone[h]; !ok {
			p.revoked[h] = n
		}
	}
	return p
}

// install builds the table from the file's keys, the env and extra keys;
// s.mu held (or during New). A key valid before and absent now joins gone.
func (s *Set) install(file *parsed) {
	t := &table{valid: map[[32]byte]string{}, revoked: map[[32]byte]string{}}
	for _, m := range []map[[32]byte]string{s.env, s.extra} {
		for h, n := range m {
			t.valid[h] = n
		}
	}
	if file != nil {
		for h, n := range file.valid {
			t.valid[h] = n
		}
		for h, n := range file.revoked {
			delete(t.valid, h) // "revoked" wins over an env copy of the key
			t.revoked[h] = n
		}
	}
	if old := s.cur.Load(); old != nil {
		for h, n := range old.valid {
			if _, still := t.valid[h]; !still {
				s.gone[h] = n
			}
		}
	}
	for h, n := range s.gone {
		if _, back := t.valid[h]; back {
			delete(s.gone, h) // put back in the file: valid again
			continue
		}
		t.revoked[h] = n
	}
	s.cur.Store(t)
}

// refresh re-reads the file when CheckEvery has passed since the last look
// and its content changed.
func (s *Set) refresh(now time.Time) {
	if s.cfg.File == "" {
		return
	}
	last := s.lastCheck.Load()
	if now.UnixNano()-last < int64(CheckEvery) || !s.lastCheck.CompareAndSwap(last, now.UnixNano()) {
		return
	}
	b, err := os.ReadFile(s.cfg.File)
	if err != nil {
		s.log.Error("cannot re-read api keys; keeping the previous ones", "file", s.cfg.File, "err", err)
		return
	}
	h := sha256.Sum256(b)
	s.mu.Lock()
	defer s.mu.Unlock()
	if h == s.fileHash {
		return
	}
	p, err := parse(b)
	if err != nil {
		s.log.Error("bad api key file; keeping the previous keys", "file", s.cfg.File, "err", err)
		return
	}
	s.fileHash = h
	s.install(p)
	t := s.cur.Load()
	s.log.Info("api keys reloaded", "file", s.cfg.File, "valid", len(t.valid), "revoked", len(t.revoked))
}

// Authenticate checks the API key of r (Authorization: Bearer lrk_…) and
// returns the key's name. Errors are *protocol.Error, all 401:
// api_key_required (no key), token_not_accepted (a user's token),
// api_key_invalid (unknown key) and api_key_revoked.
func (s *Set) Authenticate(r *http.Request) (string, error) {
	h := r.Header.Values("Authorization")
	if len(h) == 0 || h[0] == "" {
		return "", protocol.Errorf(http.StatusUnauthorized, protocol.CodeAPIKeyRequired, "",
			"the server API needs an API key: Authorization: Bearer lrk_… (docs/OPERATIONS.md, API keys)")
	}
	key, ok := strings.CutPrefix(h[0], "Bearer ")
	if len(h) > 1 || !ok || key == "" {
		return "", protocol.Errorf(http.StatusUnauthorized, protocol.CodeAPIKeyRequired, "",
			"send exactly one Authorization: Bearer lrk_… header")
	}
	if !strings.HasPrefix(key, Prefix) {
		return "", protocol.Errorf(http.StatusUnauthorized, protocol.CodeTokenNotAccepted, "",
			"the server API takes the platform's API key (Bearer lrk_…), never a user's token")
	}
	s.refresh(time.Now())
	t := s.cur.Load()
	sum := sha256.Sum256([]byte(key))
	if name, ok := t.valid[sum]; ok {
		return name, nil
	}
	if _, ok := t.revoked[sum]; ok {
		return "", protocol.Errorf(http.StatusUnauthorized, protocol.CodeAPIKeyRevoked, "",
			"this API key was revoked; use the key that replaced it")
	}
	msg := "unknown API key"
	if len(t.valid) == 0 {
		msg = "this server has no API keys (--api-keys-file or $LIVEROOM_API_KEYS)"
	}
	return "", protocol.Errorf(http.StatusUnauthorized, protocol.CodeAPIKeyInvalid, "", msg)
}

type parsed struct {
	valid, revoked map[[32]byte]string
}

// parse reads a key file. A key listed twice is an error, as is a key shorter
// than Prefix+MinSecretLen: both are mistakes worth a loud failure.
func parse(b []byte) (*parsed, error) {
	p := &parsed{valid: map[[32]byte]string{}, revoked: map[[32]byte]string{}}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 2 || len(f) > 3 || (len(f) == 3 && f[2] != "revoked") {
			return nil, fmt.Errorf("line %d: want \"name key\" or \"name key revoked\"", n)
		}
		if err := checkLine(f[0], f[1]); err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		h := sha256.Sum256([]byte(f[1]))
		if _, dup := p.valid[h]; dup {
			return nil, fmt.Errorf("line %d: a key is listed twice", n)
		}
		if _, dup := p.revoked[h]; dup {
			return nil, fmt.Errorf("line %d: a key is listed twice", n)
		}
		if len(f) == 3 {
			p.revoked[h] = f[0]
		} else {
			p.valid[h] = f[0]
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return p, nil
}

// parseEnv reads "name:key,name:key".
func parseEnv(s string) (map[[32]byte]string, error) {
	out := map[[32]byte]string{}
	for pair := range strings.SplitSeq(s, ",") {
		pair = strings.TrimSpace(pair)
		if pair == "" {
			continue
		}
		name, key, ok := strings.Cut(pair, ":")
		if !ok {
			return nil, errors.New("cannot read $LIVEROOM_API_KEYS: want name:key,name:key")
		}
		if err := checkLine(name, key); err != nil {
			return nil, fmt.Errorf("cannot read $LIVEROOM_API_KEYS: %w", err)
		}
		out[sha256.Sum256([]byte(key))] = name
	}
	return out, nil
}

func checkLine(name, key string) error {
	if !protocol.ValidID(name) {
		return errors.New("a key's name must be 1-64 characters of A-Z a-z 0-9 _ -")
	}
	return CheckKey(key)
}

// CheckKey reports whether key has the shape of an API key; the error names
// the rule, never the key.
func CheckKey(key string) error {
	rest, ok := strings.CutPrefix(key, Prefix)
	if !ok || len(rest) < MinSecretLen || len(rest) > 256 {
		return fmt.Errorf("a key is %q followed by %d-256 characters of A-Z a-z 0-9 _ - (e.g. lrk_$(openssl rand -hex 24))", Prefix, MinSecretLen)
	}
	for i := 0; i < len(rest); i++ {
		c := rest[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return fmt.Errorf("a key is %q followed by %d-256 characters of A-Z a-z 0-9 _ -", Prefix, MinSecretLen)
		}
	}
	return nil
}

// Generate returns a new random key (Prefix and 48 hex digits).
func Generate() string {
	var b [24]byte
	_, _ = rand.Read(b[:])
	return Prefix + hex.EncodeToString(b[:])
}
