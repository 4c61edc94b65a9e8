package bench

import (
	"context"
	"encoding/json"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/liveroom/liveroom/internal/apikey"
	"github.com/liveroom/liveroom/internal/app"
	"github.com/liveroom/liveroom/internal/gateway"
	"github.com/liveroom/liveroom/internal/testutil"
	"github.com/liveroom/liveroom/internal/uplink"
)

// TestBenchEndToEnd runs a small bench with two child processes of the real
// binary against an all-in-one node, and checks the report: deliveries,
// delays, exactly-once gifts and the gateway's own CPU figures.
func TestBenchEndToEnd(t *testing.T) {
	exe := testutil.Binary(t)
	n := startNode(t, gateway.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	s := DefaultScenario()
	s.URL, s.Exe = n.URL(), exe
	s.Viewers, s.Procs = 200, 2
	s.Duration, s.Grace = Duration(5*time.Second), Duration(1500*time.Millisecond)
	s.DanmakuRate, s.GiftRate, s.LikeRate = 100, 5, 2
	rep, err := Run(ctx, s, Env{Progress: testWriter(t), Stderr: os.Stderr})
	if err != nil {
		t.Fatal(err)
	}
	w := rep.Window
	if rep.Connect.Welcomed != 200 || rep.Connect.Failed != 0 || w.Viewers != 200 {
		t.Fatalf("connect %+v, %d viewers at the end", rep.Connect, w.Viewers)
	}
	if w.Deliveries["danmaku"] == 0 || w.Deliveries["gift"] == 0 || w.FramesPerS == 0 || w.BytesPerS == 0 {
		t.Fatalf("deliveries %v frames/s %v", w.Deliveries, w.FramesPerS)
	}
	if w.Gifts.Acked < 20 || w.Gifts.Viewers != 200 || w.Gifts.Expected != int64(w.Gifts.Acked)*200 || w.Gifts.Lost != 0 || w.Gifts.Doubled != 0 {
		t.Fatalf("gifts %+v", w.Gifts)
	}
	for _, c := range []string{"danmaku", "gift"} {
		if d := w.Delay[c]; d.Count == 0 || d.P50 <= 0 || d.P99 < d.P50 || d.P99 > 5000 {
			t.Errorf("%s delay %+v", c, d)
		}
	}
	if w.Live.Expected == 0 || w.Live.Missing != 0 {
		t.Errorf("live %+v", w.Live)
	}
	g := w.Gateway
	if g == nil || len(w.Gateways) != 1 || g.Conns < 200 || g.CPUSeconds <= 0 || g.CPUPerFrameUS <= 0 || g.CPUPerMMsgs <= 0 || g.FramesPerSec <= 0 || g.RSSConnected <= 0 {
		t.Fatalf("gateway figures %+v", g)
	}
	if f := w.Sends["gift"]; f.Accepted != int64(w.Gifts.Acked) || f.Latency.Count == 0 {
		t.Errorf("gift sends %+v", f)
	}
	if err := rep.WriteTable(io.Discard); err != nil {
		t.Fatal(err)
	}
}

// TestBenchCompression runs the same small scenario with viewers that
// negotiate permessage-deflate and with viewers that do not, against a node
// that delivers every message (no sampling), and checks the byte figures:
// compressed frames are read and counted (wire) next to what they would
// have taken plain, and every message and gift still arrives exactly once.
func TestBenchCompression(t *testing.T) {
	n := startNode(t, gateway.Config{ViewerBudget: 1e6, MergeWindow: 100 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	run := func(noCompress bool) *WindowFigures {
		s := DefaultScenario()
		s.URL = n.URL()
		s.Viewers, s.Procs, s.NoCompress = 50, 0, noCompress
		s.Duration, s.Grace = Duration(3*time.Second), Duration(time.Second)
		s.DanmakuRate, s.GiftRate, s.LikeRate = 150, 3, 5
		rep, err := Run(ctx, s, Env{Progress: testWriter(t), Stderr: os.Stderr})
		if err != nil {
			t.Fatal(err)
		}
		w := rep.Window
		if w.Viewers != 50 || w.Deliveries["danmaku"] < 50*150*2 || w.Gifts.Lost != 0 || w.Gifts.Doubled != 0 || w.Live.Missing != 0 {
			t.Fatalf("no_compress %v: viewers %d, deliveries %v, gifts %+v, live %+v", noCompress, w.Viewers, w.Deliveries, w.Gifts, w.Live)
		}
		if err := rep.WriteTable(io.Discard); err != nil {
			t.Fatal(err)
		}
		return w
	}
	z, p := run(false), run(true)
	if z.Compressed < 0.5 || z.Wire.PerMsg*2 > z.Plain.PerMsg {
		t.Errorf("compressed run: %.0f %% of frames compressed, %.1f bytes per message on the wire against %.1f plain", z.Compressed*100, z.Wire.PerMsg, z.Plain.PerMsg)
	}
	if p.Compressed != 0 || p.Wire.PerMsg < p.Plain.PerMsg*0.95 || p.Wire.PerMsg > p.Plain.PerMsg*1.05 {
		t.Errorf("plain run: %.0f %% compressed, wire %.1f and plain %.1f bytes per message, want equal", p.Compressed*100, p.Wire.PerMsg, p.Plain.PerMsg)
	}
}

// TestFloorMode measures the bare-write floor: a raw server child writes
// fixed frames to the bench's plain TCP connections.
func TestFloorMode(t *testing.T) {
	s := DefaultScenario()
	s.Exe = testutil.Binary(t)
	s.Floor, s.Viewers, s.Procs = true, 100, 0
	s.FloorFPS, s.FloorSize, s.Duration = 20, 300, Duration(2*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rep, err := Run(ctx, s, Env{Progress: testWriter(t), Stderr: os.Stderr})
	if err != nil {
		t.Fatal(err)
	}
	f := rep.Floor
	if f == nil || f.Conns != 100 || f.Size != 300 || f.Writes < 100*20 || f.CPUSeconds <= 0 || f.USPerWrite <= 0 {
		t.Fatalf("floor %+v", f)
	}
	// The readers got what was written (± the frames in flight at the ends).
	if f.ReaderBytes < f.Writes*300*9/10 {
		t.Errorf("readers got %d bytes of %d writes × 300", f.ReaderBytes, f.Writes)
	}
}

// startNode starts an all-in-one node whose uplink takes any send rate.
func startNode(t *testing.T, gw gateway.Config) *app.Node {
	t.Helper()
	return startAppNode(t, app.Config{Uplink: uplink.Config{UserRate: 1000, UserBurst: 1000, RoomRate: 1e6}, Gateway: gw})
}

// startAppNode starts cfg on random ports in a temporary directory.
func startAppNode(t *testing.T, cfg app.Config) *app.Node {
	t.Helper()
	cfg.Addr, cfg.DataDir, cfg.NATSPort, cfg.Logger = "127.0.0.1:0", t.TempDir(), -1, testutil.Logger()
	n, err := app.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := n.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Close() })
	return n
}

type tw struct{ t *testing.T }

func (w tw) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

func testWriter(t *testing.T) io.Writer { return tw{t} }

// TestFlashEndToEnd runs `bench flash` in this process against an
// all-in-one node: 40 viewers over 1 s in two rooms, gifts during and
// after; the report's timeline, joins and gift window add up.
func TestFlashEndToEnd(t *testing.T) {
	n, err := app.New(app.Config{Addr: "127.0.0.1:0", DataDir: t.TempDir(), NATSPort: -1, Logger: testutil.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if err := n.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	var out strings.Builder
	args := []string{"--url", n.URL(), "--viewers", "40", "--ramp", "1s", "--rooms", "2", "--hot-share", "0.5",
		"--hold", "2s", "--procs", "0", "--gift-rate", "4", "--spread", "--duration", "2s", "--json"}
	if err := RunFlash(ctx, args, &out, testWriter(t)); err != nil {
		t.Fatal(err)
	}
	var rep FlashReport
	if err := json.Unmarshal([]byte(out.String()), &rep); err != nil {
		t.Fatalf("report: %v\n%s", err, out.String())
	}
	if rep.Joined != 40 || rep.Refused != 0 || rep.Connect.Count != 40 || rep.PeakGateways != 1 || rep.Fullest <= 0 {
		t.Fatalf("report %+v", rep)
	}
	last := rep.Timeline[len(rep.Timeline)-1]
	if len(rep.Timeline) < 3 || last.Welcomed != 40 || last.Gateways != 1 || last.Conns != 40 {
		t.Fatalf("timeline %+v", rep.Timeline)
	}
	if w := rep.Window; w == nil || w.Gifts.Acked == 0 || w.Gifts.Lost != 0 || w.Gifts.Doubled != 0 {
		t.Fatalf("gift window %+v", rep.Window)
	}
	var table strings.Builder
	if err := rep.writeTable(&table); err != nil || !strings.Contains(table.String(), "joins: 40 welcomed, 0 refused for good") {
		t.Fatalf("table %v:\n%s", err, table.String())
	}
}

// TestBenchPaidGifts runs the bench against a node with a secret that takes
// gifts only from the platform's backend: with --api-key the gifts go
// through the server API as paid gifts (both senders), and every acked one
// reaches every viewer once.
func TestBenchPaidGifts(t *testing.T) {
	exe := testutil.Binary(t)
	key := apikey.Generate()
	n := startAppNode(t, app.Config{JWTSecret: testutil.Secret, APIKeys: apikey.Config{Env: "bench:" + key}})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	for _, sender := range []string{"client", "raw"} {
		s := DefaultScenario()
		s.URL, s.Exe, s.Secret, s.APIKey, s.Sender = n.URL(), exe, testutil.Secret, key, sender
		s.Viewers, s.Procs = 40, 0
		s.Duration, s.Grace = Duration(3*time.Second), Duration(1500*time.Millisecond)
		s.DanmakuRate, s.GiftRate, s.LikeRate = 5, 5, 0
		rep, err := Run(ctx, s, Env{Progress: testWriter(t), Stderr: os.Stderr})
		if err != nil {
			t.Fatal(err)
		}
		g := rep.Window.Gifts
		if g.Acked < 5 || g.Lost != 0 || g.Doubled != 0 || rep.Window.Sends["gift"].Accepted != int64(g.Acked) {
			t.Fatalf("%s sender: gifts %+v, sends %+v", sender, g, rep.Window.Sends["gift"])
		}
	}
}
