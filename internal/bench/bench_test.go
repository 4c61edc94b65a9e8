package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/liveroom/liveroom/client"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// Pooled HTTP connections and the embedded NATS server's listeners
		// end with the process.
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
	)
}

func TestHistMergeAcrossProcesses(t *testing.T) {
	a, b := NewHist(), NewHist()
	for i := int64(1); i <= 900; i++ {
		a.Record(i * 1000) // 1..900 ms
	}
	for i := int64(1); i <= 100; i++ {
		b.Record(5_000_000 + i) // ~5 s: the slow tail lives in the other process
	}
	// Through JSON, as children send them.
	var got [2]*Hist
	for i, h := range []*Hist{a, b} {
		raw, err := json.Marshal(h)
		if err != nil {
			t.Fatal(err)
		}
		got[i] = new(Hist)
		if err := json.Unmarshal(raw, got[i]); err != nil {
			t.Fatal(err)
		}
	}
	m := NewHist()
	m.Merge(got[0])
	m.Merge(got[1])
	if m.Count() != 1000 {
		t.Fatalf("count %d, want 1000", m.Count())
	}
	if p50 := m.Quantile(0.5); p50 < 499_000 || p50 > 501_000 {
		t.Errorf("p50 %d µs, want ~500 ms", p50)
	}
	if p99 := m.Quantile(0.99); p99 < 4_990_000 || p99 > 5_010_000 {
		t.Errorf("p99 %d µs, want ~5 s (the tail of the second histogram)", p99)
	}
	if p89 := m.Quantile(0.89); p89 > 901_000 {
		t.Errorf("p89 %d µs, want ≤ 900 ms", p89)
	}
	s := m.Summary()
	if s.Count != 1000 || s.Max < 5000 || s.P50 < 499 || s.P50 > 501 {
		t.Errorf("summary %+v", s)
	}
	var bad Hist
	if err := json.Unmarshal([]byte(`"not a histogram"`), &bad); err == nil {
		t.Error("a bad histogram decoded")
	}
	hs := Hists{}
	hs.Merge(Hists{"gift": got[0]})
	hs.Merge(Hists{"gift": got[0], "danmaku": got[1]})
	if hs["gift"].Count() != 1800 || hs["danmaku"].Count() != 100 {
		t.Errorf("Hists.Merge: gift %d danmaku %d", hs["gift"].Count(), hs["danmaku"].Count())
	}
}

