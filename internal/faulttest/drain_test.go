package faulttest

import (
	"context"
	"encoding/json"
	"net/http"
	"os/exec"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/liveroom/liveroom/client"
	"github.com/liveroom/liveroom/internal/protocol"
	"github.com/liveroom/liveroom/internal/testutil"
)

// giftLoad sends gifts to rooms at rate per second until stop is closed and
// records what was acknowledged.
type giftLoad struct {
	mu    sync.Mutex
	acked map[string]string // gift id → room
	sent  int
	fails int
	wg    sync.WaitGroup
}

func startGifts(t *testing.T, c *cluster, rooms []string, rate int, stop <-chan struct{}) *giftLoad {
	g := &giftLoad{acked: map[string]string{}}
	tok := testutil.Token(t, "sender", protocol.RoleViewer)
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		tk := time.NewTicker(time.Second / time.Duration(rate))
		defer tk.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-tk.C:
			}
			room := rooms[i%len(rooms)]
			g.wg.Add(1)
			go func() {
				defer g.wg.Done()
				s := &client.Sender{BaseURL: c.uplinks[i%len(c.uplinks)], Token: tok}
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				r, err := s.Gift(ctx, room, "rose", 1, "key-"+strconv.Itoa(i))
				g.mu.Lock()
				defer g.mu.Unlock()
				g.sent++
				if err != nil {
					g.fails++
					return
				}
				g.acked[r.ID] = room
			}()
		}
	}()
	return g
}

// check waits until every viewer has every acknowledged gift of its room,
// then fails the test for any gift missing or doubled.
func (g *giftLoad) check(t *testing.T, vs []*viewer, roomOf func(*viewer) string) {
	t.Helper()
	g.wg.Wait()
	count := func() (missing, doubled int) {
		for _, v := range vs {
			v.mu.Lock()
			for id, room := range g.acked {
				if room != roomOf(v) {
					continue
				}
				switch n := len(v.arrived[id]); {
				case n == 0:
					missing++
				case n > 1:
					doubled++
				}
			}
			v.mu.Unlock()
		}
		return
	}
	deadline := time.Now().Add(20 * time.Second)
	missing, doubled := count()
	for missing > 0 && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
		missing, doubled = count()
	}
	t.Logf("gifts sent %d, acked %d, failed %d; missing %d, doubled %d", g.sent, len(g.acked), g.fails, missing, doubled)
	if missing > 0 || doubled > 0 || len(g.acked) == 0 {
		t.Errorf("gifts missing %d, doubled %d (acked %d)", missing, doubled, len(g.acked))
	}
}

func connectViewers(t *testing.T, c *cluster, n, rooms int) []*viewer {
	t.Helper()
	return connectViewersFrom(t, c, 0, n, rooms)
}

