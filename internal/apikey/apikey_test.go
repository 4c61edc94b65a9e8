package apikey

import (
	"errors"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/liveroom/liveroom/internal/protocol"
)

func code(t *testing.T, s *Set, authz string) string {
	t.Helper()
	r := httptest.NewRequest("GET", "/v1/server/rooms", nil)
	if authz != "" {
		r.Header.Set("Authorization", authz)
	}
	_, err := s.Authenticate(r)
	if err == nil {
		return "ok"
	}
	var pe *protocol.Error
	if !errors.As(err, &pe) || pe.Status != 401 {
		t.Fatalf("error %v is not a 401 *protocol.Error", err)
	}
	return pe.Body.Code
}

// backdate makes the next Authenticate look at the file again.
func backdate(s *Set) { s.lastCheck.Store(time.Now().Add(-2 * CheckEvery).UnixNano()) }

// TestRotationAndRevocation: two keys of one name are valid at once; a key
// removed from the file is revoked (and says so) without a restart, as is
// one marked "revoked"; a bad edit keeps the previous keys.
func TestRotationAndRevocation(t *testing.T) {
	old, next, envKey := Generate(), Generate(), Generate()
	file := filepath.Join(t.TempDir(), "keys")
	write := func(s string) {
		if err := os.WriteFile(file, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("# backend keys\nbackend " + old + "\n")
	s, err := New(Config{File: file, Env: "ops:" + envKey})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ name, authz, want string }{
		{"no key", "", protocol.CodeAPIKeyRequired},
		{"basic auth", "Basic YTpi", protocol.CodeAPIKeyRequired},
		{"jwt", "Bearer eyJhbGciOiJIUzI1NiJ9.e30.x", protocol.CodeTokenNotAccepted},
		{"unknown", "Bearer " + Generate(), protocol.CodeAPIKeyInvalid},
		{"file key", "Bearer " + old, "ok"},
		{"env key", "Bearer " + envKey, "ok"},
	} {
		if got := code(t, s, c.authz); got != c.want {
			t.Errorf("%s: %s, want %s", c.name, got, c.want)
		}
	}
	// Rotation: both keys valid at once.
	write("backend " + old + "\nbackend " + next + "\n")
	backdate(s)
	if code(t, s, "Bearer "+next) != "ok" || code(t, s, "Bearer "+old) != "ok" {
		t.Fatal("both keys should be valid during a rotation")
	}
	// The old key leaves the file: revoked at the next look.
	write("backend " + next + "\n")
	backdate(s)
	if got := code(t, s, "Bearer "+old); got != protocol.CodeAPIKeyRevoked {
		t.Fatalf("removed key: %s, want %s", got, protocol.CodeAPIKeyRevoked)
	}
	// A broken edit keeps what was valid.
	write("backend short\n")
	backdate(s)
	if code(t, s, "Bearer "+next) != "ok" {
		t.Fatal("a bad edit dropped the valid keys")
	}
	// Marked revoked in the file: known to a fresh process too.
	write("backend " + next + " revoked\n")
	fresh, err := New(Config{File: file})
	if err != nil {
		t.Fatal(err)
	}
	if got := code(t, fresh, "Bearer "+next); got != protocol.CodeAPIKeyRevoked {
		t.Fatalf("key marked revoked: %s", got)
	}
	if got := code(t, fresh, "Bearer "+Generate()); got != protocol.CodeAPIKeyInvalid {
		t.Fatalf("no valid keys: %s", got)
	}
}

func TestBadKeyFiles(t *testing.T) {
	k := Generate()
	for name, body := range map[string]string{
		"short key":    "backend lrk_abc\n",
		"no prefix":    "backend " + k[len(Prefix):] + "\n",
		"bad name":     "back.end " + k + "\n",
		"listed twice": "a " + k + "\nb " + k + "\n",
		"extra field":  "a " + k + " maybe\n",
	} {
		file := filepath.Join(t.TempDir(), "keys")
		_ = os.WriteFile(file, []byte(body), 0o600)
		if _, err := New(Config{File: file}); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := New(Config{Env: "nocolon"}); err == nil {
		t.Error("bad env accepted")
	}
	if _, err := New(Config{File: filepath.Join(t.TempDir(), "missing")}); err == nil {
		t.Error("missing file accepted")
	}
}
