package gateway

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/liveroom/liveroom/internal/bus"
	"github.com/liveroom/liveroom/internal/moderation"
	"github.com/liveroom/liveroom/internal/protocol"
	"github.com/liveroom/liveroom/internal/testutil"
)

func TestRoomsAreIsolated(t *testing.T) {
	e := newEnv(t)
	g := e.gateway(nil)
	a1, a2, b := g.dial(t, "A", "v1", ""), g.dial(t, "A", "v2", ""), g.dial(t, "B", "v3", "")
	defer a1.close()
	defer a2.close()
	defer b.close()
	for _, v := range []*viewer{a1, a2, b} {
		v.welcome(t)
	}
	e.danmaku("A", "hello A", false)
	e.danmaku("B", "hello B", false)
	for _, v := range []*viewer{a1, a2} {
		msgs, _ := v.collect(t, 5*time.Second, func(m []protocol.Message) bool { return countType(m, protocol.TypeDanmaku) >= 1 })
		if msgs[0].Text != "hello A" {
			t.Fatalf("A viewer got %+v", msgs)
		}
	}
	msgs, _ := b.collect(t, 5*time.Second, func(m []protocol.Message) bool { return countType(m, protocol.TypeDanmaku) >= 1 })
	for _, m := range msgs {
		if m.Type == protocol.TypeDanmaku && m.Text != "hello B" {
			t.Fatalf("B viewer got a message of another room: %+v", m)
		}
	}
}

func TestInterestOnlyHostingGatewayReceives(t *testing.T) {
	e := newEnv(t)
	g1, g2, g3 := e.gateway(nil), e.gateway(nil), e.gateway(nil)
	v := g1.dial(t, "hot", "v1", "")
	defer v.close()
	v.welcome(t)
	// A viewer of another room on gateway 2 proves gateway 2 is alive and
	// subscribed to something, just not to "hot".
	o := g2.dial(t, "other", "v2", "")
	defer o.close()
	o.welcome(t)
	before2, before3 := g2.nc.Stats().InMsgs, g3.nc.Stats().InMsgs
	for i := range 50 {
		e.danmaku("hot", "m"+string(rune('a'+i%26)), true)
	}
	e.gift("hot", "g-interest")
	msgs, _ := v.collect(t, 10*time.Second, func(m []protocol.Message) bool {
		return countType(m, protocol.TypeDanmaku) == 50 && countType(m, protocol.TypeGift) == 1
	})
	if len(msgs) < 51 {
		t.Fatalf("got %d messages", len(msgs))
	}
	// Everything for "hot" has reached gateway 1. A message to "other" sent
	// after it reaches gateway 2 after "hot"'s traffic would have (NATS keeps
	// order per publisher), so once it arrives, gateway 2's counters are final.
	e.danmaku("other", "barrier", false)
	o.collect(t, 5*time.Second, func(m []protocol.Message) bool { return countType(m, protocol.TypeDanmaku) == 1 })
	if got := g1.Stats().LiveIn.Load(); got < 50 {
		t.Fatalf("gateway 1 received %d live messages, want 50", got)
	}
	if got := g2.Stats().LiveIn.Load(); got != 1 {
		t.Fatalf("gateway 2 received %d live messages, want only the 1 of its own room", got)
	}
	if g2.Stats().ReliableIn.Load() != 0 || g3.Stats().ReliableIn.Load() != 0 {
		t.Fatal("a gateway without viewers in the room received its gifts")
	}
	if got := g3.nc.Stats().InMsgs - before3; got != 0 {
		t.Fatalf("gateway 3 (no viewers) received %d NATS messages", got)
	}
	// Gateway 2's NATS connection carried only its own room: the barrier and
	// presence of "other" (its own, echoed), never the 51 messages of "hot".
	if got := g2.nc.Stats().InMsgs - before2; got >= 50 {
		t.Fatalf("gateway 2 received %d NATS messages, as if it had the hot room", got)
	}
	if g3.Stats().RoomsStarted.Load() != 0 {
		t.Fatal("gateway 3 subscribed to a room it does not host")
	}
}

