package gateway

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/gobwas/ws"
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
	frag := ws.MustCompileFrame(ws.MaskFrame(ws.NewFrame(ws.OpPing, false, nil)))
	if _, _, err := parseClientFrame(frag, 4096); err != errControl {
		t.Fatalf("fragmented ping: %v", err)
	}
}

// FuzzParseClientFrame feeds arbitrary bytes from the network to the frame
// parser: it must never panic, never read past its input, and never accept a
// payload over the limit.
func FuzzParseClientFrame(f *testing.F) {
	f.Add(ws.MustCompileFrame(ws.MaskFrame(ws.NewTextFrame([]byte("hello")))))
	f.Add(ws.MustCompileFrame(ws.MaskFrame(ws.NewPingFrame(nil))))
	f.Add(ws.MustCompileFrame(ws.MaskFrame(ws.NewCloseFrame(ws.NewCloseFrameBody(1000, "")))))
	f.Add([]byte{0x81, 0xFF, 0, 0, 0, 0, 0, 0, 0, 9})
	f.Add([]byte{0x81, 0xFE, 0xFF})
	f.Fuzz(func(t *testing.T, b []byte) {
		const limit = 1024
		in := append([]byte(nil), b...)
		for len(in) > 0 {
			fr, n, err := parseClientFrame(in, limit)
			if err != nil || n == 0 {
				return
			}
			if n > len(in) || len(fr.payload) > limit {
				t.Fatalf("consumed %d of %d, payload %d", n, len(in), len(fr.payload))
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
