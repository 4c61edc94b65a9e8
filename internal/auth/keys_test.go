package auth

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/liveroom/liveroom/internal/protocol"
)

// testKeys are generated once: a 2048-bit RSA key takes a while under -race.
type testKeys struct {
	rsa, rsa2       *rsa.PrivateKey
	ed              ed25519.PrivateKey
	rsaPub, rsa2Pub []byte // PKIX PEM
	edPub           []byte
	rsaPriv, edPriv []byte // PKCS #8 PEM
}

var (
	keysOnce sync.Once
	keys     testKeys
)

func pemOf(t testing.TB, typ string, der []byte, err error) []byte {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func getKeys(t testing.TB) testKeys {
	t.Helper()
	keysOnce.Do(func() {
		var err error
		if keys.rsa, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			t.Fatal(err)
		}
		if keys.rsa2, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			t.Fatal(err)
		}
		if _, keys.ed, err = ed25519.GenerateKey(rand.Reader); err != nil {
			t.Fatal(err)
		}
		der, err := x509.MarshalPKIXPublicKey(&keys.rsa.PublicKey)
		keys.rsaPub = pemOf(t, "PUBLIC KEY", der, err)
		der, err = x509.MarshalPKIXPublicKey(&keys.rsa2.PublicKey)
		keys.rsa2Pub = pemOf(t, "PUBLIC KEY", der, err)
		der, err = x509.MarshalPKIXPublicKey(keys.ed.Public())
		keys.edPub = pemOf(t, "PUBLIC KEY", der, err)
		der, err = x509.MarshalPKCS8PrivateKey(keys.rsa)
		keys.rsaPriv = pemOf(t, "PRIVATE KEY", der, err)
		der, err = x509.MarshalPKCS8PrivateKey(keys.ed)
		keys.edPriv = pemOf(t, "PRIVATE KEY", der, err)
	})
	if keys.rsa == nil {
		t.Fatal("test keys were not generated")
	}
	return keys
}

// TestVerifyConfig is the hostile-token table for a verifier configured with
// public keys, an issuer, an audience and a leeway.
func TestVerifyConfig(t *testing.T) {
	k := getKeys(t)
	pub := append(append([]byte{}, k.rsaPub...), k.edPub...)
	v, err := New(Config{PublicKeysPEM: pub, Issuer: "https://platform.example", Audience: "liveroom", Leeway: 10 * time.Second, CacheSize: -1})
	if err != nil {
		t.Fatal(err)
	}
	both, err := New(Config{HS256Secret: []byte(secret), PublicKeysPEM: pub, Leeway: -1})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	exp := now.Add(time.Hour).Unix()
	good := func(extra jwt.MapClaims) jwt.MapClaims {
		c := jwt.MapClaims{"sub": "alice", "exp": exp, "iss": "https://platform.example", "aud": "liveroom"}
		for key, val := range extra {
			if val == nil {
				delete(c, key)
			} else {
				c[key] = val
			}
		}
		return c
	}
	cases := []struct {
		name string
		v    *Verifier
		tok  string
		ok   bool
	}{
		{"rs256", v, sign(t, jwt.SigningMethodRS256, k.rsa, good(nil)), true},
		{"eddsa", v, sign(t, jwt.SigningMethodEdDSA, k.ed, good(nil)), true},
		{"aud list holding ours", v, sign(t, jwt.SigningMethodRS256, k.rsa, good(jwt.MapClaims{"aud": []string{"other", "liveroom"}})), true},
		{"rs256 by another key", v, sign(t, jwt.SigningMethodRS256, k.rsa2, good(nil)), false},
		{"hs256 signed with the rsa public key pem", v, sign(t, jwt.SigningMethodHS256, k.rsaPub, good(nil)), false},
		{"hs256 signed with the ed25519 public key pem", v, sign(t, jwt.SigningMethodHS256, k.edPub, good(nil)), false},
		{"hs256 with the public key pem, secret also set", both, sign(t, jwt.SigningMethodHS256, k.rsaPub, good(nil)), false},
		{"hs256 with the secret, secret also set", both, sign(t, jwt.SigningMethodHS256, []byte(secret), good(nil)), true},
		{"alg none", v, sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, good(nil)), false},
		{"rs512 is not configured", v, sign(t, jwt.SigningMethodRS512, k.rsa, good(nil)), false},
		{"ps256 is not configured", v, sign(t, jwt.SigningMethodPS256, k.rsa, good(nil)), false},
		{"expired", v, sign(t, jwt.SigningMethodRS256, k.rsa, good(jwt.MapClaims{"exp": now.Add(-time.Minute).Unix()})), false},
		{"expired within leeway", v, sign(t, jwt.SigningMethodRS256, k.rsa, good(jwt.MapClaims{"exp": now.Add(-3 * time.Second).Unix()})), true},
		{"not before beyond leeway", v, sign(t, jwt.SigningMethodRS256, k.rsa, good(jwt.MapClaims{"nbf": now.Add(time.Minute).Unix()})), false},
		{"not before within leeway", v, sign(t, jwt.SigningMethodRS256, k.rsa, good(jwt.MapClaims{"nbf": now.Add(3 * time.Second).Unix()})), true},
		{"missing exp", v, sign(t, jwt.SigningMethodRS256, k.rsa, good(jwt.MapClaims{"exp": nil})), false},
		{"wrong issuer", v, sign(t, jwt.SigningMethodRS256, k.rsa, good(jwt.MapClaims{"iss": "https://evil.example"})), false},
		{"missing issuer", v, sign(t, jwt.SigningMethodRS256, k.rsa, good(jwt.MapClaims{"iss": nil})), false},
		{"wrong audience", v, sign(t, jwt.SigningMethodEdDSA, k.ed, good(jwt.MapClaims{"aud": "other"})), false},
		{"missing audience", v, sign(t, jwt.SigningMethodEdDSA, k.ed, good(jwt.MapClaims{"aud": nil})), false},
		{"tampered claims", v, tamper(sign(t, jwt.SigningMethodRS256, k.rsa, good(nil))), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.v.Verify(tc.tok)
			if (err == nil) != tc.ok {
				t.Fatalf("err = %v, want ok=%v", err, tc.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalidToken) {
				t.Fatalf("error %v does not wrap ErrInvalidToken", err)
			}
		})
	}
}