func TestMergeWindowEncodesOncePerRoom(t *testing.T) {
	e := newEnv(t)
	g := e.gateway(func(c *Config) { c.MergeWindow = 200 * time.Millisecond; c.ViewerBudget = 100000 })
	var vs []*viewer
	for i := range 5 {
		v := g.dial(t, "merge", "v"+string(rune('0'+i)), "")
		defer v.close()
		v.welcome(t)
		vs = append(vs, v)
	}
	for i := range 100 {
		e.danmaku("merge", "msg", i%2 == 0)
	}
	for _, v := range vs {
		msgs, frames := v.collect(t, 10*time.Second, func(m []protocol.Message) bool { return countType(m, protocol.TypeDanmaku) == 100 })
		if frames > 3 {
			t.Fatalf("100 messages sent inside one window arrived in %d frames, want ≤ 3", frames)
		}
		_ = msgs
	}
	// Every frame was encoded once for the room and written to all 5.
	enc, out := g.Stats().FramesEncoded.Load(), g.Stats().FramesOut.Load()
	if enc == 0 || out < 5*enc-10 || out > 5*enc+10 {
		t.Fatalf("frames encoded %d, written %d: want written ≈ 5 × encoded", enc, out)
	}
}

func TestViewerBudgetSamplesLiveButNeverGifts(t *testing.T) {
	e := newEnv(t)
	const budget = 30
	g := e.gateway(func(c *Config) { c.ViewerBudget = budget })
	v := g.dial(t, "busy", "v1", "")
	defer v.close()
	v.welcome(t)
	start := time.Now()
	stop := make(chan struct{})
	var sent atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		tk := time.NewTicker(10 * time.Millisecond) // 3 per tick = 300/s
		defer tk.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tk.C:
				for range 3 {
					e.danmaku("busy", "spam", false)
					sent.Add(1)
				}
			}
		}
	}()
	var giftIDs []string
	for i := range 10 {
		id := "gift-" + string(rune('a'+i))
		e.gift("busy", id)
		giftIDs = append(giftIDs, id)
		time.Sleep(100 * time.Millisecond)
	}
	close(stop)
	<-done
	msgs, _ := v.collect(t, 10*time.Second, func(m []protocol.Message) bool { return countType(m, protocol.TypeGift) == 10 })
	elapsed := time.Since(start).Seconds()
	// Drain what is still in flight (one window).
	if typ, raw, err := v.read(300 * time.Millisecond); err == nil && typ == protocol.FrameBatch {
		var b protocol.Batch
		_ = json.Unmarshal(raw, &b)
		msgs = append(msgs, b.Msgs...)
	}
	got := countType(msgs, protocol.TypeDanmaku)
	// The allowance accrues budget×t and carries at most one window's worth.
	limit := int(budget*(elapsed+0.3)) + 2
	if got > limit {
		t.Fatalf("viewer got %d danmaku in %.1fs, budget allows %d", got, elapsed, limit)
	}
	if got == 0 || g.Stats().DroppedSampled.Load() == 0 {
		t.Fatalf("sampling did not happen: got %d, dropped %d of %d", got, g.Stats().DroppedSampled.Load(), sent.Load())
	}
	seen := map[string]int{}
	for _, m := range msgs {
		if m.Type == protocol.TypeGift {
			seen[m.ID]++
		}
	}
	for _, id := range giftIDs {
		if seen[id] != 1 {
			t.Fatalf("gift %s delivered %d times", id, seen[id])
		}
	}
}

// TestLikeAggregatesAreNeverSampled floods a room far over the viewer
// budget with danmaku and like aggregates in the same windows: every like
// reaches the viewer once, and a later viewer's welcome carries the total.
func TestLikeAggregatesAreNeverSampled(t *testing.T) {
	e := newEnv(t)
	g := e.gateway(func(c *Config) { c.ViewerBudget = 1 })
	v := g.dial(t, "likes", "v1", "")
	defer v.close()
	v.welcome(t)
	var likeIDs []string
	var total int64
	for range 10 {
		for range 20 {
			e.danmaku("likes", "spam", false)
		}
		total += 3
		likeIDs = append(likeIDs, e.like("likes", 3, total).ID)
		for range 20 {
			e.danmaku("likes", "spam", false)
		}
		time.Sleep(20 * time.Millisecond)
	}
	msgs, _ := v.collect(t, 10*time.Second, func(m []protocol.Message) bool { return countType(m, protocol.TypeLike) == len(likeIDs) })
	if g.Stats().DroppedSampled.Load() == 0 {
		t.Fatalf("sampling did not happen: got %d danmaku of 400", countType(msgs, protocol.TypeDanmaku))
	}
	seen := map[string]int{}
	for _, m := range msgs {
		if m.Type == protocol.TypeLike {
			seen[m.ID]++
		}
	}
	for _, id := range likeIDs {
		if seen[id] != 1 {
			t.Fatalf("like aggregate %s delivered %d times", id, seen[id])
		}
	}
	w := g.dial(t, "likes", "v2", "")
	defer w.close()
	if got := w.welcome(t).Likes; got != total {
		t.Fatalf("welcome likes %d, want %d", got, total)
	}
}

