package bus

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// NATS authentication.
//
// Every connection to liveroom's NATS authenticates with a user name and a
// password, and the user name says what the connection may do: its role
// ("uplink", "dispatch", …) and, for a gateway, its id ("gateway.gw-1").
// Permissions (perms.go) follow from the role, so a gateway cannot publish
// room messages, moderation or another gateway's beat, and an uplink cannot
// publish beats or control commands.
//
// Passwords are not stored anywhere: a password is HMAC-SHA256(key, user),
// where the key is a secret shared by the NATS servers (a key file, see
// Keys). Whoever holds the key can mint the credential of any role
// (`liveroom creds user`), so it lives only with the NATS servers and the
// operator; each role process gets its own credential. serve generates a key
// into its data directory and mints one credential per child gateway.
//
// Rotation: a key file holds one key per line; the first mints, every one
// verifies. Add a new key as the second line, let the servers reload it
// (they re-read the file every KeyReloadInterval), move it first and hand out
// new credentials, then remove the old line.
//
// Cluster routes authenticate the same way, as user "route".

// Role is what a NATS connection is for; see Permissions.
type Role string

// The roles. RoleAll is the one process that runs every role (serve) and
// the NATS server's own setup; the others are the role commands.
const (
	RoleAll       Role = "all"
	RoleGateway   Role = "gateway"
	RoleUplink    Role = "uplink"
	RoleDispatch  Role = "dispatch"
	RoleArchive   Role = "archive"
	RoleAutoscale Role = "autoscale"
	// RoleControl is an operator's command line (liveroom drain): it sends
	// control commands to gateways and reads their replies.
	RoleControl Role = "control"
	// RoleMonitor reads beats only (liveroom bench).
	RoleMonitor Role = "monitor"
	// roleRoute authenticates cluster routes between NATS servers.
	roleRoute Role = "route"
)

// Roles lists the roles a credential can be minted for.
var Roles = []Role{RoleAll, RoleGateway, RoleUplink, RoleDispatch, RoleArchive, RoleAutoscale, RoleControl, RoleMonitor}

func knownRole(r Role) bool {
	for _, k := range Roles {
		if k == r {
			return true
		}
	}
	return false
}

// minKeyLen is the shortest key accepted, in bytes of its text.
const minKeyLen = 32

// Keys are NATS authentication keys: Keys[0] mints credentials, every key
// verifies them. The zero value verifies nothing.
type Keys [][]byte

// NewKey returns a fresh random key as text (64 hex digits).
func NewKey() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// ParseKeys reads a key file's text: one key per line, at least 32
// characters each; blank lines and lines starting with # are skipped.
func ParseKeys(text []byte) (Keys, error) {
	var ks Keys
	sc := bufio.NewScanner(bytes.NewReader(text))
	for n := 1; sc.Scan(); n++ {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		if len(line) < minKeyLen {
			return nil, fmt.Errorf("line %d: a key needs at least %d characters (liveroom creds new-key makes one)", n, minKeyLen)
		}
		ks = append(ks, append([]byte(nil), line...))
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(ks) == 0 {
		return nil, errors.New("no key in it (liveroom creds new-key makes one)")
	}
	return ks, nil
}

// LoadKeys reads a key file (see ParseKeys).
func LoadKeys(path string) (Keys, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read nats key file: %w", err)
	}
	ks, err := ParseKeys(b)
	if err != nil {
		return nil, fmt.Errorf("cannot use nats key file %s: %w", path, err)
	}
	return ks, nil
}

// EnsureKeyFile loads the key file at path, creating it (mode 0600, with a
// new key) when it does not exist.
func EnsureKeyFile(path string) (Keys, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("cannot create nats key file: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	switch {
	case err == nil:
		_, werr := f.WriteString("# liveroom NATS key: credentials are HMACs of it. Keep it secret.\n" + NewKey() + "\n")
		if cerr := f.Close(); werr == nil {
			werr = cerr
		}
		if werr != nil {
			return nil, fmt.Errorf("cannot write nats key file: %w", werr)
		}
	case !errors.Is(err, fs.ErrExist):
		return nil, fmt.Errorf("cannot create nats key file: %w", err)
	}
	return LoadKeys(path)
}

// Credential is what a NATS connection authenticates with.
type Credential struct {
	User     string
	Password string
}

// Option returns the nats.Option that authenticates with c.
func (c Credential) Option() nats.Option { return nats.UserInfo(c.User, c.Password) }

// The variables a liveroom process reads its NATS credential from
// (--nats-user and the password, which has no flag worth using: flags show
// in ps).
const (
	EnvNATSUser     = "LIVEROOM_NATS_USER"
	EnvNATSPassword = "LIVEROOM_NATS_PASSWORD"
)

// Env is c as the two variables a liveroom process reads it from:
// how a process actuator hands each gateway its own credential, and
// `liveroom creds user --format env` prints it.
func (c Credential) Env() []string {
	return []string{EnvNATSUser + "=" + c.User, EnvNATSPassword + "=" + c.Password}
}