// connectViewersFrom connects n viewers numbered from first on, all at once
// (at most 200 handshakes in flight), through dispatch.
func connectViewersFrom(t *testing.T, c *cluster, first, n, rooms int) []*viewer {
	t.Helper()
	vs := make([]*viewer, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 200)
	for i := range vs {
		id := first + i
		vs[i] = &viewer{id: id, user: "v" + strconv.Itoa(id), room: "room" + strconv.Itoa(id%rooms), arrived: map[string][]time.Time{}}
		tokens.Store(vs[i].user, testutil.Token(t, vs[i].user, protocol.RoleViewer))
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := vs[i].connect(ctx, c.dispatch, 0); err != nil {
				t.Errorf("viewer %d: %v", i, err)
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	t.Cleanup(func() {
		for _, v := range vs {
			v.mu.Lock()
			c := v.conn
			v.mu.Unlock()
			_ = c.Close()
		}
	})
	return vs
}

func roomOfViewer(rooms int) func(*viewer) string {
	return func(v *viewer) string { return "room" + strconv.Itoa(v.id%rooms) }
}

// TestDrainMovesViewersGently drains a gateway holding 3,000 viewers in 30
// rooms over a 10 s window while gifts flow.
func TestDrainMovesViewersGently(t *testing.T) {
	if raceEnabled {
		t.Skip("runs without -race (make test runs it): 3,000 viewers and five processes on two cores")
	}
	const (
		viewers = 3000
		rooms   = 30
		window  = 10 * time.Second
		rate    = 400 // reconnects per second at most
	)
	c := startCluster(t, 1, 1, 1, "--drain-window", window.String(), "--drain-rate", strconv.Itoa(rate), "--drain-delay", "1s", "--max-conns", "19000")
	vs := connectViewers(t, c, viewers, rooms)
	// A second gateway joins; the viewers will move there.
	c.addGateway(t, "--drain-window", window.String())

	stop := make(chan struct{})
	roomNames := make([]string, rooms)
	for i := range roomNames {
		roomNames[i] = "room" + strconv.Itoa(i)
	}
	gifts := startGifts(t, c, roomNames, 20, stop)
	time.Sleep(time.Second)

	// Watch dispatch all along: it must never offer the draining gateway.
	var offered atomic.Int64
	var polls atomic.Int64
	watchStop := make(chan struct{})
	watchDone := make(chan struct{})
	drainStart := time.Now()
	out, err := exec.Command(testutil.Binary(t), "drain", "--gateway", "gw0", "--nats-url", c.natsURLs, "--nats-key-file", c.keyFile).CombinedOutput()
	if err != nil {
		t.Fatalf("liveroom drain: %v\n%s", err, out)
	}
	go func() {
		defer close(watchDone)
		for {
			select {
			case <-watchStop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			resp, err := http.Get(c.dispatch + "/v1/dispatch?room=room1")
			if err != nil {
				continue
			}
			var a struct {
				Gateways []struct{ ID string } `json:"gateways"`
			}
			_ = json.NewDecoder(resp.Body).Decode(&a)
			resp.Body.Close()
			polls.Add(1)
			for _, g := range a.Gateways {
				if g.ID == "gw0" {
					offered.Add(1)
				}
			}
		}
	}()
	if !c.gateways[0].WaitExit(window + 30*time.Second) {
		t.Fatal("drained gateway did not exit")
	}
	exited := time.Since(drainStart)
	close(watchStop)
	<-watchDone
	close(stop)
	gifts.check(t, vs, roomOfViewer(rooms))

	// Every viewer reconnected to gw1 within the window plus 5 s (plus the
	// 1 s delay before the first notice), never faster than the rate.
	var lefts []time.Time
	late := 0
	var last time.Duration
	for _, v := range vs {
		v.mu.Lock()
		moved := false
		for _, h := range v.reconnects {
			if h.from == "gw0" && !h.joined.IsZero() && h.to == "gw1" {
				moved = true
				lefts = append(lefts, h.left)
				if d := h.joined.Sub(drainStart); d > last {
					last = d
				}
				if h.joined.Sub(drainStart) > time.Second+window+5*time.Second {
					late++
				}
			}
		}
		v.mu.Unlock()
		if !moved {
			t.Errorf("viewer %d never moved to gw1", v.id)
			break
		}
	}
	slices.SortFunc(lefts, func(a, b time.Time) int { return a.Compare(b) })
	peak := 0
	for i, j := 0, 0; i < len(lefts); i++ {
		for lefts[i].Sub(lefts[j]) >= time.Second {
			j++
		}
		peak = max(peak, i-j+1)
	}
	t.Logf("drain of %d viewers: last reconnected %.1fs after the order, gateway exited after %.1fs; peak %d reconnects in any 1 s (limit %d); dispatch polled %d times during the drain, offered the draining gateway %d times",
		len(lefts), last.Seconds(), exited.Seconds(), peak, rate, polls.Load(), offered.Load())
	if late > 0 {
		t.Errorf("%d viewers reconnected later than the window plus 5 s", late)
	}
	if peak > rate {
		t.Errorf("peak reconnect rate %d/s exceeds the limit %d/s", peak, rate)
	}
	if offered.Load() > 0 {
		t.Errorf("dispatch offered the draining gateway %d times", offered.Load())
	}
}

// TestRollingRestartLosesNoGift drains and restarts every gateway in turn
// (SIGTERM, as Kubernetes does) under traffic.
func TestRollingRestartLosesNoGift(t *testing.T) {
	if raceEnabled {
		t.Skip("runs without -race (make test runs it)")
	}
	const rooms = 10
	c := startCluster(t, 1, 2, 3, "--drain-window", "3s", "--drain-delay", "1s")
	vs := connectViewers(t, c, 300, rooms)
	stop := make(chan struct{})
	roomNames := make([]string, rooms)
	for i := range roomNames {
		roomNames[i] = "room" + strconv.Itoa(i)
	}
	gifts := startGifts(t, c, roomNames, 30, stop)
	for i, gw := range c.gateways {
		time.Sleep(time.Second)
		t.Logf("SIGTERM gw%d", i)
		gw.Signal(syscall.SIGTERM)
		if !gw.WaitExit(30 * time.Second) {
			t.Fatalf("gw%d did not exit after draining", i)
		}
		gw.Start()
		testutil.WaitHTTP(t, c.gwURLs[i]+"/healthz", 30*time.Second)
		testutil.Eventually(t, 10*time.Second, "dispatch sees the restarted gateway", func() bool {
			return slices.Contains(c.activeGateways(), "gw"+strconv.Itoa(i))
		})
	}
	time.Sleep(time.Second)
	close(stop)
	gifts.check(t, vs, roomOfViewer(rooms))
	moves := 0
	for _, v := range vs {
		v.mu.Lock()
		moves += len(v.reconnects)
		if v.fatal != nil {
			t.Errorf("viewer %d ended: %v", v.id, v.fatal)
		}
		v.mu.Unlock()
	}
	t.Logf("rolling restart of %d gateways: %d viewer moves", len(c.gateways), moves)
}
