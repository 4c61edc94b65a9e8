package auth

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/liveroom/liveroom/internal/protocol"
)

// MinRSABits is the smallest RSA modulus accepted, for verifying or signing.
const MinRSABits = 2048

// ParsePublicKeys reads every PEM block of b and returns its public keys:
// *rsa.PublicKey or ed25519.PublicKey. Any other block (a private key given
// by mistake, an ECDSA key, text that is not PEM) is an error, so that a
// wrong file is noticed at start rather than as every token failing.
func ParsePublicKeys(b []byte) ([]crypto.PublicKey, error) {
	var keys []crypto.PublicKey
	rest := b
	for n := 1; ; n++ {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		var k any
		var err error
		switch blk.Type {
		case "PUBLIC KEY":
			k, err = x509.ParsePKIXPublicKey(blk.Bytes)
		case "RSA PUBLIC KEY":
			k, err = x509.ParsePKCS1PublicKey(blk.Bytes)
		case "CERTIFICATE":
			var c *x509.Certificate
			if c, err = x509.ParseCertificate(blk.Bytes); err == nil {
				k = c.PublicKey
			}
		default:
			if strings.Contains(blk.Type, "PRIVATE") {
				return nil, fmt.Errorf("cannot use public key block %d: it is a private key (%s); give the public key only", n, blk.Type)
			}
			return nil, fmt.Errorf("cannot use public key block %d: unsupported PEM type %q", n, blk.Type)
		}
		if err != nil {
			return nil, fmt.Errorf("cannot parse public key block %d: %w", n, err)
		}
		switch k := k.(type) {
		case *rsa.PublicKey:
			if k.N.BitLen() < MinRSABits {
				return nil, fmt.Errorf("cannot use public key block %d: RSA key of %d bits, need at least %d", n, k.N.BitLen(), MinRSABits)
			}
			keys = append(keys, k)
		case ed25519.PublicKey:
			keys = append(keys, k)
		default:
			return nil, fmt.Errorf("cannot use public key block %d: %T keys are not supported (use RSA for RS256 or Ed25519 for EdDSA)", n, k)
		}
	}
	if len(keys) == 0 {
		return nil, errors.New("cannot use public keys: no PEM block found")
	}
	if len(strings.TrimSpace(string(rest))) > 0 {
		return nil, errors.New("cannot use public keys: text after the last PEM block is not PEM")
	}
	return keys, nil
}

// parsePrivateKey reads the first PEM block of b as an RSA or Ed25519
// private key and returns it with its signing method.
func parsePrivateKey(b []byte) (jwt.SigningMethod, crypto.Signer, error) {
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, nil, errors.New("cannot use private key: no PEM block found")
	}
	var k any
	var err error
	switch blk.Type {
	case "PRIVATE KEY":
		k, err = x509.ParsePKCS8PrivateKey(blk.Bytes)
	case "RSA PRIVATE KEY":
		k, err = x509.ParsePKCS1PrivateKey(blk.Bytes)
	default:
		return nil, nil, fmt.Errorf("cannot use private key: unsupported PEM type %q", blk.Type)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("cannot parse private key: %w", err)
	}
	switch k := k.(type) {
	case *rsa.PrivateKey:
		if k.N.BitLen() < MinRSABits {
			return nil, nil, fmt.Errorf("cannot use private key: RSA key of %d bits, need at least %d", k.N.BitLen(), MinRSABits)
		}
		return jwt.SigningMethodRS256, k, nil
	case ed25519.PrivateKey:
		return jwt.SigningMethodEdDSA, k, nil
	}
	return nil, nil, fmt.Errorf("cannot use private key: %T keys are not supported (use RSA or Ed25519)", k)
}

// Signer mints tokens: HS256 with a secret (NewSigner) or RS256/EdDSA with a
// private key (NewKeySigner). It is used by `liveroom token`, dev mode and
// tests; a platform mints its own tokens. Safe for concurrent use; the With
// methods return a copy.
type Signer struct {
	method   jwt.SigningMethod
	key      any
	issuer   string
	audience string
	rooms    []string
}

// NewSigner returns an HS256 Signer for secret.
func NewSigner(secret []byte) (*Signer, error) {
	if err := CheckSecret(secret); err != nil {
		return nil, err
	}
	return &Signer{method: jwt.SigningMethodHS256, key: secret}, nil
}

// NewKeySigner returns a Signer for a PEM private key: RSA keys sign RS256,
// Ed25519 keys sign EdDSA.
func NewKeySigner(privateKeyPEM []byte) (*Signer, error) {
	m, k, err := parsePrivateKey(privateKeyPEM)
	if err != nil {
		return nil, err
	}
	return &Signer{method: m, key: k}, nil
}

// WithIssuer returns a copy of s that sets the iss claim.
func (s *Signer) WithIssuer(iss string) *Signer {
	c := *s
	c.issuer = iss
	return &c
}

// WithRooms returns a copy of s that sets the rooms claim: the rooms an
// anchor owns (see Identity.Owns).
func (s *Signer) WithRooms(rooms ...protocol.Room) *Signer {
	c := *s
	c.rooms = nil
	for _, r := range rooms {
		c.rooms = append(c.rooms, string(r))
	}
	return &c
}

// WithAudience returns a copy of s that sets the aud claim.
func (s *Signer) WithAudience(aud string) *Signer {
	c := *s
	c.audience = aud
	return &c
}

// Alg is the algorithm s signs with: HS256, RS256 or EdDSA.
func (s *Signer) Alg() string { return s.method.Alg() }

// Mint returns a token for user with name and role, valid for ttl.
func (s *Signer) Mint(user protocol.User, name, role string, ttl time.Duration) (string, error) {
	if !protocol.ValidRole(role) {
		return "", fmt.Errorf("cannot mint token: unknown role %q", role)
	}
	now := time.Now()
	if len(s.rooms) > MaxOwnedRooms {
		return "", fmt.Errorf("cannot mint token: at most %d rooms", MaxOwnedRooms)
	}
	c := Claims{
		Name:  name,
		Role:  role,
		Rooms: s.rooms,
		RegisteredClaims: jwt.RegisteredClaims{
			Subject:   string(user),
			Issuer:    s.issuer,
			IssuedAt:  jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
		},
	}
	if s.audience != "" {
		c.Audience = jwt.ClaimStrings{s.audience}
	}
	tok, err := jwt.NewWithClaims(s.method, c).SignedString(s.key)
	if err != nil {
		return "", fmt.Errorf("cannot sign token: %w", err)
	}
	return tok, nil
}
