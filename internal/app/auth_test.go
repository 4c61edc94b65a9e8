package app

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"testing"
	"time"

	"github.com/liveroom/liveroom/client"
	"github.com/liveroom/liveroom/internal/auth"
	"github.com/liveroom/liveroom/internal/protocol"
)

// TestPublicKeyNode: a node given only a public key is not in dev mode, lets
// a viewer with an EdDSA token from the platform's private key in, and turns
// away one whose token lacks the configured issuer and an HS256 token signed
// with the public key's PEM.
func TestPublicKeyNode(t *testing.T) {
	pk, sk, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(pk)
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	der, _ = x509.MarshalPKCS8PrivateKey(sk)
	signer, err := auth.NewKeySigner(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	if err != nil {
		t.Fatal(err)
	}
	n := startNodeWith(t, func(c *Config) {
		c.JWTSecret = ""
		c.Auth = auth.Config{PublicKeysPEM: pubPEM, Issuer: "platform"}
	})
	if n.Dev() {
		t.Fatal("a node with a public key runs in dev mode")
	}
	connect := func(tok string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, err := client.Connect(ctx, client.Config{BaseURL: n.URL(), Room: "keys", Token: tok})
		if err == nil {
			_ = c.Close()
		}
		return err
	}
	good, err := signer.WithIssuer("platform").Mint("alice", "Alice", protocol.RoleViewer, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := connect(good); err != nil {
		t.Fatalf("EdDSA token with the issuer: %v", err)
	}
	noIss, _ := signer.Mint("alice", "Alice", protocol.RoleViewer, time.Hour)
	hs, _ := auth.NewSigner(pubPEM)
	confused, _ := hs.WithIssuer("platform").Mint("mallory", "M", protocol.RoleAdmin, time.Hour)
	for name, tok := range map[string]string{"no issuer": noIss, "hs256 with the public key": confused} {
		err := connect(tok)
		var ae *client.APIError
		if !errors.As(err, &ae) || ae.Status != 401 {
			t.Errorf("%s: %v, want a 401", name, err)
		}
	}
}