func TestParseScenario(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "s.json")
	if err := os.WriteFile(file, []byte(`{"url":"http://127.0.0.1:1","viewers":5000,"rooms":10,"hot_share":0.5,"danmaku_rate":300,"duration":"20s","procs":2}`), 0o644); err != nil {
		t.Fatal(err)
	}
	badFile := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(badFile, []byte(`{"viewrs":1}`), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("LIVEROOM_JWT_SECRET", "")
	tests := []struct {
		name    string
		args    []string
		wantErr string
		check   func(t *testing.T, s Scenario)
	}{
		{name: "defaults", args: []string{"--url", "http://127.0.0.1:1"}, check: func(t *testing.T, s Scenario) {
			if s.Viewers != 100 || s.Procs != 1 || s.DispatchURL != "http://127.0.0.1:1" || s.UplinkURL != s.DispatchURL || !strings.HasPrefix(s.RoomPrefix, "bench-") {
				t.Errorf("%+v", s)
			}
		}},
		{name: "file then flags", args: []string{"--scenario", file, "--viewers", "40000"}, check: func(t *testing.T, s Scenario) {
			if s.Viewers != 40000 || s.Rooms != 10 || s.DanmakuRate != 300 || time.Duration(s.Duration) != 20*time.Second {
				t.Errorf("%+v", s)
			}
			if s.Senders != 200 {
				t.Errorf("senders %d, want 300/1.5 = 200", s.Senders)
			}
		}, wantErr: "--procs 2 puts more than 18000 viewers in one child: use --procs 3"},
		{name: "file", args: []string{"--scenario=" + file}, check: func(t *testing.T, s Scenario) {
			if s.Viewers != 5000 || s.Procs != 2 || s.HotShare != 0.5 {
				t.Errorf("%+v", s)
			}
		}},
		{name: "procs from viewers", args: []string{"--url", "http://x:1", "--viewers", "100000"}, check: func(t *testing.T, s Scenario) {
			if s.Procs != 6 {
				t.Errorf("procs %d, want 6", s.Procs)
			}
		}},
		{name: "unknown field in file", args: []string{"--scenario", badFile}, wantErr: `unknown field "viewrs"`},
		{name: "missing file", args: []string{"--scenario", filepath.Join(dir, "nope.json")}, wantErr: "cannot read scenario"},
		{name: "no url", args: []string{"--viewers", "10"}, wantErr: "--url (or --dispatch-url) is required"},
		{name: "bad url", args: []string{"--url", "ws://x"}, wantErr: "must start with http://"},
		{name: "negative viewers", args: []string{"--url", "http://x:1", "--viewers", "-1"}, wantErr: "--viewers must be ≥ 0"},
		{name: "hot share", args: []string{"--url", "http://x:1", "--rooms", "3", "--hot-share", "1.5"}, wantErr: "--hot-share must be in [0,1]"},
		{name: "rooms", args: []string{"--url", "http://x:1", "--rooms", "0"}, wantErr: "--rooms must be ≥ 1"},
		{name: "rate", args: []string{"--url", "http://x:1", "--gift-rate", "-3"}, wantErr: "--gift-rate must be ≥ 0"},
		{name: "duration unit", args: []string{"--url", "http://x:1", "--duration", "10"}, wantErr: "want a duration with a unit"},
		{name: "duration zero", args: []string{"--url", "http://x:1", "--duration", "0s"}, wantErr: "--duration must be > 0"},
		{name: "in-process limit", args: []string{"--url", "http://x:1", "--viewers", "20000", "--procs", "0"}, wantErr: "--procs 0 holds every viewer in this process"},
		{name: "nothing to do", args: []string{"--url", "http://x:1", "--viewers", "0"}, wantErr: "nothing to do"},
		{name: "floor needs shape", args: []string{"--floor", "--viewers", "10"}, wantErr: "--floor needs --floor-fps > 0 and --floor-size > 0"},
		{name: "floor", args: []string{"--floor", "--viewers", "10", "--floor-fps", "20", "--floor-size", "300"}},
		{name: "floor and compare", args: []string{"--floor", "--floor-compare", "--viewers", "1", "--floor-fps", "1", "--floor-size", "2"}, wantErr: "exclude each other"},
		{name: "positional", args: []string{"--url", "http://x:1", "extra"}, wantErr: `unexpected argument "extra"`},
		{name: "room prefix", args: []string{"--url", "http://x:1", "--room-prefix", "a.b"}, wantErr: "--room-prefix must be"},
		{name: "senders sized", args: []string{"--url", "http://x:1", "--danmaku-rate", "20000", "--viewers", "0"}, check: func(t *testing.T, s Scenario) {
			if s.Senders != 13334 || s.SendWorkers != 500 {
				t.Errorf("senders %d workers %d", s.Senders, s.SendWorkers)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := ParseScenario(tc.args, io.Discard)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want it to contain %q", err, tc.wantErr)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			if tc.check != nil && (tc.wantErr == "" || err != nil) {
				tc.check(t, s)
			}
		})
	}
}

