// Package auth mints and verifies the platform's JWTs. A Verifier accepts only
// the algorithm it was configured with (never "none", never a key of another
// kind), requires exp, and bounds clock skew. It is safe for concurrent use.
package auth

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
	"unicode"

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

// Verifier checks tokens. The zero value is not usable; use NewHS256.
type Verifier struct {
	key    []byte
	parser *jwt.Parser
}

// NewHS256 returns a Verifier for HS256 tokens signed with secret, allowing
// leeway of clock skew.
func NewHS256(secret []byte, leeway time.Duration) (*Verifier, error) {
	if len(secret) < MinSecretLen {
		return nil, fmt.Errorf("cannot use jwt secret: need at least %d bytes", MinSecretLen)
	}
	return &Verifier{
		key: secret,
		parser: jwt.NewParser(
			jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
			jwt.WithExpirationRequired(),
			jwt.WithLeeway(leeway),
		),
	}, nil
}

// Verify parses and checks token and returns the caller's identity.
func (v *Verifier) Verify(token string) (Identity, error) {
	var c Claims
	_, err := v.parser.ParseWithClaims(token, &c, func(*jwt.Token) (any, error) { return v.key, nil })
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
	name := cleanName(c.Name)
	if name == "" {
		name = string(user)
	}
	return Identity{User: user, Name: name, Role: role}, nil
}

// cleanName drops control characters from a name claim, which ends up on
// every viewer's screen, and cuts it to MaxNameLen runes. Cutting bytes would
// split a multi-byte character and leave invalid UTF-8 in every message the
// caller sends. Invalid bytes in the claim become U+FFFD.
func cleanName(s string) string {
	var b strings.Builder
	n := 0
	for _, r := range s {
		if unicode.IsControl(r) {
			continue
		}
		if n == MaxNameLen {
			break
		}
		b.WriteRune(r)
		n++
	}
	return b.String()
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

// Signer mints HS256 tokens. It is used by `liveroom token`, dev mode and tests.
type Signer struct {
	key []byte
}

// NewSigner returns a Signer for secret.
func NewSigner(secret []byte) (*Signer, error) {
	if len(secret) < MinSecretLen {
		return nil, fmt.Errorf("cannot use jwt secret: need at least %d bytes", MinSecretLen)
	}
	return &Signer{key: secret}, nil
}

// Mint returns a token for user with name and role, valid for ttl.
func (s *Signer) Mint(user protocol.User, name, role string, ttl time.Duration) (string, error) {
	if !protocol.ValidRole(role) {
		return "", fmt.Errorf("cannot mint token: unknown role %q", role)
	}
	now := time.Now()
	c := Claims{
		Name: name,
		Role: role,
		RegisteredClaims: jwt.RegisteredClaims{
			Subject:   string(user),
			IssuedAt:  jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
		},
	}
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(s.key)
	if err != nil {
		return "", fmt.Errorf("cannot sign token: %w", err)
	}
	return tok, nil
}
