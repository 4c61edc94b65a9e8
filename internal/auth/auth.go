// Package auth mints and verifies the platform's JWTs. A Verifier accepts only
// the algorithm it was configured with (never "none", never a key of another
// kind), requires exp, and bounds clock skew. It is safe for concurrent use.
package auth

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rsa"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/liveroom/liveroom/internal/protocol"
)

// ErrInvalidToken is wrapped by every verification failure.
var ErrInvalidToken = errors.New("invalid token")

// ErrUnknownRole is wrapped, with ErrInvalidToken, when a token's role claim
// is not viewer, anchor or admin.
var ErrUnknownRole = errors.New("unknown role")

// MaxNameLen is the longest display name an Identity carries, in characters
// (runes); a longer name claim is cut.
const MaxNameLen = 64

// MinSecretLen is the shortest HS256 secret accepted.
const MinSecretLen = 16

// CheckSecret refuses an HS256 secret that cannot protect anything: shorter
// than MinSecretLen bytes, only white space (a variable filled from an empty
// template), or one byte repeated. Every verifier and signer calls it, so the
// roles, serve and `liveroom token` refuse the same secrets.
func CheckSecret(secret []byte) error {
	if len(secret) < MinSecretLen {
		return fmt.Errorf("cannot use jwt secret: need at least %d bytes (e.g. openssl rand -hex 32)", MinSecretLen)
	}
	if len(bytes.TrimSpace(secret)) == 0 {
		return errors.New("cannot use jwt secret: it is only white space; set a random one (e.g. openssl rand -hex 32)")
	}
	if bytes.Count(secret, secret[:1]) == len(secret) {
		return errors.New("cannot use jwt secret: it repeats one character; set a random one (e.g. openssl rand -hex 32)")
	}
	return nil
}

// Claims are the token claims liveroom reads.
type Claims struct {
	Name string `json:"name,omitempty"`
	Role string `json:"role,omitempty"`
	jwt.RegisteredClaims
}

// Identity is a verified caller.
type Identity struct {
	User protocol.User
	Name string
	Role string
}

// IsStaff reports whether the caller is an anchor or an admin: their live
// messages are never sampled away.
func (id Identity) IsStaff() bool {
	return id.Role == protocol.RoleAnchor || id.Role == protocol.RoleAdmin
}

// Verifier checks tokens. It accepts exactly the algorithms of the keys it
// was given (HS256 for a secret, RS256 for RSA public keys, EdDSA for Ed25519
// public keys) and, for each, only a key of that kind: an HS256 token "signed"
// with the bytes of a configured public key finds no secret to check against.
// It requires exp, bounds clock skew by the configured leeway and checks iss
// and aud when they are configured. Successful verifications are cached (see
// Config.CacheSize). The zero value is not usable; use New or NewHS256. Safe
// for concurrent use.
type Verifier struct {
	hs      []byte
	rsaKeys jwt.VerificationKeySet
	edKeys  jwt.VerificationKeySet
	parser  *jwt.Parser
	cache   *tokenCache
	// now is the clock of both the parser and the cache; tests replace it.
	now func() time.Time
}

// NewHS256 returns a Verifier for HS256 tokens signed with secret, allowing
// leeway of clock skew (0 means none). It is New with only a secret.
func NewHS256(secret []byte, leeway time.Duration) (*Verifier, error) {
	if leeway == 0 {
		leeway = -1 // New reads 0 as "the default"; here it has always meant none
	}
	return New(Config{HS256Secret: secret, Leeway: leeway})
}

// New returns a Verifier for cfg; see Config for what is checked.
func New(cfg Config) (*Verifier, error) {
	v := &Verifier{now: time.Now}
	var methods []string
	if len(cfg.HS256Secret) > 0 {
		if err := CheckSecret(cfg.HS256Secret); err != nil {
			return nil, err
		}
		v.hs = cfg.HS256Secret
		methods = append(methods, jwt.SigningMethodHS256.Alg())
	}
	if len(cfg.PublicKeysPEM) > 0 {
		keys, err := ParsePublicKeys(cfg.PublicKeysPEM)
		if err != nil {
			return nil, err
		}
		for _, k := range keys {
			switch k := k.(type) {
			case *rsa.PublicKey:
				v.rsaKeys.Keys = append(v.rsaKeys.Keys, k)
			case ed25519.PublicKey:
				v.edKeys.Keys = append(v.edKeys.Keys, k)
			}
		}
		if len(v.rsaKeys.Keys) > 0 {
			methods = append(methods, jwt.SigningMethodRS256.Alg())
		}
		if len(v.edKeys.Keys) > 0 {
			methods = append(methods, jwt.SigningMethodEdDSA.Alg())
		}
	}
	if len(methods) == 0 {
		return nil, errors.New("cannot create token verifier: give an HS256 secret or one or more public keys")
	}
	leeway := cfg.Leeway
	switch {
	case leeway == 0:
		leeway = DefaultLeeway
	case leeway < 0:
		leeway = 0
	case leeway > MaxLeeway:
		return nil, fmt.Errorf("cannot use jwt leeway %v: at most %v", cfg.Leeway, MaxLeeway)
	}
	opts := []jwt.ParserOption{
		jwt.WithValidMethods(methods),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(leeway),
		jwt.WithTimeFunc(func() time.Time { return v.now() }),
	}
	if cfg.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(cfg.Issuer))
	}
	if cfg.Audience != "" {
		opts = append(opts, jwt.WithAudience(cfg.Audience))
	}
	v.parser = jwt.NewParser(opts...)
	size := cfg.CacheSize
	if size == 0 {
		size = DefaultCacheSize
	}
	if size > 0 {
		v.cache = newTokenCache(size)
	}
	return v, nil
}