func TestSlowConsumerIsIsolatedAndBounded(t *testing.T) {
	e := newEnv(t)
	g := e.gateway(func(c *Config) { c.ViewerBudget = 100000; c.QueueFrames = 32 })
	slow := g.dialSmallBuffer(t, "slow", "slowpoke")
	defer slow.close()
	slow.welcome(t)
	fast := g.dial(t, "slow", "fast", "")
	defer fast.close()
	fast.welcome(t)
	big := strings.Repeat("x", 60000)
	// Flood the room with big live messages and a gift every 10, until the
	// slow viewer's queue is full when a gift comes (bounded: 600 × 60 KB).
	var sentD, sentG atomic.Int64
	go func() {
		for i := 0; i < 600 && g.Stats().ClosedSlow.Load() == 0; i++ {
			e.danmaku("slow", big, false)
			sentD.Add(1)
			if i%10 == 9 {
				e.gift("slow", "gift-"+strconv.Itoa(i))
				sentG.Add(1)
			}
			time.Sleep(2 * time.Millisecond)
		}
		e.gift("slow", "gift-end")
		sentG.Add(1)
	}()
	// The fast viewer counts without decoding, so that it keeps up even
	// under the race detector.
	danmaku, gifts, end := 0, 0, false
	_ = fast.conn.SetReadDeadline(time.Now().Add(60 * time.Second))
	for !end {
		b, op, err := wsutil.ReadServerData(rw{fast.rd, fast.conn})
		if err != nil {
			t.Fatalf("fast viewer: %v after %d danmaku", err, danmaku)
		}
		if op == ws.OpText {
			danmaku += bytes.Count(b, []byte(`"type":"danmaku"`))
			gifts += bytes.Count(b, []byte(`"type":"gift"`))
			end = bytes.Contains(b, []byte(`"gift-end"`))
		}
	}
	if danmaku != int(sentD.Load()) || gifts != int(sentG.Load()) {
		t.Fatalf("fast viewer got %d of %d danmaku and %d of %d gifts", danmaku, sentD.Load(), gifts, sentG.Load())
	}
	if g.Stats().ClosedSlow.Load() != 1 {
		t.Fatalf("slow viewer not closed for a reliable message it could not take (dropped %d live)", g.Stats().DroppedQueueFull.Load())
	}
	// Memory stayed bounded: no connection ever held more than the queue.
	for _, c := range g.hub.allConns(nil) {
		c.mu.Lock()
		n, b := len(c.backlog), c.queued
		c.mu.Unlock()
		if n > g.cfg.QueueFrames || b > g.cfg.QueueBytes+len(big)*20 {
			t.Fatalf("backlog of %d frames, %d bytes exceeds the queue bound", n, b)
		}
	}
}

// TestBadUpgradeRequests runs refused handshakes through both front ends:
// the gateway's own (Server.Listener) and net/http's (Handler alone). Both
// answer the same JSON errors.
func TestBadUpgradeRequests(t *testing.T) {
	for _, viaHTTP := range []bool{false, true} {
		name := "own handshake"
		if viaHTTP {
			name = "net/http"
		}
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			e.viaHTTP = viaHTTP
			testBadUpgradeRequests(t, e.gateway(func(c *Config) { c.MaxHeaderBytes = 8 << 10 }))
		})
	}
}