func TestPlanSplitsEveryRoom(t *testing.T) {
	s := DefaultScenario()
	s.Rooms, s.HotShare, s.RoomPrefix = 4, 0.5, "r"
	plan := s.Plan(1001)
	if plan[0].Room != "r-hot" || plan[0].Viewers != 501 {
		t.Fatalf("hot %+v", plan[0])
	}
	total := 0
	for _, p := range plan {
		total += p.Viewers
	}
	if total != 1001 || plan[1].Viewers != 167 || plan[3].Viewers != 166 {
		t.Fatalf("plan %+v", plan)
	}
	parts := splitPlan(plan, 3)
	per := map[string]int{}
	for _, part := range parts {
		n := 0
		for _, rp := range part {
			per[rp.Room] += rp.Viewers
			n += rp.Viewers
		}
		if n < 333 || n > 334 {
			t.Errorf("part holds %d viewers, want 333-334", n)
		}
	}
	for _, p := range plan {
		if per[p.Room] != p.Viewers {
			t.Errorf("room %s: split %d, want %d", p.Room, per[p.Room], p.Viewers)
		}
	}
}

func TestGiftAccounting(t *testing.T) {
	acked := []AckedGift{{Room: "hot", ID: "g1"}, {Room: "hot", ID: "g2"}, {Room: "hot", ID: "g2"}, {Room: "tail", ID: "g3"}}
	// Two processes saw the hot room on gateway a, one saw it on b.
	p1 := []*Group{{Gateway: "a", Room: "hot", Stayed: 3, Gifts: map[string]int{"g1": 3, "g2": 3}}}
	p2 := []*Group{
		{Gateway: "a", Room: "hot", Stayed: 2, Gifts: map[string]int{"g1": 2, "g2": 1}, Doubled: 1},
		{Gateway: "b", Room: "hot", Stayed: 4, Gifts: map[string]int{"g1": 4, "g2": 4, "gx": 1}},
		{Gateway: "b", Room: "tail", Stayed: 1},
	}
	groups := mergeGroups(mergeGroups(nil, p1), p2)
	if len(groups) != 3 || groups[0].Stayed != 5 || groups[0].Gifts["g2"] != 4 {
		t.Fatalf("merged %+v", groups[0])
	}
	c := checkGifts(acked, groups)
	want := GiftCheck{Acked: 3, Viewers: 10, Expected: 2*9 + 1, Lost: 1 + 1, Doubled: 1, Unacked: 1}
	if c != want {
		t.Fatalf("check %+v, want %+v", c, want)
	}

	// Per viewer: the poller's dedupe counts a repeated id as doubled even
	// when it comes back out of order.
	p := &poller{giftIdx: map[string]uint32{}}
	v := &vconn{}
	for _, id := range []string{"x1", "x2", "x3", "x2", "x1", "x4"} {
		p.gift(v, []byte(id))
	}
	w := &vconn{}
	p.gift(w, []byte("x3"))
	p.gift(w, []byte("x1"))
	p.gift(w, []byte("x1"))
	if v.doubled != 2 || len(v.gifts) != 4 || w.doubled != 1 || len(w.gifts) != 2 || w.gifts[0] != 0 || w.gifts[1] != 2 {
		t.Fatalf("v %+v w %+v", v, w)
	}

	live := checkLive([]*Group{{Stayed: 4, LiveMax: 100, LiveSum: 398}, {Stayed: 1, LiveMax: 50, LiveSum: 50}})
	if live.Expected != 450 || live.Missing != 2 {
		t.Fatalf("live %+v", live)
	}
}

