package auth

import (
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// TestCacheNeverServesExpired: a verified token is served from the cache
// while it is valid, and once past its exp it is verified in full again and
// refused, even though its entry was fresh a moment before.
func TestCacheNeverServesExpired(t *testing.T) {
	v, err := New(Config{HS256Secret: []byte(secret), Leeway: -1})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().Truncate(time.Second)
	v.now = func() time.Time { return now }
	tok := sign(t, jwt.SigningMethodHS256, []byte(secret), jwt.MapClaims{"sub": "alice", "exp": now.Add(30 * time.Second).Unix()})
	for range 3 {
		if _, err := v.Verify(tok); err != nil {
			t.Fatal(err)
		}
	}
	if h := v.cache.hits.Load(); h != 2 {
		t.Fatalf("%d cache hits, want 2", h)
	}
	now = now.Add(29 * time.Second)
	if _, err := v.Verify(tok); err != nil {
		t.Fatalf("before exp: %v", err)
	}
	hits := v.cache.hits.Load()
	now = now.Add(time.Second) // at exp
	if _, err := v.Verify(tok); err == nil {
		t.Fatal("expired token accepted")
	}
	if v.cache.hits.Load() != hits {
		t.Fatal("expired token was served from the cache")
	}
}

// TestCacheEntryLivesAtMostCacheTTL: a token valid for hours is verified in
// full again after CacheTTL, and failures are never cached.
func TestCacheEntryLivesAtMostCacheTTL(t *testing.T) {
	v, err := New(Config{HS256Secret: []byte(secret)})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	v.now = func() time.Time { return now }
	tok := sign(t, jwt.SigningMethodHS256, []byte(secret), jwt.MapClaims{"sub": "alice", "exp": now.Add(time.Hour).Unix()})
	if _, err := v.Verify(tok); err != nil {
		t.Fatal(err)
	}
	now = now.Add(CacheTTL)
	if _, err := v.Verify(tok); err != nil {
		t.Fatal(err)
	}
	if h := v.cache.hits.Load(); h != 0 {
		t.Fatalf("entry served %d times after CacheTTL", h)
	}
	bad := tok[:len(tok)-2] + "AA"
	for range 3 {
		if _, err := v.Verify(bad); err == nil {
			t.Fatal("forged token accepted")
		}
	}
	if n := v.cache.len(); n != 1 {
		t.Fatalf("cache holds %d entries, want 1 (failures are not cached)", n)
	}
}

func TestCacheBounded(t *testing.T) {
	v, err := New(Config{HS256Secret: []byte(secret), CacheSize: 256})
	if err != nil {
		t.Fatal(err)
	}
	exp := time.Now().Add(time.Hour).Unix()
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 500 {
				tok := sign(t, jwt.SigningMethodHS256, []byte(secret), jwt.MapClaims{"sub": "u" + strconv.Itoa(w*1000+i), "exp": exp})
				if _, err := v.Verify(tok); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if n := v.cache.len(); n > 256 || n == 0 {
		t.Fatalf("cache holds %d entries, want 1..256", n)
	}
}

// BenchmarkVerify compares a full verification with a cache hit, for each
// algorithm. A join storm and the uplink see the same tokens again and again.
func BenchmarkVerify(b *testing.B) {
	k := getKeys(b)
	exp := time.Now().Add(time.Hour).Unix()
	claims := jwt.MapClaims{"sub": "alice", "name": "Alice", "role": "viewer", "exp": exp, "iat": time.Now().Unix()}
	toks := map[string]string{}
	for _, m := range []struct {
		alg string
		m   jwt.SigningMethod
		key any
	}{{"HS256", jwt.SigningMethodHS256, []byte(secret)}, {"RS256", jwt.SigningMethodRS256, k.rsa}, {"EdDSA", jwt.SigningMethodEdDSA, k.ed}} {
		s, err := jwt.NewWithClaims(m.m, claims).SignedString(m.key)
		if err != nil {
			b.Fatal(err)
		}
		toks[m.alg] = s
	}
	pub := append(append([]byte{}, k.rsaPub...), k.edPub...)
	for _, alg := range []string{"HS256", "RS256", "EdDSA"} {
		for _, cached := range []bool{false, true} {
			name := alg + "/uncached"
			size := -1
			if cached {
				name, size = alg+"/cached", 0
			}
			b.Run(name, func(b *testing.B) {
				v, err := New(Config{HS256Secret: []byte(secret), PublicKeysPEM: pub, CacheSize: size})
				if err != nil {
					b.Fatal(err)
				}
				tok := toks[alg]
				b.ReportAllocs()
				for b.Loop() {
					if _, err := v.Verify(tok); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// TestHandshakeReadsButDoesNotFillTheCache: a handshake's token is served
// from the cache when a send verified it before, but a handshake never adds
// an entry of its own.
func TestHandshakeReadsButDoesNotFillTheCache(t *testing.T) {
	v, err := New(Config{HS256Secret: []byte(secret)})
	if err != nil {
		t.Fatal(err)
	}
	exp := time.Now().Add(time.Hour).Unix()
	viewer := sign(t, jwt.SigningMethodHS256, []byte(secret), jwt.MapClaims{"sub": "viewer", "exp": exp})
	for range 2 {
		if id, err := v.FromHandshake("", viewer); err != nil || id.User != "viewer" {
			t.Fatalf("%+v %v", id, err)
		}
	}
	if n, h := v.cache.len(), v.cache.hits.Load(); n != 0 || h != 0 {
		t.Fatalf("%d entries, %d hits after two handshakes, want none", n, h)
	}
	sender := sign(t, jwt.SigningMethodHS256, []byte(secret), jwt.MapClaims{"sub": "sender", "exp": exp})
	if _, err := v.Verify(sender); err != nil {
		t.Fatal(err)
	}
	if id, err := v.FromHandshake("Bearer "+sender, ""); err != nil || id.User != "sender" {
		t.Fatalf("%+v %v", id, err)
	}
	if n, h := v.cache.len(), v.cache.hits.Load(); n != 1 || h != 1 {
		t.Fatalf("%d entries, %d hits, want the sender's entry used once", n, h)
	}
	if _, err := v.FromHandshake("Basic abc", viewer); err == nil {
		t.Fatal("a non-bearer Authorization header was accepted")
	}
}
