package auth

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/golang-jwt/jwt/v5"

	"github.com/liveroom/liveroom/internal/protocol"
)

const secret = "0123456789abcdef0123456789abcdef"

func sign(t *testing.T, m jwt.SigningMethod, key any, c jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(m, c).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestVerify(t *testing.T) {
	v, err := NewHS256([]byte(secret), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	exp := time.Now().Add(time.Hour).Unix()
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	cases := []struct {
		name string
		tok  string
		ok   bool
		role string
	}{
		{"valid", sign(t, jwt.SigningMethodHS256, []byte(secret), jwt.MapClaims{"sub": "alice", "exp": exp, "role": "anchor"}), true, "anchor"},
		{"default role", sign(t, jwt.SigningMethodHS256, []byte(secret), jwt.MapClaims{"sub": "bob", "exp": exp}), true, "viewer"},
		{"expired", sign(t, jwt.SigningMethodHS256, []byte(secret), jwt.MapClaims{"sub": "a", "exp": time.Now().Add(-time.Hour).Unix()}), false, ""},
		{"no exp", sign(t, jwt.SigningMethodHS256, []byte(secret), jwt.MapClaims{"sub": "a"}), false, ""},
		{"wrong secret", sign(t, jwt.SigningMethodHS256, []byte("another-secret-0123456789"), jwt.MapClaims{"sub": "a", "exp": exp}), false, ""},
		{"alg none", sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, jwt.MapClaims{"sub": "a", "exp": exp}), false, ""},
		{"other alg", sign(t, jwt.SigningMethodHS512, []byte(secret), jwt.MapClaims{"sub": "a", "exp": exp}), false, ""},
		{"eddsa", sign(t, jwt.SigningMethodEdDSA, edKey, jwt.MapClaims{"sub": "a", "exp": exp}), false, ""},
		{"bad sub", sign(t, jwt.SigningMethodHS256, []byte(secret), jwt.MapClaims{"sub": "a.b", "exp": exp}), false, ""},
		{"unknown role", sign(t, jwt.SigningMethodHS256, []byte(secret), jwt.MapClaims{"sub": "a", "exp": exp, "role": "root"}), false, ""},
		{"garbage", "not.a.token", false, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id, err := v.Verify(tc.tok)
			if (err == nil) != tc.ok {
				t.Fatalf("err = %v, want ok=%v", err, tc.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalidToken) {
				t.Fatalf("error %v does not wrap ErrInvalidToken", err)
			}
			if tc.ok && id.Role != tc.role {
				t.Fatalf("role %q, want %q", id.Role, tc.role)
			}
		})
	}
}

func TestSignerRoundTripAndRequest(t *testing.T) {
	s, err := NewSigner([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	v, _ := NewHS256([]byte(secret), 0)
	tok, err := s.Mint("carol", "Carol", protocol.RoleAdmin, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest("GET", "/x?token="+tok, nil)
	id, err := v.FromUpgrade(r)
	if err != nil || id.User != "carol" || id.Name != "Carol" || !id.IsStaff() {
		t.Fatalf("got %+v, %v", id, err)
	}
	// Outside an upgrade a token in the URL is refused, and said why.
	if _, err := v.FromRequest(r); err == nil || !strings.Contains(err.Error(), "Authorization") {
		t.Fatalf("?token= on a plain request: %v", err)
	}
	r.Header.Set("Authorization", "Bearer "+tok)
	if id, err := v.FromRequest(r); err != nil || id.User != "carol" {
		t.Fatalf("header: %+v, %v", id, err)
	}
	r = httptest.NewRequest("GET", "/x", nil)
	r.Header.Set("Authorization", "Basic abc")
	var pe *protocol.Error
	if _, err := v.FromRequest(r); !errors.As(err, &pe) || pe.Status != 401 {
		t.Fatalf("Basic auth: %v", err)
	}
	if _, err := NewHS256([]byte("short"), 0); err == nil {
		t.Fatal("short secret accepted")
	}
}

// FuzzVerify feeds arbitrary strings to a verifier holding an HS256 secret,
// an RSA and an Ed25519 public key, an issuer and an audience. Properties: no
// panic; every failure wraps ErrInvalidToken; an accepted token carries a
// valid user, a known role and a clean name, and is accepted again (from the
// cache) with the same identity. Seeds are valid tokens of each algorithm,
// the known attacks, and testdata/fuzz/FuzzVerify.
func FuzzVerify(f *testing.F) {
	k := getKeys(f)
	pub := append(append([]byte{}, k.rsaPub...), k.edPub...)
	v, err := New(Config{HS256Secret: []byte(secret), PublicKeysPEM: pub, Issuer: "iss", Audience: "aud"})
	if err != nil {
		f.Fatal(err)
	}
	hs, _ := NewSigner([]byte(secret))
	rs, _ := NewKeySigner(k.rsaPriv)
	ed, _ := NewKeySigner(k.edPriv)
	for _, s := range []*Signer{hs, rs, ed} {
		tok, err := s.WithIssuer("iss").WithAudience("aud").Mint("seed", "Seed", protocol.RoleViewer, time.Hour)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(tok)
		f.Add(tok + "x")
		f.Add(tamper(tok))
	}
	exp := time.Now().Add(time.Hour).Unix()
	for _, c := range []struct {
		m   jwt.SigningMethod
		key any
	}{{jwt.SigningMethodHS256, k.rsaPub}, {jwt.SigningMethodHS256, k.edPub}, {jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType}} {
		tok, err := jwt.NewWithClaims(c.m, jwt.MapClaims{"sub": "a", "exp": exp, "iss": "iss", "aud": "aud"}).SignedString(c.key)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(tok)
	}
	for _, seed := range []string{"", "a.b.c", "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhIn0.", "..", "e30.e30.e30"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		id, err := v.Verify(tok)
		if err != nil {
			if !errors.Is(err, ErrInvalidToken) {
				t.Fatalf("error %v does not wrap ErrInvalidToken", err)
			}
			return
		}
		if _, perr := protocol.ParseUser(string(id.User)); perr != nil || !protocol.ValidRole(id.Role) {
			t.Fatalf("accepted token with bad identity %+v", id)
		}
		if !utf8.ValidString(id.Name) || utf8.RuneCountInString(id.Name) > MaxNameLen || id.Name == "" {
			t.Fatalf("accepted token with bad name %q", id.Name)
		}
		again, err := v.Verify(tok)
		if err != nil || !reflect.DeepEqual(again, id) {
			t.Fatalf("second verification: %+v, %v; first %+v", again, err, id)
		}
	})
}

func TestVerifyCleansName(t *testing.T) {
	v, err := NewHS256([]byte(secret), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	exp := time.Now().Add(time.Hour).Unix()
	cases := []struct {
		name, claim, want string
	}{
		{"short", "Alice", "Alice"},
		{"empty is the user id", "", "alice"},
		{"64 ascii kept", strings.Repeat("a", 64), strings.Repeat("a", 64)},
		{"65 ascii cut", strings.Repeat("a", 65), strings.Repeat("a", 64)},
		// 63 ASCII bytes then a 3-byte character: a byte cut at 64 split it.
		{"multibyte at the byte limit", strings.Repeat("a", 63) + "弹幕", strings.Repeat("a", 63) + "弹"},
		{"64 runes of 3 bytes kept", strings.Repeat("弹", 64), strings.Repeat("弹", 64)},
		{"65 runes cut to 64", strings.Repeat("😀", 65), strings.Repeat("😀", 64)},
		{"control characters dropped", "Al\nice\t\x00\u007f\u0085!", "Alice!"},
		{"control characters do not count", strings.Repeat("\n", 10) + strings.Repeat("b", 64), strings.Repeat("b", 64)},
		{"only control characters is the user id", "\r\n\t", "alice"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tok := sign(t, jwt.SigningMethodHS256, []byte(secret), jwt.MapClaims{"sub": "alice", "exp": exp, "name": tc.claim})
			id, err := v.Verify(tok)
			if err != nil {
				t.Fatal(err)
			}
			if id.Name != tc.want {
				t.Fatalf("name %q, want %q", id.Name, tc.want)
			}
			if !utf8.ValidString(id.Name) || utf8.RuneCountInString(id.Name) > MaxNameLen {
				t.Fatalf("name %q is not valid UTF-8 of at most %d runes", id.Name, MaxNameLen)
			}
		})
	}
}

func TestFromRequestReason(t *testing.T) {
	v, err := NewHS256([]byte(secret), 0)
	if err != nil {
		t.Fatal(err)
	}
	exp := time.Now().Add(time.Hour).Unix()
	cases := []struct {
		name string
		tok  string
		want string
	}{
		{"unknown role", sign(t, jwt.SigningMethodHS256, []byte(secret), jwt.MapClaims{"sub": "a", "exp": exp, "role": "root"}), "token rejected: unknown role (want viewer, anchor or admin)"},
		{"bad sub", sign(t, jwt.SigningMethodHS256, []byte(secret), jwt.MapClaims{"sub": "a.b", "exp": exp}), "token rejected: sub is not a valid user id"},
		{"expired", sign(t, jwt.SigningMethodHS256, []byte(secret), jwt.MapClaims{"sub": "a", "exp": time.Now().Add(-time.Hour).Unix()}), "token rejected: expired"},
		{"malformed", "not.a.token", "token rejected: malformed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := v.Verify(tc.tok)
			if tc.name == "unknown role" && (!errors.Is(err, ErrUnknownRole) || !errors.Is(err, ErrInvalidToken)) {
				t.Fatalf("Verify: %v, want ErrUnknownRole and ErrInvalidToken", err)
			}
			r := httptest.NewRequest("GET", "/x", nil)
			r.Header.Set("Authorization", "Bearer "+tc.tok)
			_, err = v.FromRequest(r)
			var pe *protocol.Error
			if !errors.As(err, &pe) || pe.Status != 401 || pe.Body.Code != protocol.CodeUnauthorized {
				t.Fatalf("FromRequest: %v, want a 401 unauthorized", err)
			}
			if pe.Body.Message != tc.want {
				t.Fatalf("message %q, want %q", pe.Body.Message, tc.want)
			}
		})
	}
}

// TestCheckSecret: verifiers and signers refuse secrets that protect
// nothing, and take a random one.
func TestCheckSecret(t *testing.T) {
	for name, s := range map[string]string{
		"short":    "0123456789abcde",
		"spaces":   strings.Repeat(" ", 16),
		"blank":    " \t\n \t\n \t\n \t\n \t\n",
		"repeated": strings.Repeat("a", 40),
	} {
		if _, err := New(Config{HS256Secret: []byte(s)}); err == nil {
			t.Errorf("%s secret accepted by New", name)
		}
		if _, err := NewSigner([]byte(s)); err == nil {
			t.Errorf("%s secret accepted by NewSigner", name)
		}
	}
	if err := CheckSecret([]byte("3f9c0a7e5b1d2c4a6e8f0b1d3c5a7e9f")); err != nil {
		t.Fatalf("random secret refused: %v", err)
	}
}
