package gateway

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/httphead"
	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsflate"
	"github.com/klauspost/compress/flate"

	"github.com/liveroom/liveroom/internal/protocol"
	"github.com/liveroom/liveroom/internal/testutil"
)

func TestNegotiateDeflate(t *testing.T) {
	cases := []struct {
		header string
		want   bool
	}{
		{"", false},
		{"permessage-deflate", true},
		{"permessage-deflate; client_max_window_bits", true}, // what browsers offer
		{"permessage-deflate; server_no_context_takeover; client_no_context_takeover", true},
		{"permessage-deflate; server_max_window_bits=10", false},
		{"permessage-deflate; server_max_window_bits=10, permessage-deflate", true},
		{"permessage-deflate; server_max_window_bits=15", true},
		{"permessage-deflate; unknown_param", false},
		{"permessage-deflate; client_max_window_bits=99", false},
		{"x-webkit-deflate-frame", false},
		{"foo, permessage-deflate; client_max_window_bits=12", true},
	}
	for _, tc := range cases {
		if got := negotiateDeflate(tc.header); got != tc.want {
			t.Errorf("%q: %v, want %v", tc.header, got, tc.want)
		}
	}
}

// rawFrame is one server frame as it came over the wire.
type rawFrame struct {
	rsv1    bool
	op      ws.OpCode
	wire    int    // bytes on the wire, header included
	payload []byte // decompressed when rsv1
}

// readRaw reads the next data frame of v as it is on the wire, inflating a
// compressed one.
func readRaw(t *testing.T, v *viewer) rawFrame {
	t.Helper()
	_ = v.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		h, err := ws.ReadHeader(v.rd)
		if err != nil {
			t.Fatalf("read header: %v", err)
		}
		p := make([]byte, h.Length)
		if _, err := io.ReadFull(v.rd, p); err != nil {
			t.Fatal(err)
		}
		if h.OpCode.IsControl() {
			continue
		}
		f := rawFrame{rsv1: h.Rsv1(), op: h.OpCode, wire: int(h.Length) + headerSize(int(h.Length)), payload: p}
		if f.rsv1 {
			r := flate.NewReader(io.MultiReader(bytes.NewReader(p), bytes.NewReader(deflateTail)))
			f.payload, err = io.ReadAll(r)
			if err != nil && err != io.ErrUnexpectedEOF {
				t.Fatalf("inflate: %v", err)
			}
		}
		return f
	}
}

// readBatch reads raw frames until a batch that is not only an online
// count.
func readBatch(t *testing.T, v *viewer) rawFrame {
	t.Helper()
	for {
		f := readRaw(t, v)
		var b protocol.Batch
		if json.Unmarshal(f.payload, &b) == nil && b.Type == protocol.FrameBatch && countType(b.Msgs, protocol.TypeCount) < len(b.Msgs) {
			return f
		}
	}
}

// TestBytesOutCountsWhatIsWritten: a frame written plain to one member and
// compressed to another counts the bytes each was sent.
func TestBytesOutCountsWhatIsWritten(t *testing.T) {
	s := testServer(t, Config{QueueFrames: 16, QueueBytes: 1 << 20})
	plainC, plainPeer := tcpPair(t, s)
	zC, zPeer := tcpPair(t, s)
	zC.deflate = true
	f := &frame{b: corpusFrame(loadCorpus(t), 20, 1), msgs: 20}
	if f.z = compressFrame(f.b); f.z == nil {
		t.Fatal("a 20-message frame did not compress")
	}
	s.writeChunk(f, []*conn{plainC, zC})
	if got, want := s.stats.BytesOut.Load(), int64(len(f.b)+len(f.z)); got != want {
		t.Fatalf("bytes out %d, want %d + %d", got, len(f.b), len(f.z))
	}
	if s.stats.FramesOut.Load() != 2 || s.stats.FramesCompressed.Load() != 1 || s.stats.MsgsOut.Load() != 40 {
		t.Fatalf("frames %d, compressed %d, messages %d; want 2, 1, 40", s.stats.FramesOut.Load(), s.stats.FramesCompressed.Load(), s.stats.MsgsOut.Load())
	}
	for _, p := range []struct {
		peer net.Conn
		want []byte
	}{{plainPeer, f.b}, {zPeer, f.z}} {
		got := make([]byte, len(p.want))
		_ = p.peer.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(p.peer, got); err != nil || !bytes.Equal(got, p.want) {
			t.Fatalf("peer read %d bytes (%v), not the frame it was counted for", len(got), err)
		}
	}
}