func testBadUpgradeRequests(t *testing.T, g *gw) {
	tok := testutil.Token(t, "v1", protocol.RoleViewer)
	long := strings.Repeat("r", 65)
	cases := []struct {
		name, query string
		status      int
		code        string
	}{
		{"dot", "room=a.b&token=" + tok, 400, protocol.CodeInvalidRoom},
		{"star", "room=a*&token=" + tok, 400, protocol.CodeInvalidRoom},
		{"gt", "room=%3E&token=" + tok, 400, protocol.CodeInvalidRoom},
		{"too long", "room=" + long + "&token=" + tok, 400, protocol.CodeInvalidRoom},
		{"empty", "room=&token=" + tok, 400, protocol.CodeInvalidRoom},
		{"space", "room=a%20b&token=" + tok, 400, protocol.CodeInvalidRoom},
		{"bad since", "room=ok&since=-1&token=" + tok, 400, protocol.CodeInvalidField},
		{"no token", "room=ok", 401, protocol.CodeUnauthorized},
		{"bad token", "room=ok&token=abc", 401, protocol.CodeUnauthorized},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			checkUpgradeError(t, g, tc.query, true, tc.status, tc.code)
		})
	}
	t.Run("plain GET", func(t *testing.T) {
		checkUpgradeError(t, g, "room=ok&token="+tok, false, 400, protocol.CodeBadRequest)
	})
	addr := g.http.Listener.Addr().String()
	ok := "GET /v1/ws?room=ok&token=" + tok + " HTTP/1.1\r\nHost: " + addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
	raw := []struct {
		name, req string
		status    int
		code      string
	}{
		{"version 8", ok + "Sec-WebSocket-Version: 8\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n", 426, protocol.CodeBadRequest},
		{"short key", ok + "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: c2hvcnQ=\r\n\r\n", 400, protocol.CodeBadRequest},
		{"no key", ok + "Sec-WebSocket-Version: 13\r\n\r\n", 400, protocol.CodeBadRequest},
		{"HTTP/1.0", strings.Replace(ok, "HTTP/1.1", "HTTP/1.0", 1) + "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n", 400, protocol.CodeBadRequest},
	}
	for _, tc := range raw {
		t.Run(tc.name, func(t *testing.T) {
			status, hdr, code := rawRequest(t, addr, tc.req)
			if status != tc.status || code != tc.code {
				t.Fatalf("got %d %q, want %d %q", status, code, tc.status, tc.code)
			}
			if status == 426 && hdr.Get("Sec-WebSocket-Version") != "13" {
				t.Fatal("426 without Sec-WebSocket-Version: 13")
			}
		})
	}
	t.Run("head too large", func(t *testing.T) {
		req := ok + "X-Filler: " + strings.Repeat("x", 16<<10) + "\r\n\r\n"
		if status, _, _ := rawRequest(t, addr, req); status != 431 {
			t.Fatalf("got %d, want 431", status)
		}
	})
	t.Run("other paths reach net/http", func(t *testing.T) {
		for _, path := range []string{"/v1/wsx", "/v1/ws/", "/"} {
			resp, err := http.Get(g.http.URL + path)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusNotFound {
				t.Fatalf("GET %s: %d, want net/http's 404", path, resp.StatusCode)
			}
		}
	})
	if g.Stats().RoomsStarted.Load() != 0 {
		t.Fatal("a rejected request started a room subscription")
	}
}

// rawRequest sends req as it is to addr and returns the answer's status,
// headers and JSON error code.
func rawRequest(t *testing.T, addr, req string) (int, http.Header, string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("reading the answer: %v", err)
	}
	defer resp.Body.Close()
	var body struct {
		Error protocol.ErrorBody `json:"error"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, resp.Header, body.Error.Code
}

func checkUpgradeError(t *testing.T, g *gw, query string, upgrade bool, status int, code string) {
	t.Helper()
	req, _ := http.NewRequest("GET", g.http.URL+"/v1/ws?"+query, nil)
	if upgrade {
		req.Header.Set("Connection", "Upgrade")
		req.Header.Set("Upgrade", "websocket")
		req.Header.Set("Sec-WebSocket-Version", "13")
		req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Error protocol.ErrorBody `json:"error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("error body is not JSON: %v", err)
	}
	if resp.StatusCode != status || body.Error.Code != code {
		t.Fatalf("got %d %q, want %d %q", resp.StatusCode, body.Error.Code, status, code)
	}
}

func TestOversizedClientFrameClosesOnlyThatConnection(t *testing.T) {
	e := newEnv(t)
	g := e.gateway(func(c *Config) { c.ReadLimit = 1024 })
	bad, good := g.dial(t, "r", "bad", ""), g.dial(t, "r", "good", "")
	defer bad.close()
	defer good.close()
	bad.welcome(t)
	good.welcome(t)
	if err := wsutil.WriteClientText(bad.conn, []byte(strings.Repeat("x", 5000))); err != nil {
		t.Fatal(err)
	}
	// The bad connection gets an error frame, then is closed.
	typ, raw := bad.next(t, 5*time.Second)
	if typ != protocol.FrameError || !strings.Contains(string(raw), protocol.CodeFrameTooLarge) {
		t.Fatalf("got %s %s, want error frame_too_large", typ, raw)
	}
	if _, _, err := bad.read(5 * time.Second); err == nil {
		t.Fatal("connection still open after an oversized frame")
	}
	e.danmaku("r", "still here", false)
	good.collect(t, 5*time.Second, func(m []protocol.Message) bool { return countType(m, protocol.TypeDanmaku) == 1 })
	testutil.Eventually(t, 5*time.Second, "gateway forgets the closed connection", func() bool { return g.Stats().Conns.Load() == 1 })
}

