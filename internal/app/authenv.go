package app

import (
	"github.com/liveroom/liveroom/internal/auth"
)

// authEnv is how a gateway child process gets the node's token
// configuration beyond the secret: through the LIVEROOM_* variables its flags
// read (the public keys as PEM text, which is not secret).
func authEnv(c auth.Config) []string {
	var env []string
	if len(c.PublicKeysPEM) > 0 {
		env = append(env, "LIVEROOM_JWT_PUBLIC_KEY_PEM="+string(c.PublicKeysPEM))
	}
	if c.Issuer != "" {
		env = append(env, "LIVEROOM_JWT_ISSUER="+c.Issuer)
	}
	if c.Audience != "" {
		env = append(env, "LIVEROOM_JWT_AUDIENCE="+c.Audience)
	}
	switch {
	case c.Leeway < 0:
		env = append(env, "LIVEROOM_JWT_LEEWAY=0s") // the flag's "none"
	case c.Leeway > 0:
		env = append(env, "LIVEROOM_JWT_LEEWAY="+c.Leeway.String())
	default:
		env = append(env, "LIVEROOM_JWT_LEEWAY="+auth.DefaultLeeway.String())
	}
	return env
}