// dialDeflate dials with a permessage-deflate offer and reports whether the
// gateway accepted it.
func (g *gw) dialDeflate(t *testing.T, room, user string) (*viewer, bool) {
	t.Helper()
	d := ws.Dialer{Extensions: []httphead.Option{wsflate.DefaultParameters.Option()}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, br, hs, err := d.Dial(ctx, g.ws+"?room="+room+"&token="+testutil.Token(t, user, protocol.RoleViewer))
	if err != nil {
		t.Fatal(err)
	}
	v := &viewer{conn: conn, rd: br}
	if v.rd == nil {
		v.rd = bufio.NewReader(conn)
	}
	accepted := false
	for _, o := range hs.Extensions {
		if string(o.Name) == wsflate.ExtensionName {
			accepted = true
			var p wsflate.Parameters
			if err := p.Parse(o); err != nil || !p.ServerNoContextTakeover || !p.ClientNoContextTakeover {
				t.Fatalf("accepted with %v (%v), want both no_context_takeover", p, err)
			}
		}
	}
	return v, accepted
}

// TestCompressedOncePerFlush: in one room, a viewer that negotiated
// compression gets each large frame compressed, one that did not gets it
// plain, the two decode to the same bytes, the frame was compressed once,
// and the bytes counted out are the bytes written.
func TestCompressedOncePerFlush(t *testing.T) {
	e := newEnv(t)
	g := e.gateway(func(c *Config) { c.MergeWindow, c.ViewerBudget = 100*time.Millisecond, 1e6 })
	z, ok := g.dialDeflate(t, "dz", "zipped")
	if !ok {
		t.Fatal("the gateway declined permessage-deflate")
	}
	defer z.close()
	plain := g.dial(t, "dz", "plain", "")
	defer plain.close()
	for _, v := range []*viewer{z, plain} {
		if f := readRaw(t, v); f.rsv1 || !strings.Contains(string(f.payload), `"welcome"`) {
			t.Fatal("the first frame is not a plain welcome; only room frames are compressed")
		}
	}
	deflated := g.Stats().FramesDeflated.Load()
	// One window of comments, well over CompressMinBytes.
	for i := range 12 {
		e.danmaku("dz", "前方高能！this frame is large enough to compress "+strings.Repeat("哈", i), false)
	}
	fz, fp := readBatch(t, z), readBatch(t, plain)
	if !fz.rsv1 || fp.rsv1 {
		t.Fatalf("compressed: negotiated %v, plain %v; want true, false", fz.rsv1, fp.rsv1)
	}
	if !bytes.Equal(fz.payload, fp.payload) {
		t.Fatalf("the two viewers got different messages:\n%s\n%s", fz.payload, fp.payload)
	}
	var b protocol.Batch
	if err := json.Unmarshal(fz.payload, &b); err != nil || len(b.Msgs) != 12 {
		t.Fatalf("batch of %d messages (%v), want 12 in one frame", len(b.Msgs), err)
	}
	if fz.wire*2 > fp.wire {
		t.Errorf("compressed frame %d bytes, plain %d: want less than half", fz.wire, fp.wire)
	}
	// Online counts are small frames, never compressed.
	if n := g.Stats().FramesDeflated.Load() - deflated; n != 1 {
		t.Fatalf("%d compressions, want 1 (once per flush, not per viewer)", n)
	}

	// A small frame goes plain to both.
	e.danmaku("dz", "short", false)
	if f := readBatch(t, z); f.rsv1 {
		t.Fatalf("a %d-byte frame was compressed, under CompressMinBytes", len(f.payload))
	}
}

// TestNoCompress: a gateway with NoCompress declines the extension.
func TestNoCompress(t *testing.T) {
	e := newEnv(t)
	g := e.gateway(func(c *Config) { c.NoCompress = true; c.CompressMinBytes = -1 })
	v, ok := g.dialDeflate(t, "nz", "v")
	defer v.close()
	if ok {
		t.Fatal("permessage-deflate accepted with NoCompress")
	}
	v.welcome(t)
	for i := range 12 {
		e.danmaku("nz", "plain all the same, whatever the size "+strings.Repeat("x", i), false)
	}
	if f := readRaw(t, v); f.rsv1 {
		t.Fatal("compressed frame with NoCompress")
	}
}

// TestCompressedClientMessages: a client that negotiated compression may
// send compressed messages; one that did not is closed for the RSV1 bit.
func TestCompressedClientMessages(t *testing.T) {
	e := newEnv(t)
	g := e.gateway(nil)
	z, _ := g.dialDeflate(t, "cz", "zipped")
	defer z.close()
	plain := g.dial(t, "cz", "plain", "")
	defer plain.close()
	readRaw(t, z)
	plain.welcome(t)
	msg := clientFrames(cf{ws.OpText, true, true, deflated(t, []byte(`{"type":"hello","text":"compressed"}`))})
	ping := clientFrames(cf{ws.OpPing, true, false, []byte("after")})
	if _, err := z.conn.Write(append(msg, ping...)); err != nil {
		t.Fatal(err)
	}
	// The ping behind the compressed message is answered: the message was
	// accepted.
	_ = z.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		f, err := ws.ReadFrame(z.rd)
		if err != nil {
			t.Fatalf("compressed message refused: %v", err)
		}
		if f.Header.OpCode == ws.OpPong {
			if string(f.Payload) != "after" {
				t.Fatalf("pong %q", f.Payload)
			}
			break
		}
	}
	if _, err := plain.conn.Write(msg); err != nil {
		t.Fatal(err)
	}
	typ, raw := plain.next(t, 5*time.Second)
	if typ != protocol.FrameError || !strings.Contains(string(raw), protocol.CodeProtocol) {
		t.Fatalf("got %s %s, want a protocol error", typ, raw)
	}
	testutil.Eventually(t, 5*time.Second, "the plain viewer is closed", func() bool { return g.Stats().Conns.Load() == 1 })
}