func TestClientPingGetsPongAndFramesSplitAcrossReads(t *testing.T) {
	e := newEnv(t)
	g := e.gateway(nil)
	v := g.dial(t, "p", "v1", "")
	defer v.close()
	v.welcome(t)
	// A masked ping written one byte at a time exercises partial frames.
	b := ws.MustCompileFrame(ws.MaskFrame(ws.NewPingFrame([]byte("hi"))))
	for i := range b {
		if _, err := v.conn.Write(b[i : i+1]); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Millisecond)
	}
	_ = v.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	h, err := ws.ReadHeader(v.rd)
	if err != nil {
		t.Fatal(err)
	}
	if h.OpCode != ws.OpPong || h.Length != 2 {
		t.Fatalf("got %v len %d, want pong with the ping's payload", h.OpCode, h.Length)
	}
}

// TestUserNoticeReachesOnlyThatUserAndKickCloses publishes on lr.user.<user>
// as the moderation service does: a notice reaches that user's connection
// in the notice's room and no one else; a kick closes it with an error.
func TestUserNoticeReachesOnlyThatUserAndKickCloses(t *testing.T) {
	e := newEnv(t)
	g := e.gateway(nil)
	v1 := g.dial(t, "mod", "v1", "")
	defer v1.close()
	v1.welcome(t)
	v2 := g.dial(t, "mod", "v2", "")
	defer v2.close()
	v2.welcome(t)
	notice := func(user, action string) {
		t.Helper()
		m := protocol.Message{ID: "n-" + action, Type: protocol.TypeNotice, Room: "mod", Action: action, Text: "hello"}
		if err := e.nc.Publish(bus.UserSubject(protocol.User(user)), protocol.Encode(m)); err != nil {
			t.Fatal(err)
		}
	}
	notice("v1", "mute")
	b := v1.batch(t, 5*time.Second)
	if len(b.Msgs) != 1 || b.Msgs[0].ID != "n-mute" || b.Room != "mod" {
		t.Fatalf("v1 got %+v, want its notice", b)
	}
	// v2 may get online counts, never v1's notice.
	for deadline := time.Now().Add(300 * time.Millisecond); time.Until(deadline) > 0; {
		_, raw, err := v2.read(time.Until(deadline))
		if err != nil {
			break
		}
		if bytes.Contains(raw, []byte("n-mute")) {
			t.Fatalf("v2 got v1's notice: %s", raw)
		}
	}
	notice("v1", moderation.ActionKick)
	typ, raw := v1.next(t, 5*time.Second)
	if typ != protocol.FrameError || !strings.Contains(string(raw), protocol.CodeKicked) {
		t.Fatalf("kicked viewer got %q %s, want a %s error", typ, raw, protocol.CodeKicked)
	}
	if _, _, err := v1.read(5 * time.Second); err == nil {
		t.Fatal("kicked viewer still connected")
	}
	testutil.Eventually(t, 5*time.Second, "kicked connection removed", func() bool { return g.Stats().Conns.Load() == 1 })
}

// TestKeepaliveClosesSilentConnections: the tick loop pings quiet
// connections; one that answers stays, one that stays silent past the idle
// timeout is closed and forgotten.
func TestKeepaliveClosesSilentConnections(t *testing.T) {
	e := newEnv(t)
	g := e.gateway(func(c *Config) { c.PingInterval, c.IdleTimeout = 300*time.Millisecond, 1500*time.Millisecond })
	silent := g.dial(t, "ka", "silent", "")
	defer silent.close()
	silent.welcome(t)
	lively := g.dial(t, "ka", "lively", "")
	defer lively.close()
	lively.welcome(t)
	pings := make(chan struct{}, 64)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			h, err := ws.ReadHeader(lively.rd)
			if err != nil {
				return
			}
			p := make([]byte, h.Length)
			if _, err := io.ReadFull(lively.rd, p); err != nil {
				return
			}
			if h.OpCode == ws.OpPing {
				_ = ws.WriteFrame(lively.conn, ws.MaskFrameInPlace(ws.NewPongFrame(p)))
				select {
				case pings <- struct{}{}:
				default:
				}
			}
		}
	}()
	testutil.Eventually(t, 10*time.Second, "the silent connection closed as idle", func() bool {
		return g.Stats().ClosedIdle.Load() == 1 && g.Stats().Conns.Load() == 1
	})
	select {
	case <-pings:
	default:
		t.Fatal("the answering connection was never pinged")
	}
	_ = silent.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.Copy(io.Discard, silent.rd); err != nil {
		t.Fatalf("the silent connection did not end cleanly: %v", err)
	}
	lively.close()
	<-done
}
