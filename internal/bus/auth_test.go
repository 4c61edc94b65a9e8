package bus_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/liveroom/liveroom/internal/bus"
	"github.com/liveroom/liveroom/internal/protocol"
	"github.com/liveroom/liveroom/internal/testutil"
)

// violations records a connection's permission violations.
type violations struct {
	mu   sync.Mutex
	errs []error
}

func (v *violations) handler(_ *nats.Conn, _ *nats.Subscription, err error) {
	v.mu.Lock()
	v.errs = append(v.errs, err)
	v.mu.Unlock()
}

func (v *violations) has(subject string) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, e := range v.errs {
		if errors.Is(e, nats.ErrPermissionViolation) && strings.Contains(e.Error(), `"`+subject+`"`) {
			return true
		}
	}
	return false
}

// connectAs connects with the credential of role (and gateway id).
func connectAs(t *testing.T, e *bus.Embedded, role bus.Role, id string) (*nats.Conn, *violations) {
	t.Helper()
	v := &violations{}
	nc, err := nats.Connect(testutil.NATSURL(t, e, role, id), nats.ErrorHandler(v.handler))
	if err != nil {
		t.Fatalf("connect as %s %s: %v", role, id, err)
	}
	t.Cleanup(nc.Close)
	return nc, v
}

// TestNATSRefusesStrangers: anonymous connections, wrong passwords, unknown
// roles and credentials of another key are refused.
func TestNATSRefusesStrangers(t *testing.T) {
	e := testutil.StartNATS(t)
	other := bus.Keys{[]byte(bus.NewKey())}
	forged, _ := other.Credential(bus.RoleAll, "")
	cases := map[string][]nats.Option{
		"anonymous":         nil,
		"wrong password":    {nats.UserInfo("all", "guess")},
		"unknown role":      {nats.UserInfo("root", "x")},
		"bound non-gateway": {nats.UserInfo("uplink.u1", "x")},
		"another key":       {forged.Option()},
		"route credential":  {nats.UserInfo("route", "x")},
	}
	for name, opts := range cases {
		nc, err := nats.Connect(e.ClientURL(), opts...)
		if err == nil {
			nc.Close()
			t.Errorf("%s: connected", name)
		} else if !errors.Is(err, nats.ErrAuthorization) {
			t.Errorf("%s: %v, want an authorization violation", name, err)
		}
	}
	// bus.Connect says what to do about it.
	if _, err := bus.Connect(e.ClientURL(), "stranger", testutil.Logger()); err == nil || !strings.Contains(err.Error(), "refused the credentials") {
		t.Fatalf("bus.Connect without credentials: %v", err)
	}
}

