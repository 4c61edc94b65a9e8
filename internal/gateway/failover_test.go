package gateway

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/liveroom/liveroom/internal/bus"
	"github.com/liveroom/liveroom/internal/protocol"
	"github.com/liveroom/liveroom/internal/testutil"
)

// TestReliableSurvivesNATSRestart restarts the NATS server under a gateway:
// the gateway's ordered consumer must resume from the last sequence it
// delivered, so the viewer sees every gift once, in order, with no reconnect.
func TestReliableSurvivesNATSRestart(t *testing.T) {
	dir := t.TempDir()
	start := func(port int) *bus.Embedded {
		e, err := bus.StartEmbedded(bus.EmbeddedConfig{Host: "127.0.0.1", Port: port, DataDir: dir, Logger: testutil.Logger(), Keys: testutil.NATSKeys()})
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	srv := start(-1)
	u, _ := url.Parse(srv.ClientURL())
	port, _ := strconv.Atoi(u.Port())
	e := &env{t: t, url: srv.ClientURL()}
	nc, err := bus.Connect(testutil.CredURL(t, e.url, bus.RoleAll, ""), "test", testutil.Logger())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	e.nc = nc
	e.js, _ = jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := bus.EnsureStreams(ctx, e.js, bus.StreamConfig{}); err != nil {
		t.Fatal(err)
	}
	g := e.gateway(nil)
	v := g.dial(t, "fo", "v", "")
	defer v.close()
	v.welcome(t)
	for i := range 5 {
		e.gift("fo", "before-"+strconv.Itoa(i))
	}
	v.collect(t, 10*time.Second, func(m []protocol.Message) bool { return countType(m, protocol.TypeGift) == 5 })

	srv.Close()
	srv = start(port)
	defer srv.Close()
	testutil.Eventually(t, 20*time.Second, "clients reconnect", func() bool { return nc.IsConnected() && g.nc.IsConnected() })
	var ids []string
	for i := range 5 {
		id := "after-" + strconv.Itoa(i)
		ids = append(ids, id)
		for attempt := 0; ; attempt++ {
			pctx, pcancel := context.WithTimeout(context.Background(), 2*time.Second)
			_, err := e.js.Publish(pctx, bus.StoreSubject("fo"), protocol.Encode(protocol.Message{ID: id, Type: protocol.TypeGift, TS: time.Now().UnixMilli()}), jetstream.WithMsgID(id))
			pcancel()
			if err == nil {
				break
			}
			if attempt > 20 {
				t.Fatalf("publish after restart: %v", err)
			}
			time.Sleep(250 * time.Millisecond)
		}
	}
	msgs, _ := v.collect(t, 20*time.Second, func(m []protocol.Message) bool { return countType(m, protocol.TypeGift) >= 5 })
	got := giftIDs(msgs)
	if len(got) != 5 {
		t.Fatalf("after restart got %v, want %v", got, ids)
	}
	for i := range ids {
		if got[i] != ids[i] {
			t.Fatalf("after restart got %v, want %v", got, ids)
		}
	}
	// Nothing more (no duplicate replay of the first five) arrives.
	e2 := "barrier"
	e.gift("fo", e2)
	msgs, _ = v.collect(t, 10*time.Second, func(m []protocol.Message) bool { return countType(m, protocol.TypeGift) >= 1 })
	if got := giftIDs(msgs); len(got) != 1 || got[0] != e2 {
		t.Fatalf("after the barrier got %v", got)
	}
}

// TestJoinsDuringNATSTrouble: with its NATS server gone, a gateway still
// admits viewers to a room it hosts, from memory; a join it cannot serve (a
// room it does not host, or a since beyond what it has) is refused at once
// with a retry hint, before the upgrade, so the client tries another
// gateway; once NATS is back, joins to new rooms work again.
func TestJoinsDuringNATSTrouble(t *testing.T) {
	dir := t.TempDir()
	start := func(port int) *bus.Embedded {
		e, err := bus.StartEmbedded(bus.EmbeddedConfig{Host: "127.0.0.1", Port: port, DataDir: dir, Logger: testutil.Logger(), Keys: testutil.NATSKeys()})
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	srv := start(-1)
	u, _ := url.Parse(srv.ClientURL())
	port, _ := strconv.Atoi(u.Port())
	e := &env{t: t, url: srv.ClientURL()}
	nc, err := bus.Connect(testutil.CredURL(t, e.url, bus.RoleAll, ""), "test", testutil.Logger())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	e.nc = nc
	e.js, _ = jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := bus.EnsureStreams(ctx, e.js, bus.StreamConfig{}); err != nil {
		t.Fatal(err)
	}
	g := e.gateway(nil)
	keeper := g.dial(t, "hosted", "keeper", "")
	defer keeper.close()
	keeper.welcome(t)
	seq := e.gift("hosted", "before")
	keeper.collect(t, 10*time.Second, func(m []protocol.Message) bool { return countType(m, protocol.TypeGift) == 1 })

	srv.Close()
	testutil.Eventually(t, 10*time.Second, "the gateway notices NATS is gone", func() bool { return !g.nc.IsConnected() })
	// A hosted room: admitted from memory, with the room's sequence.
	t0 := time.Now()
	v := g.dial(t, "hosted", "late", "&since="+strconv.FormatUint(seq, 10))
	if w := v.welcome(t); w.Seq != seq {
		t.Fatalf("welcome seq %d from memory, want %d", w.Seq, seq)
	}
	v.close()
	if d := time.Since(t0); d > 2*time.Second {
		t.Errorf("a join from memory took %v", d)
	}
	// Not servable without NATS: refused before the upgrade, with a hint.
	for _, q := range []struct{ room, query string }{{"fresh", ""}, {"hosted", "&since=" + strconv.FormatUint(seq+5, 10)}} {
		_, err := g.tryDial(q.room, testutil.Token(t, "x", protocol.RoleViewer), q.query)
		var se ws.StatusError
		if !errors.As(err, &se) || int(se) != http.StatusServiceUnavailable {
			t.Errorf("join %s%s during the outage: %v, want a 503", q.room, q.query, err)
		}
	}
	srv = start(port)
	defer srv.Close()
	testutil.Eventually(t, 20*time.Second, "the gateway reconnects", func() bool { return g.nc.IsConnected() })
	v2 := g.dial(t, "fresh", "after", "")
	defer v2.close()
	v2.welcome(t)
}

// TestBeatsAtOnceWhenNATSComesBack: while a gateway's NATS connection is
// away its beats go nowhere, so dispatch sees it silent; when the
// connection comes back the gateway beats at once, not an interval later.
func TestBeatsAtOnceWhenNATSComesBack(t *testing.T) {
	e := newEnv(t)
	g := e.gateway(func(c *Config) { c.ID = "gw-back"; c.BeatInterval = time.Minute })
	beats := make(chan struct{}, 16)
	sub, err := e.nc.Subscribe(bus.BeatSubject("gw-back"), func(*nats.Msg) { beats <- struct{}{} })
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := e.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	// The beat at start, if it came after the subscription, is not the one
	// this test waits for.
	time.Sleep(500 * time.Millisecond)
	for len(beats) > 0 {
		<-beats
	}
	if err := g.nc.ForceReconnect(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-beats:
	case <-time.After(20 * time.Second):
		t.Fatal("no beat within 20 s of the reconnect (the interval is a minute)")
	}
}