// keyFor returns the keys that may verify t: only keys of the kind its
// algorithm needs. WithValidMethods already refused any other algorithm; the
// switch makes a key of another kind unreachable even if that list were
// wrong.
func (v *Verifier) keyFor(t *jwt.Token) (any, error) {
	switch t.Method.(type) {
	case *jwt.SigningMethodHMAC:
		if t.Method.Alg() == jwt.SigningMethodHS256.Alg() && v.hs != nil {
			return v.hs, nil
		}
	case *jwt.SigningMethodRSA:
		if t.Method.Alg() == jwt.SigningMethodRS256.Alg() && len(v.rsaKeys.Keys) > 0 {
			return v.rsaKeys, nil
		}
	case *jwt.SigningMethodEd25519:
		if len(v.edKeys.Keys) > 0 {
			return v.edKeys, nil
		}
	}
	return nil, fmt.Errorf("no key for algorithm %q", t.Method.Alg())
}

// Verify parses and checks token and returns the caller's identity.
func (v *Verifier) Verify(token string) (Identity, error) {
	now := v.now()
	var key cacheKey
	if v.cache != nil {
		key = v.cache.key(token)
		if id, ok := v.cache.get(key, now); ok {
			return id, nil
		}
	}
	var c Claims
	_, err := v.parser.ParseWithClaims(token, &c, v.keyFor)
	if err != nil {
		return Identity{}, fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}
	user, err := protocol.ParseUser(c.Subject)
	if err != nil {
		return Identity{}, fmt.Errorf("%w: sub: %w", ErrInvalidToken, err)
	}
	role := c.Role
	if role == "" {
		role = protocol.RoleViewer
	}
	if !protocol.ValidRole(role) {
		return Identity{}, fmt.Errorf("%w: %w %q", ErrInvalidToken, ErrUnknownRole, role)
	}
	name := protocol.CleanName(c.Name, MaxNameLen)
	if name == "" {
		name = string(user)
	}
	id := Identity{User: user, Name: name, Role: role}
	if v.cache != nil {
		// exp is required, so ExpiresAt is set. The entry ends at exp itself,
		// not exp + leeway: past exp the token is verified in full again.
		until := now.Add(CacheTTL)
		if c.ExpiresAt.Before(until) {
			until = c.ExpiresAt.Time
		}
		v.cache.put(key, id, until, now)
	}
	return id, nil
}

// FromRequest verifies the bearer token of r (Authorization header, or the
// token query parameter, which browsers need for WebSocket upgrades). Errors
// are *protocol.Error with status 401.
func (v *Verifier) FromRequest(r *http.Request) (Identity, error) {
	tok := ""
	if h := r.Header.Get("Authorization"); h != "" {
		var ok bool
		tok, ok = strings.CutPrefix(h, "Bearer ")
		if !ok {
			return Identity{}, protocol.Errorf(http.StatusUnauthorized, protocol.CodeUnauthorized, "", "Authorization must be 'Bearer <jwt>'")
		}
	} else {
		tok = r.URL.Query().Get("token")
	}
	if tok == "" {
		return Identity{}, protocol.Errorf(http.StatusUnauthorized, protocol.CodeUnauthorized, "", "a token is required (Authorization: Bearer <jwt> or ?token=)")
	}
	id, err := v.Verify(tok)
	if err != nil {
		return Identity{}, protocol.Errorf(http.StatusUnauthorized, protocol.CodeUnauthorized, "", "token rejected: "+reason(err))
	}
	return id, nil
}

// reason gives a short, secret-free explanation of a verification failure.
func reason(err error) string {
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		return "expired"
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return "missing required claim"
	case errors.Is(err, jwt.ErrTokenSignatureInvalid), errors.Is(err, jwt.ErrTokenUnverifiable):
		return "bad signature or algorithm"
	case errors.Is(err, jwt.ErrTokenMalformed):
		return "malformed"
	case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return "not valid yet"
	case errors.Is(err, protocol.ErrInvalidUser):
		return "sub is not a valid user id"
	case errors.Is(err, ErrUnknownRole):
		return "unknown role (want viewer, anchor or admin)"
	default:
		return "invalid"
	}
}