// TestRolePermissions: each role publishes and subscribes only what the
// table in perms.go gives it; in particular a gateway cannot publish room
// messages, moderation or another gateway's beat, and an uplink cannot
// publish beats or control commands.
func TestRolePermissions(t *testing.T) {
	e, root, js := testutil.StartBackbone(t)
	room := protocol.Room("perm")
	// What root sees of each subject, but for the stream's republished
	// copies: the uplink's allowed store publish is republished on the
	// room's reliable subject a moment later, which is no publish of the
	// role under test (it made the next case, the uplink refused on that
	// subject, fail now and then).
	var mu sync.Mutex
	seen := map[string]int{}
	sub, err := root.Subscribe(">", func(m *nats.Msg) {
		if m.Header.Get(jetstream.StreamHeader) != "" {
			return
		}
		mu.Lock()
		seen[m.Subject]++
		mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := root.Flush(); err != nil {
		t.Fatal(err)
	}
	type pubCase struct {
		role    bus.Role
		id      string
		subject string
		allowed bool
	}
	cases := []pubCase{
		{bus.RoleGateway, "gw-1", bus.BeatSubject("gw-1"), true},
		{bus.RoleGateway, "gw-1", bus.PresenceSubject(room), true},
		{bus.RoleGateway, "gw-1", bus.BeatSubject("gw-2"), false},
		{bus.RoleGateway, "gw-1", bus.LiveSubject(room), false},
		{bus.RoleGateway, "gw-1", bus.ReliableSubject(room), false},
		{bus.RoleGateway, "gw-1", bus.StoreSubject(room), false},
		{bus.RoleGateway, "gw-1", bus.ModerationSubject(room), false},
		{bus.RoleGateway, "gw-1", "$KV." + bus.ModerationKV + ".perm.ban.u1", false},
		{bus.RoleGateway, "gw-1", bus.UserSubject("u1"), false},
		{bus.RoleGateway, "gw-1", bus.ControlSubject("gw-2"), false},
		{bus.RoleGateway, "", bus.BeatSubject("gw-9"), true}, // an unbound gateway credential
		{bus.RoleUplink, "", bus.LiveSubject(room), true},
		{bus.RoleUplink, "", bus.StoreSubject(room), true},
		// Only the stream republishes stored messages: a forged "stored"
		// message with made-up sequence headers is refused for everyone.
		{bus.RoleUplink, "", bus.ReliableSubject(room), false},
		{bus.RoleArchive, "", bus.ReliableSubject(room), false},
		{bus.RoleUplink, "", bus.BeatSubject("gw-1"), false},
		{bus.RoleUplink, "", bus.ControlSubject("gw-1"), false},
		{bus.RoleUplink, "", bus.PresenceSubject(room), false},
		{bus.RoleDispatch, "", bus.ControlSubject("gw-1"), true},
		{bus.RoleDispatch, "", bus.BeatSubject("gw-1"), false},
		{bus.RoleDispatch, "", bus.LiveSubject(room), false},
		// The door's reports come from dispatch only; the announced
		// audiences are written by the admin API beside dispatch, read by
		// the autoscaler.
		{bus.RoleDispatch, "", bus.DoorSubject, true},
		{bus.RoleGateway, "gw-1", bus.DoorSubject, false},
		{bus.RoleUplink, "", bus.DoorSubject, false},
		{bus.RoleAutoscale, "", bus.DoorSubject, false},
		{bus.RoleDispatch, "", "$KV." + bus.AnnouncementsKV + ".an-perm", true},
		{bus.RoleAutoscale, "", "$KV." + bus.AnnouncementsKV + ".an-perm", false},
		{bus.RoleGateway, "gw-1", "$KV." + bus.AnnouncementsKV + ".an-perm", false},
		{bus.RoleUplink, "", "$KV." + bus.AnnouncementsKV + ".an-perm", false},
		{bus.RoleControl, "", bus.ControlSubject("gw-1"), true},
		{bus.RoleControl, "", bus.LiveSubject(room), false},
		// Fleet-wide limits: a usage report or a slow-mode claim shifts
		// every uplink's share of a key; only uplinks may send them.
		{bus.RoleUplink, "", bus.UsageSubject, true},
		{bus.RoleUplink, "", bus.SlowClaimSubject("up-1"), true},
		{bus.RoleGateway, "gw-1", bus.UsageSubject, false},
		{bus.RoleGateway, "", bus.UsageSubject, false},
		{bus.RoleGateway, "gw-1", bus.SlowClaimSubject("up-1"), false},
		{bus.RoleDispatch, "", bus.UsageSubject, false},
		{bus.RoleArchive, "", bus.UsageSubject, false},
		{bus.RoleAutoscale, "", bus.UsageSubject, false},
		{bus.RoleControl, "", bus.UsageSubject, false},
		{bus.RoleMonitor, "", bus.BeatSubject("gw-1"), false},
		{bus.RoleArchive, "", bus.LiveSubject(room), false},
		{bus.RoleArchive, "", bus.BeatSubject("gw-1"), false},
	}
	count := func(subject string) int {
		mu.Lock()
		defer mu.Unlock()
		return seen[subject]
	}
	for _, tc := range cases {
		nc, v := connectAs(t, e, tc.role, tc.id)
		before := count(tc.subject)
		if err := nc.Publish(tc.subject, []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
		name := string(tc.role) + "/" + tc.id + " → " + tc.subject
		if tc.allowed {
			testutil.Eventually(t, 5*time.Second, name+" delivered", func() bool { return count(tc.subject) > before })
			continue
		}
		testutil.Eventually(t, 5*time.Second, name+" refused", func() bool { return v.has(tc.subject) })
		if err := root.Flush(); err != nil {
			t.Fatal(err)
		}
		if n := count(tc.subject) - before; n > 0 {
			t.Errorf("%s: delivered %d times", name, n)
		}
	}

	// A gateway can neither store a gift through JetStream nor write the
	// moderation bucket.
	gnc, _ := connectAs(t, e, bus.RoleGateway, "gw-1")
	gjs, _ := jetstream.New(gnc)
	stored := func() uint64 {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		info, err := js.Stream(ctx, bus.ReliableStream)
		if err != nil {
			t.Fatal(err)
		}
		return info.CachedInfo().State.Msgs
	}
	before := stored()
	pctx, pcancel := context.WithTimeout(context.Background(), time.Second)
	_, err = gjs.Publish(pctx, bus.StoreSubject(room), []byte(`{"type":"gift"}`))
	pcancel()
	if err == nil {
		t.Error("a gateway stored a reliable message")
	}
	if n := stored() - before; n != 0 {
		t.Errorf("the reliable stream holds %d more messages after the gateway's attempt", n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if kv, err := gjs.KeyValue(ctx, bus.ModerationKV); err == nil {
		if _, err := kv.Put(ctx, "perm.ban.admin", []byte(`{}`)); err == nil {
			t.Error("a gateway wrote the moderation bucket")
		}
	}

	// Subscriptions: a bound gateway hears its own control subject only;
	// an uplink hears no beats.
	for _, tc := range []struct {
		role    bus.Role
		id, sub string
		allowed bool
	}{
		{bus.RoleGateway, "gw-1", bus.ControlSubject("gw-1"), true},
		{bus.RoleGateway, "gw-1", bus.ControlSubject("gw-2"), false},
		{bus.RoleGateway, "gw-1", bus.BeatWildcard, false},
		{bus.RoleUplink, "", bus.BeatWildcard, false},
		{bus.RoleDispatch, "", bus.BeatWildcard, true},
		{bus.RoleAutoscale, "", bus.BeatWildcard, true},
		{bus.RoleAutoscale, "", bus.DoorSubject, true},
		{bus.RoleGateway, "gw-1", bus.DoorSubject, false},
		{bus.RoleUplink, "", bus.DoorSubject, false},
		{bus.RoleMonitor, "", bus.LiveWildcard, false},
		{bus.RoleUplink, "", bus.UsageSubject, true},
		{bus.RoleUplink, "", bus.SlowClaimSubject("up-1"), true},
		{bus.RoleGateway, "gw-1", bus.UsageSubject, false},
		{bus.RoleGateway, "gw-1", bus.SlowClaimSubject("up-1"), false},
		{bus.RoleMonitor, "", bus.UsageSubject, false},
		{bus.RoleDispatch, "", bus.UplinkWildcard, false},
	} {
		nc, v := connectAs(t, e, tc.role, tc.id)
		if _, err := nc.SubscribeSync(tc.sub); err != nil {
			t.Fatal(err)
		}
		_ = nc.Flush()
		name := string(tc.role) + "/" + tc.id + " subscribes " + tc.sub
		if tc.allowed {
			time.Sleep(50 * time.Millisecond)
			if v.has(tc.sub) {
				t.Errorf("%s: refused", name)
			}
		} else {
			testutil.Eventually(t, 5*time.Second, name+" refused", func() bool { return v.has(tc.sub) })
		}
	}
}

// TestKeyRotation: a key file's second key is accepted once the server
// re-reads the file, and a removed key stops working for new connections.
func TestKeyRotation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "nats.key")
	oldKeys, err := bus.EnsureKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, want 0600", st.Mode().Perm())
	}
	again, err := bus.EnsureKeyFile(path)
	if err != nil || string(again[0]) != string(oldKeys[0]) {
		t.Fatalf("EnsureKeyFile replaced an existing key: %v", err)
	}
	e, err := bus.StartEmbedded(bus.EmbeddedConfig{Host: "127.0.0.1", Port: -1, DataDir: dir, KeyFile: path, Logger: testutil.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	newKey := bus.NewKey()
	newKeys := bus.Keys{[]byte(newKey)}
	oldCred, _ := oldKeys.Credential(bus.RoleUplink, "")
	newCred, _ := newKeys.Credential(bus.RoleUplink, "")
	works := func(c bus.Credential) bool {
		nc, err := nats.Connect(e.ClientURL(), c.Option())
		if err == nil {
			nc.Close()
		}
		return err == nil
	}
	if !works(oldCred) || works(newCred) {
		t.Fatal("before rotation: the old key must work and the new one not")
	}
	write := func(keys ...string) {
		t.Helper()
		// A new modification time even within the file system's granularity.
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, []byte(strings.Join(keys, "\n")+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
		later := time.Now().Add(time.Duration(len(keys)) * time.Second)
		_ = os.Chtimes(path, later, later)
	}
	write(newKey, string(oldKeys[0]))
	testutil.Eventually(t, 10*time.Second, "the new key is accepted", func() bool { return works(newCred) })
	if !works(oldCred) {
		t.Fatal("the old key stopped working while it is still listed")
	}
	write(newKey)
	testutil.Eventually(t, 10*time.Second, "the removed key is refused", func() bool { return !works(oldCred) })
	// Minting uses the first key.
	k, _ := bus.LoadKeys(path)
	if c, _ := k.Credential(bus.RoleUplink, ""); c != newCred {
		t.Fatal("credential not minted from the first key")
	}
}

// TestClusterRoutesAuthenticate: two servers sharing a key form a cluster;
// a third with another key is refused by both.
func TestClusterRoutesAuthenticate(t *testing.T) {
	keys := testutil.NATSKeys()
	ports := []int{testutil.FreePort(t), testutil.FreePort(t), testutil.FreePort(t)}
	routes := []string{"nats://" + testutil.Addr(ports[0]), "nats://" + testutil.Addr(ports[1])}
	start := func(i int, k bus.Keys) *bus.Embedded {
		e, err := bus.StartEmbedded(bus.EmbeddedConfig{
			Host: "127.0.0.1", Port: -1, DataDir: t.TempDir(), Logger: testutil.Logger(), Keys: k,
			Name: "n" + string(rune('0'+i)), ClusterName: "lr", ClusterHost: "127.0.0.1", ClusterPort: ports[i], Routes: routes,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(e.Close)
		return e
	}
	a, b := start(0, keys), start(1, keys)
	testutil.Eventually(t, 15*time.Second, "the two servers route to each other", func() bool {
		return a.Server().NumRoutes() > 0 && b.Server().NumRoutes() > 0
	})
	intruder := start(2, bus.Keys{[]byte(bus.NewKey())})
	time.Sleep(2 * time.Second)
	if n := intruder.Server().NumRoutes(); n != 0 {
		t.Fatalf("a server with another key has %d routes", n)
	}
}

// TestCredentialNames: user names map to roles, gateway ids are checked.
func TestCredentialNames(t *testing.T) {
	for u, want := range map[string]bool{
		"all": true, "gateway": true, "gateway.gw-1": true, "uplink": true, "monitor": true,
		"gateway.": false, "gateway.a.b": false, "gateway.*": false, "uplink.x": false, "root": false, "": false, "route": true,
	} {
		if _, _, ok := bus.ParseUsername(u); ok != want {
			t.Errorf("ParseUsername(%q) = %v, want %v", u, ok, want)
		}
	}
	k := testutil.NATSKeys()
	if _, err := k.Credential(bus.RoleGateway, "a.b"); err == nil {
		t.Error("minted a credential for gateway id a.b")
	}
	if _, err := bus.ParseKeys([]byte("# only a comment\n\n")); err == nil {
		t.Error("a key file without a key parsed")
	}
	if _, err := bus.ParseKeys([]byte("short\n")); err == nil {
		t.Error("a short key parsed")
	}
}