// BenchmarkCompressFrame compresses room frames of a realistic mix (the
// bench's corpus: Chinese and English comments, some gifts and likes) of
// 1 to 30 messages, once each, and reports the ratio.
func BenchmarkCompressFrame(b *testing.B) {
	corpus := loadCorpus(b)
	for _, n := range []int{2, 5, 10, 30} {
		frames := make([][]byte, 64)
		for i := range frames {
			frames[i] = corpusFrame(corpus, n, i)
		}
		b.Run("msgs="+strconv.Itoa(n), func(b *testing.B) {
			var in, out int
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				f := frames[i%len(frames)]
				z := compressFrame(f)
				in += len(f)
				out += len(z)
			}
			b.ReportMetric(float64(out)/float64(in), "ratio")
			b.ReportMetric(float64(in)/float64(b.N), "bytes/frame")
		})
	}
}

func loadCorpus(tb testing.TB) []string {
	b, err := os.ReadFile("../bench/testdata/danmaku.txt")
	if err != nil {
		tb.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" && l[0] != '#' {
			out = append(out, l)
		}
	}
	return out
}

// corpusFrame builds a room frame of n messages as the uplink and the
// gateway would: mostly danmaku from the corpus, a gift or a like now and
// then.
func corpusFrame(corpus []string, n, seed int) []byte {
	var msgs [][]byte
	ts := int64(1_760_000_000_000)
	for i := range n {
		k := seed*31 + i*7
		user := "u" + strconv.Itoa(k%97)
		m := protocol.Message{ID: "MvZ3lT4kqW6b1dH8x" + strconv.Itoa(100000+k), Type: protocol.TypeDanmaku, Room: "bench-hot", User: user, Name: user, Role: "viewer", TS: ts + int64(k), Text: corpus[k%len(corpus)]}
		switch k % 20 {
		case 0:
			m = protocol.Message{ID: m.ID, Type: protocol.TypeGift, Seq: uint64(k), Room: "bench-hot", User: user, Name: user, Role: "viewer", TS: m.TS, Gift: "rose", Count: 1}
		case 1:
			m = protocol.Message{ID: m.ID, Type: protocol.TypeLike, Room: "bench-hot", TS: m.TS, Count: 3, Total: int64(1000 + k)}
		}
		msgs = append(msgs, protocol.Encode(m))
	}
	return textFrame(protocol.AppendBatch(nil, "bench-hot", 100, msgs))
}
