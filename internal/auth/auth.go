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
	// Rooms are the rooms an anchor owns: it may start their live sessions
	// and moderate them (see Identity.Owns). Ignored for other roles.
	Rooms []string `json:"rooms,omitempty"`
	jwt.RegisteredClaims
}

// MaxOwnedRooms is the most rooms one token's rooms claim may list.
const MaxOwnedRooms = 64

// Identity is a verified caller.
type Identity struct {
	User protocol.User
	Name string
	Role string
	// Rooms are the rooms an anchor's token says it owns (the rooms
	// claim); nil for other roles.
	Rooms []protocol.Room
}

// Owns reports whether the caller is an anchor whose token names room as
// one of its rooms. An anchor owns a room only so: a platform signs which
// rooms each anchor runs; an anchor token without the claim owns none (an
// admin may still make it a room's anchor with set_anchor).
func (id Identity) Owns(room protocol.Room) bool {
	if id.Role != protocol.RoleAnchor {
		return false
	}
	for _, r := range id.Rooms {
		if r == room {
			return true
		}
	}
	return false
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
func (v *Verifier) Verify(token string) (Identity, error) { return v.verify(token, true) }

// verify is Verify; store says whether a full verification is cached.
func (v *Verifier) verify(token string, store bool) (Identity, error) {
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
	if len(c.Rooms) > MaxOwnedRooms {
		return Identity{}, fmt.Errorf("%w: rooms: more than %d", ErrInvalidToken, MaxOwnedRooms)
	}
	if role == protocol.RoleAnchor {
		for _, r := range c.Rooms {
			room, err := protocol.ParseRoom(r)
			if err != nil {
				return Identity{}, fmt.Errorf("%w: rooms: %w", ErrInvalidToken, err)
			}
			id.Rooms = append(id.Rooms, room)
		}
	}
	if v.cache != nil && store {
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

// APIKeyPrefix starts every server API key (internal/apikey). A user route
// refuses such a key with its own code, so that a backend that sent its key
// to the wrong route is told so rather than "malformed token".
const APIKeyPrefix = "lrk_"

// FromRequest verifies the bearer token of r's Authorization header. A
// token in the URL (?token=) is refused here: URLs end up in proxy and
// access logs; only a WebSocket upgrade, which a browser cannot give a
// header, takes one (FromUpgrade, FromHandshake). Errors are
// *protocol.Error with status 401.
func (v *Verifier) FromRequest(r *http.Request) (Identity, error) {
	if r.URL.Query().Has("token") && r.Header.Get("Authorization") == "" {
		return Identity{}, protocol.Errorf(http.StatusUnauthorized, protocol.CodeUnauthorized, "",
			"send the token as Authorization: Bearer <jwt>; a token in the URL is accepted only on the WebSocket upgrade (URLs end up in logs)")
	}
	return v.fromCredentials(r.Header.Get("Authorization"), "", false, true)
}

// FromUpgrade is FromRequest for a WebSocket upgrade: the token may also
// come as the token query parameter, because browsers cannot set headers on
// a WebSocket.
func (v *Verifier) FromUpgrade(r *http.Request) (Identity, error) {
	return v.fromCredentials(r.Header.Get("Authorization"), r.URL.Query().Get("token"), true, true)
}

// FromHandshake is FromUpgrade for a WebSocket handshake the caller parsed
// itself: authorization is the Authorization header's value, queryToken
// the token query parameter's (the header wins). It uses a cached
// verification but does not cache its own: a viewer's token is seen once
// per connection, mostly by a gateway process that never saw it before,
// and caching every joiner's token would cost each idle connection a cache
// entry (about 220 bytes) for nothing.
func (v *Verifier) FromHandshake(authorization, queryToken string) (Identity, error) {
	return v.fromCredentials(authorization, queryToken, true, false)
}

// fromCredentials verifies the token of an Authorization header value or,
// when query allows it and no header is given, of the token query
// parameter. store caches a successful verification.
func (v *Verifier) fromCredentials(authorization, queryToken string, query, store bool) (Identity, error) {
	tok := ""
	if authorization != "" {
		var ok bool
		tok, ok = strings.CutPrefix(authorization, "Bearer ")
		if !ok {
			return Identity{}, protocol.Errorf(http.StatusUnauthorized, protocol.CodeUnauthorized, "", "Authorization must be 'Bearer <jwt>'")
		}
	} else if query {
		tok = queryToken
	}
	if tok == "" {
		msg := "a token is required (Authorization: Bearer <jwt>)"
		if query {
			msg = "a token is required (Authorization: Bearer <jwt> or ?token=)"
		}
		return Identity{}, protocol.Errorf(http.StatusUnauthorized, protocol.CodeUnauthorized, "", msg)
	}
	if strings.HasPrefix(tok, APIKeyPrefix) {
		return Identity{}, protocol.Errorf(http.StatusUnauthorized, protocol.CodeAPIKeyNotAccepted, "",
			"an API key is accepted only on the server API (/v1/server/…); this route takes a user's token")
	}
	id, err := v.verify(tok, store)
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