// tamper swaps the claims of tok for others, keeping header and signature.
func tamper(tok string) string {
	parts := strings.Split(tok, ".")
	c, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "mallory", "exp": time.Now().Add(time.Hour).Unix(), "role": "admin"}).SigningString()
	return parts[0] + "." + strings.Split(c, ".")[1] + "." + parts[2]
}

func TestNewRejectsBadConfig(t *testing.T) {
	k := getKeys(t)
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&small.PublicKey)
	smallPub := pemOf(t, "PUBLIC KEY", der, err)
	cases := []struct {
		name string
		cfg  Config
	}{
		{"nothing", Config{}},
		{"short secret", Config{HS256Secret: []byte("short")}},
		{"private key given as public", Config{PublicKeysPEM: k.rsaPriv}},
		{"not pem", Config{PublicKeysPEM: []byte("hello")}},
		{"trailing garbage", Config{PublicKeysPEM: append(append([]byte{}, k.rsaPub...), "garbage"...)}},
		{"rsa 1024", Config{PublicKeysPEM: smallPub}},
		{"leeway too long", Config{HS256Secret: []byte(secret), Leeway: time.Hour}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := New(tc.cfg); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

func TestKeySignerRoundTrip(t *testing.T) {
	k := getKeys(t)
	v, err := New(Config{PublicKeysPEM: append(append([]byte{}, k.rsaPub...), k.edPub...), Issuer: "iss", Audience: "aud"})
	if err != nil {
		t.Fatal(err)
	}
	for _, priv := range [][]byte{k.rsaPriv, k.edPriv} {
		s, err := NewKeySigner(priv)
		if err != nil {
			t.Fatal(err)
		}
		tok, err := s.Mint("dave", "Dave", protocol.RoleAnchor, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := v.Verify(tok); err == nil {
			t.Fatalf("%s token without iss and aud accepted", s.Alg())
		}
		tok, err = s.WithIssuer("iss").WithAudience("aud").Mint("dave", "Dave", protocol.RoleAnchor, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		id, err := v.Verify(tok)
		if err != nil || id.User != "dave" || id.Role != protocol.RoleAnchor {
			t.Fatalf("%s: %+v, %v", s.Alg(), id, err)
		}
	}
	if _, err := NewKeySigner(k.rsaPub); err == nil {
		t.Fatal("a public key was accepted as a signing key")
	}
}