// Username is the NATS user of role; a gateway with an id is bound to it
// ("gateway.gw-1"): it may publish only its own beat and receive only its
// own control commands. A gateway credential without an id may use any
// gateway id (a pool whose members cannot get credentials of their own;
// see docs/SECURITY.md).
func Username(role Role, id string) string {
	if id == "" {
		return string(role)
	}
	return string(role) + "." + id
}

// ParseUsername is the inverse of Username; ok is false for a user name no
// credential is minted for.
func ParseUsername(u string) (role Role, id string, ok bool) {
	r, id, hasID := strings.Cut(u, ".")
	role = Role(r)
	switch {
	case role == roleRoute:
		return role, "", !hasID
	case !knownRole(role):
		return "", "", false
	case hasID:
		return role, id, role == RoleGateway && ValidGatewayID(id)
	}
	return role, "", true
}

// Credential mints the credential of role (id: see Username) with the first
// key.
func (k Keys) Credential(role Role, id string) (Credential, error) {
	if len(k) == 0 {
		return Credential{}, errors.New("cannot mint a nats credential: no key")
	}
	u := Username(role, id)
	if _, _, ok := ParseUsername(u); !ok {
		return Credential{}, fmt.Errorf("cannot mint a nats credential for %q: want a role of %v (a gateway may add .<id>)", u, Roles)
	}
	return Credential{User: u, Password: password(k[0], u)}, nil
}

func (k Keys) routeCredential() Credential {
	return Credential{User: string(roleRoute), Password: password(k[0], string(roleRoute))}
}

func password(key []byte, user string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("liveroom-nats|" + user))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// verify reports whether pass is user's password under any key.
func (k Keys) verify(user, pass string) bool {
	ok := 0
	for _, key := range k {
		ok |= subtle.ConstantTimeCompare([]byte(password(key, user)), []byte(pass))
	}
	return ok == 1
}

// KeyReloadInterval is how often a server re-reads its key file.
const KeyReloadInterval = 2 * time.Second

// keyring holds a server's current keys, re-read from their file while the
// server runs (rotation without a restart).
type keyring struct {
	path string
	log  *slog.Logger
	keys atomic.Pointer[Keys]

	mu        sync.Mutex
	modTime   time.Time
	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

func newKeyring(path string, static Keys, log *slog.Logger) (*keyring, error) {
	kr := &keyring{path: path, log: log}
	if path == "" {
		kr.keys.Store(&static)
		return kr, nil
	}
	if err := kr.reload(); err != nil {
		return nil, err
	}
	kr.stop, kr.done = make(chan struct{}), make(chan struct{})
	go kr.watch()
	return kr, nil
}

func (kr *keyring) current() Keys { return *kr.keys.Load() }

// reload re-reads the key file when it changed. A file that became
// unreadable or empty keeps the keys in force: a half-written file during
// a rotation must not lock every role out.
func (kr *keyring) reload() error {
	st, err := os.Stat(kr.path)
	if err != nil {
		return fmt.Errorf("cannot read nats key file: %w", err)
	}
	kr.mu.Lock()
	defer kr.mu.Unlock()
	if st.ModTime().Equal(kr.modTime) && kr.keys.Load() != nil {
		return nil
	}
	ks, err := LoadKeys(kr.path)
	if err != nil {
		return err
	}
	first := kr.keys.Load() == nil
	kr.keys.Store(&ks)
	kr.modTime = st.ModTime()
	if !first {
		kr.log.Info("nats keys reloaded", "file", kr.path, "keys", len(ks))
	}
	return nil
}

func (kr *keyring) watch() {
	defer close(kr.done)
	t := time.NewTicker(KeyReloadInterval)
	defer t.Stop()
	for {
		select {
		case <-kr.stop:
			return
		case <-t.C:
			if err := kr.reload(); err != nil {
				kr.log.Warn("cannot reload nats keys; keeping the current ones", "err", err)
			}
		}
	}
}

func (kr *keyring) close() {
	if kr.stop != nil {
		kr.closeOnce.Do(func() { close(kr.stop) })
		<-kr.done
	}
}

// clientAuth is the server side: it checks a client's password against the
// keys and gives the connection its role's permissions.
type clientAuth struct {
	kr  *keyring
	log *slog.Logger
}

var _ server.Authentication = (*clientAuth)(nil)

func (a *clientAuth) Check(c server.ClientAuthentication) bool {
	o := c.GetOpts()
	role, id, ok := ParseUsername(o.Username)
	if !ok || role == roleRoute || !a.kr.current().verify(o.Username, o.Password) {
		a.log.Warn("nats connection refused: bad credentials", "user", printableUser(o.Username), "remote", c.RemoteAddress())
		return false
	}
	c.RegisterUser(&server.User{Username: o.Username, Permissions: Permissions(role, id)})
	return true
}

// routeAuth checks the routes of the other servers of a cluster.
type routeAuth struct{ kr *keyring }

func (a *routeAuth) Check(c server.ClientAuthentication) bool {
	o := c.GetOpts()
	return o.Username == string(roleRoute) && a.kr.current().verify(o.Username, o.Password)
}

// printableUser keeps a refused user name fit for a log line.
func printableUser(u string) string {
	if len(u) > 80 {
		u = u[:80]
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, u)
}