func TestScanFrame(t *testing.T) {
	var f frameFields
	msgs, ok := scanFrame([]byte(`{"type":"batch","room":"r","msgs":[{"id":"a","type":"danmaku","user":"u","ts":1700000000123,"text":"x \"}] y"},{"ts":5,"extra":{"n":[1,{"a":"]"}]},"seq":7,"type":"gift","id":"g\"1"}]}`), &f, nil)
	if !ok || string(f.typ) != "batch" || len(msgs) != 2 {
		t.Fatalf("ok %v type %q msgs %d", ok, f.typ, len(msgs))
	}
	if string(msgs[0].typ) != "danmaku" || string(msgs[0].id) != "a" || msgs[0].ts != 1700000000123 {
		t.Errorf("msg 0 %+v", msgs[0])
	}
	if string(msgs[1].typ) != "gift" || string(msgs[1].id) != `g\"1` || msgs[1].ts != 5 || msgs[1].seq != 7 {
		t.Errorf("msg 1 %q %q %d %d", msgs[1].typ, msgs[1].id, msgs[1].ts, msgs[1].seq)
	}
	msgs, ok = scanFrame([]byte(`{ "seq" : 12 , "gateway":"gw-1","type":"welcome","online":3}`), &f, msgs[:0])
	if !ok || string(f.typ) != "welcome" || string(f.gateway) != "gw-1" || f.seq != 12 || len(msgs) != 0 {
		t.Errorf("welcome %v %+v", ok, f)
	}
	_, ok = scanFrame([]byte(`{"type":"error","error":{"message":"m","code":"slow_consumer"}}`), &f, nil)
	if !ok || string(f.code) != "slow_consumer" {
		t.Errorf("error frame %v %q", ok, f.code)
	}
	for _, bad := range []string{``, `{`, `{"type":"batch","msgs":[{"id":"a"`, `[1]`, `{"a" 1}`} {
		if _, ok := scanFrame([]byte(bad), &f, nil); ok {
			t.Errorf("%q scanned", bad)
		}
	}
}

