package gateway

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/klauspost/compress/flate"
)

func TestServerFrameHeaderSizes(t *testing.T) {
	for _, n := range []int{0, 1, 125, 126, 65535, 65536, 200000} {
		payload := bytes.Repeat([]byte("x"), n)
		b := textFrame(payload)
		f, err := ws.ReadFrame(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("len %d: %v", n, err)
		}
		if f.Header.OpCode != ws.OpText || !f.Header.Fin || f.Header.Masked || !bytes.Equal(f.Payload, payload) {
			t.Fatalf("len %d: header %+v", n, f.Header)
		}
	}
}

func TestParseClientFrame(t *testing.T) {
	masked := ws.MustCompileFrame(ws.MaskFrame(ws.NewTextFrame([]byte(`{"type":"x"}`))))
	f, n, err := parseClientFrame(masked, 4096)
	if err != nil || n != len(masked) || string(f.payload) != `{"type":"x"}` {
		t.Fatalf("got %q %d %v", f.payload, n, err)
	}
	for i := 0; i < len(masked); i++ {
		cp := append([]byte(nil), masked[:i]...)
		if _, n, err := parseClientFrame(cp, 4096); n != 0 || err != nil {
			t.Fatalf("prefix %d: n=%d err=%v, want incomplete", i, n, err)
		}
	}
	unmasked := ws.MustCompileFrame(ws.NewTextFrame([]byte("hi")))
	if _, _, err := parseClientFrame(unmasked, 4096); err != errNotMasked {
		t.Fatalf("unmasked: %v", err)
	}
	big := ws.MustCompileFrame(ws.MaskFrame(ws.NewTextFrame(make([]byte, 5000))))
	if _, _, err := parseClientFrame(big, 4096); err != errTooLarge {
		t.Fatalf("big: %v", err)
	}
	rsv2 := ws.MustCompileFrame(ws.MaskFrame(ws.Frame{Header: ws.Header{Fin: true, OpCode: ws.OpText, Rsv: ws.Rsv(false, true, false)}}))
	if _, _, err := parseClientFrame(rsv2, 4096); err != errReserved {
		t.Fatalf("rsv2: %v", err)
	}
	frag := ws.MustCompileFrame(ws.MaskFrame(ws.NewFrame(ws.OpPing, false, nil)))
	if _, _, err := parseClientFrame(frag, 4096); err != errControl {
		t.Fatalf("fragmented ping: %v", err)
	}
}

// clientFrames encodes masked client frames: each is op, fin, rsv1, payload.
type cf struct {
	op      ws.OpCode
	fin     bool
	rsv1    bool
	payload []byte
}

func clientFrames(fs ...cf) []byte {
	var out []byte
	for _, f := range fs {
		fr := ws.NewFrame(f.op, f.fin, append([]byte(nil), f.payload...))
		fr.Header.Rsv = ws.Rsv(f.rsv1, false, false)
		out = append(out, ws.MustCompileFrame(ws.MaskFrameInPlace(fr))...)
	}
	return out
}

// deflated compresses p as a permessage-deflate message payload.
func deflated(t testing.TB, p []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	w, _ := flate.NewWriter(&b, 1)
	w.Write(p)
	w.Flush()
	return bytes.TrimSuffix(b.Bytes(), deflateTail)
}

// readMessages runs the frames in b through the parser and the message
// state as a connection does, returning the first error.
func readMessages(b []byte, limit int, deflate bool) (messages int, err error) {
	var m clientMsg
	for len(b) > 0 {
		f, n, err := parseClientFrame(b, limit-m.size)
		if err != nil {
			return messages, err
		}
		if n == 0 {
			return messages, nil
		}
		if f.op.IsControl() {
			if f.rsv1 {
				return messages, errCompressedBit
			}
		} else {
			if err := m.add(f, limit, deflate); err != nil {
				return messages, err
			}
			if f.fin {
				messages++
			}
		}
		b = b[n:]
	}
	return messages, nil
}

