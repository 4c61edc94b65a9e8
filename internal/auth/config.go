package auth

import "time"

// Defaults and bounds of Config.
const (
	// DefaultLeeway is the clock skew allowed on exp, nbf and iat when
	// Config.Leeway is zero.
	DefaultLeeway = 30 * time.Second
	// MaxLeeway is the largest Config.Leeway accepted: more would let an
	// expired token live on for long.
	MaxLeeway = 5 * time.Minute
	// DefaultCacheSize is the number of verified tokens remembered when
	// Config.CacheSize is zero.
	DefaultCacheSize = 1 << 16
	// CacheTTL is the longest a verified token is served from the cache
	// before it is verified in full again (never past its exp).
	CacheTTL = time.Minute
)

// Config says which tokens a Verifier accepts. At least one of HS256Secret
// and PublicKeysPEM must be set; both may be (a platform moving from a shared
// secret to a key pair).
type Config struct {
	// HS256Secret verifies HS256 tokens; at least MinSecretLen bytes. Empty:
	// HS256 tokens are refused.
	HS256Secret []byte
	// PublicKeysPEM holds one or more PEM blocks ("PUBLIC KEY" in PKIX form,
	// "RSA PUBLIC KEY" in PKCS #1 form, or "CERTIFICATE"). RSA keys (at least
	// 2048 bits) verify RS256 tokens, Ed25519 keys verify EdDSA tokens; a
	// token is accepted when any key of its algorithm's kind verifies it (key
	// rotation). Empty: RS256 and EdDSA tokens are refused.
	PublicKeysPEM []byte
	// Issuer, when set, is the iss claim every token must carry.
	Issuer string
	// Audience, when set, must be one of the token's aud values.
	Audience string
	// Leeway is the clock skew allowed between the platform that signs and
	// this process. Zero means DefaultLeeway, negative means none; more than
	// MaxLeeway is an error.
	Leeway time.Duration
	// CacheSize bounds the verified-token cache, in tokens. Zero means
	// DefaultCacheSize; negative disables the cache.
	CacheSize int
}