func FuzzScanFrame(f *testing.F) {
	f.Add([]byte(`{"type":"batch","room":"r","msgs":[{"id":"a","type":"danmaku","ts":1}]}`))
	f.Add([]byte(`{"type":"welcome","seq":1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var ff frameFields
		_, _ = scanFrame(b, &ff, nil)
	})
}

func TestReportShape(t *testing.T) {
	h := NewHist()
	h.Record(40_000)
	rep := &Report{
		Scenario: Scenario{Viewers: 10, Rooms: 1, HotShare: 1, MergeWindow: Duration(50 * time.Millisecond), Duration: Duration(time.Second), Procs: 1},
		Connect:  ConnectFigures{ConnectResult: ConnectResult{Attempted: 10, Opened: 10, Welcomed: 10, Seconds: 0.5}, PerSec: 20},
		Window: &WindowFigures{
			Seconds: 1, Viewers: 10, Deliveries: map[string]int64{"danmaku": 300, "gift": 10}, PerSec: map[string]float64{"danmaku": 300, "gift": 10},
			Delay:    map[string]Summary{"danmaku": h.Summary(), "gift": {Count: 10, P99: 250}},
			Gifts:    GiftCheck{Acked: 1, Viewers: 10, Expected: 10},
			Sends:    map[string]SendFigures{"danmaku": {Sent: 30, Accepted: 30, PerSec: 30, Status: map[string]int{"202": 30}}},
			Gateways: []*GatewayFigures{{ID: "gw-1", Seconds: 1, Conns: 10, CPUSeconds: 0.012, FramesPerSec: 2000, CPUPerFrameUS: 6, RSSPerConn: 5000}},
			Errors:   map[string]int{"ws_503_unavailable": 1}, Hint429: 2, HintClientGifts: 3,
		},
		Floor: &FloorFigures{Conns: 10, FPS: 20, Size: 300, USPerWrite: 5},
	}
	rep.Window.Gateway = totalFigures(rep.Window.Gateways)
	rep.finish()
	if rep.Floor.Ratio != 1.2 {
		t.Errorf("ratio %v", rep.Floor.Ratio)
	}
	var buf bytes.Buffer
	if err := rep.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(buf.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	w := m["window"].(map[string]any)
	for _, k := range []string{"deliveries_per_s", "delay", "gifts", "frames_per_s", "gateways", "gateway_total", "sends"} {
		if _, ok := w[k]; !ok {
			t.Errorf("window lacks %q", k)
		}
	}
	g := w["gateway_total"].(map[string]any)
	for _, k := range []string{"cpu_us_per_frame", "cpu_s_per_million_msgs", "rss_per_conn", "cores"} {
		if _, ok := g[k]; !ok {
			t.Errorf("gateway figures lack %q", k)
		}
	}
	if m["floor"].(map[string]any)["ratio"].(float64) != 1.2 {
		t.Errorf("floor %v", m["floor"])
	}
	if d := w["delay"].(map[string]any)["danmaku"].(map[string]any); d["p99_ms"].(float64) < 39.9 || d["p99_ms"].(float64) > 40.1 {
		t.Errorf("delay %v", d)
	}
	var missed []string
	for _, o := range rep.Objectives {
		if !o.OK {
			missed = append(missed, o.Name)
		}
	}
	if strings.Join(missed, ",") != "gift delay p99" || rep.OK() {
		t.Errorf("missed %v", missed)
	}
	if len(rep.Hints) != 2 || !strings.Contains(rep.Hints[0], "--api-key") || !strings.Contains(rep.Hints[1], "429") {
		t.Errorf("hints %v", rep.Hints)
	}
	buf.Reset()
	if err := rep.WriteTable(&buf); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"CPU µs/frame", "gw-1", "1.20×", "MISSED", "ws_503_unavailable", "gift delay p99"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, buf.String())
		}
	}
}

func TestRawSender(t *testing.T) {
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := hits.Add(1)
		body, _ := io.ReadAll(r.Body)
		if r.Method != http.MethodPost || r.URL.Path != "/v1/rooms/r1/messages" || r.Header.Get("Authorization") != "Bearer tok" || !strings.Contains(string(body), `"gift"`) || r.Header.Get("Idempotency-Key") == "" {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusAccepted)
		if n%2 == 0 { // chunked: flushed before the body
			w.(http.Flusher).Flush()
		}
		fmt.Fprintf(w, `{"id":"g%d","seq":%d}`, n, n)
	}))
	defer srv.Close()
	s := DefaultScenario()
	s.URL, s.Viewers, s.GiftRate, s.Sender, s.Secret = srv.URL, 0, 1, "raw", "0123456789abcdef0123"
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	x, err := newSenders(context.Background(), &s, []string{"r1"})
	if err != nil {
		t.Fatal(err)
	}
	rc, err := newRawConn(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.close()
	for i := 1; i <= 4; i++ {
		res, err := x.rawSend(rc, sendJob{class: 1, room: "r1"}, "tok")
		if err != nil || res.Status != 202 || res.ID != fmt.Sprintf("g%d", i) || res.Seq != uint64(i) {
			t.Fatalf("send %d: %+v %v", i, res, err)
		}
	}
	res, err := x.rawSend(rc, sendJob{class: 0, room: "r1"}, "tok")
	var ae *client.APIError
	if !errors.As(err, &ae) || ae.Status != 400 || res.Status != 400 {
		t.Fatalf("bad request: %+v %v", res, err)
	}
	// The server closes idle connections; the next post redials.
	srv.CloseClientConnections()
	if res, err := x.rawSend(rc, sendJob{class: 1, room: "r1"}, "tok"); err != nil || res.Status != 202 {
		t.Fatalf("after close: %+v %v", res, err)
	}
	x.close()
}

func TestCapacityFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--url", "http://127.0.0.1:1", "--start-viewers", "20", "--max-viewers", "10"},
		{"--url", "http://127.0.0.1:1", "--rate-factor", "0.5"},
		{"--url", "http://127.0.0.1:1", "--target", "1.5"},
	} {
		err := RunCapacity(context.Background(), args, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "capacity: need") {
			t.Errorf("%v: %v", args, err)
		}
	}
}

// TestScenarioFilesParse: the scenario files shipped in scenarios/ are
// valid, so that the commands in docs/BENCHMARKS.md run.
func TestScenarioFilesParse(t *testing.T) {
	files, err := filepath.Glob("scenarios/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no scenario files: %v", err)
	}
	for _, f := range files {
		s, err := ParseScenario([]string{"--scenario", f, "--url", "http://127.0.0.1:8080"}, io.Discard)
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		if s.Viewers == 0 || s.Rooms == 0 {
			t.Errorf("%s: %d viewers in %d rooms", f, s.Viewers, s.Rooms)
		}
	}
}