func TestClientMessageLimitAndOrder(t *testing.T) {
	x := func(n int) []byte { return bytes.Repeat([]byte("x"), n) }
	ping := cf{ws.OpPing, true, false, nil}
	cases := []struct {
		name    string
		frames  []cf
		deflate bool
		want    error
	}{
		{"one frame at the limit", []cf{{ws.OpText, true, false, x(100)}}, false, nil},
		{"one frame over", []cf{{ws.OpText, true, false, x(101)}}, false, errTooLarge},
		{"fragments within", []cf{{ws.OpText, false, false, x(40)}, ping, {ws.OpContinuation, false, false, x(40)}, {ws.OpContinuation, true, false, x(20)}}, false, nil},
		{"fragments over", []cf{{ws.OpText, false, false, x(60)}, {ws.OpContinuation, false, false, x(30)}, {ws.OpContinuation, true, false, x(11)}}, false, errTooLarge},
		{"fragments over, declared", []cf{{ws.OpBinary, false, false, x(90)}, {ws.OpContinuation, true, false, x(90)}}, false, errTooLarge},
		{"limit is per message", []cf{{ws.OpText, false, false, x(60)}, {ws.OpContinuation, true, false, x(40)}, {ws.OpText, true, false, x(100)}}, false, nil},
		{"continuation first", []cf{{ws.OpContinuation, true, false, x(1)}}, false, errFragment},
		{"text inside a message", []cf{{ws.OpText, false, false, x(1)}, {ws.OpText, true, false, x(1)}}, false, errFragment},
		{"compressed without the extension", []cf{{ws.OpText, true, true, deflated(t, x(50))}}, false, errCompressedBit},
		{"compressed", []cf{{ws.OpText, true, true, deflated(t, x(100))}}, true, nil},
		{"compressed in fragments", func() []cf {
			z := deflated(t, []byte(strings.Repeat("hello liveroom ", 6)))
			return []cf{{ws.OpText, false, true, z[:3]}, {ws.OpContinuation, true, false, z[3:]}}
		}(), true, nil},
		{"compressed bit on a continuation", []cf{{ws.OpText, false, true, deflated(t, x(10))}, {ws.OpContinuation, true, true, nil}}, true, errCompressedBit},
		{"compressed bit on a ping", []cf{{ws.OpPing, true, true, nil}}, true, errCompressedBit},
		{"inflates over the limit", []cf{{ws.OpText, true, true, deflated(t, x(101))}}, true, errTooLarge},
		{"does not inflate", []cf{{ws.OpText, true, true, []byte{0xff, 0xff, 0xff, 0xff}}}, true, errBadDeflate},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := readMessages(clientFrames(tc.frames...), 100, tc.deflate)
			if err != tc.want {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}

// FuzzParseClientFrame feeds arbitrary bytes from the network to the frame
// parser and the message state, as a connection does: they must never
// panic, never read past their input, and never accept a frame or a
// message (its fragments together, or what it inflates to) over the limit.
func FuzzParseClientFrame(f *testing.F) {
	f.Add(ws.MustCompileFrame(ws.MaskFrame(ws.NewTextFrame([]byte("hello")))), false)
	f.Add(ws.MustCompileFrame(ws.MaskFrame(ws.NewPingFrame(nil))), false)
	f.Add(ws.MustCompileFrame(ws.MaskFrame(ws.NewCloseFrame(ws.NewCloseFrameBody(1000, "")))), false)
	f.Add([]byte{0x81, 0xFF, 0, 0, 0, 0, 0, 0, 0, 9}, false)
	f.Add([]byte{0x81, 0xFE, 0xFF}, false)
	frag := bytes.Repeat([]byte("y"), 600)
	f.Add(clientFrames(cf{ws.OpText, false, false, frag}, cf{ws.OpPing, true, false, nil}, cf{ws.OpContinuation, true, false, frag}), false)
	f.Add(clientFrames(cf{ws.OpText, true, true, deflated(f, bytes.Repeat([]byte("z"), 5000))}), true)
	f.Add(clientFrames(cf{ws.OpText, false, true, deflated(f, frag)[:4]}, cf{ws.OpContinuation, true, false, deflated(f, frag)[4:]}), true)
	f.Fuzz(func(t *testing.T, b []byte, deflate bool) {
		const limit = 1024
		in := append([]byte(nil), b...)
		var m clientMsg
		for len(in) > 0 {
			fr, n, err := parseClientFrame(in, limit-m.size)
			if err != nil || n == 0 {
				return
			}
			if n > len(in) || len(fr.payload) > limit {
				t.Fatalf("consumed %d of %d, payload %d", n, len(in), len(fr.payload))
			}
			if !fr.op.IsControl() {
				if err := m.add(fr, limit, deflate); err != nil {
					return
				}
				if m.size > limit {
					t.Fatalf("an open message holds %d bytes, over the limit %d", m.size, limit)
				}
				if fr.rsv1 && !deflate {
					t.Fatal("a compressed frame was accepted without the extension")
				}
			}
			in = in[n:]
		}
	})
}

func TestCountMessageIsValidJSON(t *testing.T) {
	var m map[string]any
	if err := json.Unmarshal(countMessage("gw-1", 42, nowForTest()), &m); err != nil || m["online"].(float64) != 42 || m["type"] != "count" {
		t.Fatalf("count message %v %v", m, err)
	}
}

func nowForTest() time.Time { return time.Unix(1700000000, 0) }
