package app

import (
	"net/url"
	"strings"

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

// redactURLs hides the passwords of a comma-separated URL list (an external
// NATS may be nats://user:password@host) for logging.
func redactURLs(s string) string {
	parts := strings.Split(s, ",")
	for i, p := range parts {
		if u, err := url.Parse(strings.TrimSpace(p)); err == nil && u.User != nil {
			if _, has := u.User.Password(); has {
				parts[i] = u.Redacted()
			} else {
				u.User = url.User("xxxxx")
				parts[i] = u.String()
			}
		}
	}
	return strings.Join(parts, ",")
}
