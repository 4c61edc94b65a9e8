package gateway

import (
	"bytes"
	"errors"
	"io"
	"sync"

	"github.com/gobwas/httphead"
	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsflate"
	"github.com/klauspost/compress/flate"
)

// Compression: permessage-deflate (RFC 7692), encoded once per frame.
//
// The gateway accepts the extension only with server_no_context_takeover
// (and asks for client_no_context_takeover): every message is compressed on
// its own, with no window carried over from the previous one, so a room
// frame compressed once is a valid message for every member that
// negotiated the extension, whatever it was sent before. The flush
// compresses each room frame once and writes the same compressed bytes to
// those members; the others get the plain frame. Without context takeover a
// lone short message compresses poorly, but room frames merge a window of
// messages that share their field names, room id, id prefixes and much of
// their text: a frame of 10 to 30 danmaku shrinks to a fifth or a quarter.
//
// Frames shorter than Config.CompressMinBytes are not compressed: a frame of
// one or two messages saves little (a quarter to a half of 250–400 bytes)
// and its compression costs about as much CPU as one write, which a small
// room does not amortise. That threshold is what keeps a quiet room's frames
// plain; Config.NoCompress turns compression off for the whole gateway.
//
// The compressor is klauspost/compress's flate at level 1 (compressFrame):
// the same ratio as the standard library's level 1–3 on liveroom frames
// at about half the CPU (BenchmarkCompressFrame).

// deflateResponse is the gateway's answer to an acceptable offer.
const deflateResponse = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"

// deflateLevel trades ratio for CPU; see BenchmarkCompressFrame.
const deflateLevel = 1

// negotiateDeflate reports whether one of the permessage-deflate offers in
// the Sec-WebSocket-Extensions header value can be accepted. An offer is
// declined when its parameters are malformed or when it limits the server's
// window (server_max_window_bits below 15: the compressor always uses a
// 32 KiB window).
func negotiateDeflate(header string) bool {
	if header == "" {
		return false
	}
	opts, ok := httphead.ParseOptions([]byte(header), nil)
	if !ok {
		return false
	}
	for _, o := range opts {
		if !bytes.Equal(o.Name, wsflate.ExtensionNameBytes) {
			continue
		}
		var p wsflate.Parameters
		if err := p.Parse(o); err != nil {
			continue
		}
		if p.ServerMaxWindowBits.Defined() && p.ServerMaxWindowBits < 15 {
			continue
		}
		return true
	}
	return false
}

// deflateTail ends every compressed message; RFC 7692 §7.2.1 has the
// sender drop it and the receiver put it back.
var deflateTail = []byte{0x00, 0x00, 0xff, 0xff}

type deflater struct {
	w   *flate.Writer
	buf bytes.Buffer
}

// deflaters keeps a few compressors (about 480 KiB each) for the flushers.
// Not a sync.Pool: that is emptied at every collection, and a compressor
// allocated anew after each one is a few hundred KiB of garbage a second on
// a busy gateway.
var deflaters = make(chan *deflater, 8)

func getDeflater() *deflater {
	select {
	case d := <-deflaters:
		return d
	default:
		d := &deflater{}
		d.w, _ = flate.NewWriter(&d.buf, deflateLevel) // cannot fail for a valid level
		return d
	}
}

func putDeflater(d *deflater) {
	select {
	case deflaters <- d:
	default:
	}
}

// compressFrame returns the compressed variant of plain, an unfragmented
// text frame as built by newTextFrame, or nil when compressing does not
// make it smaller.
func compressFrame(plain []byte) []byte {
	payload := plain[serverHeaderLen(plain):]
	d := getDeflater()
	defer putDeflater(d)
	d.buf.Reset()
	d.w.Reset(&d.buf)
	if _, err := d.w.Write(payload); err != nil {
		return nil
	}
	if err := d.w.Flush(); err != nil {
		return nil
	}
	z := d.buf.Bytes()
	if !bytes.HasSuffix(z, deflateTail) {
		return nil
	}
	z = z[:len(z)-len(deflateTail)]
	hs := headerSize(len(z))
	if hs+len(z) >= len(plain) {
		return nil
	}
	out := make([]byte, hs+len(z))
	putHeader(out, ws.OpText, len(z))
	out[0] |= 0x40 // RSV1: compressed
	copy(out[hs:], z)
	if cap(d.buf.Bytes()) > 1<<20 {
		d.buf = bytes.Buffer{} // do not pool a buffer grown by one huge frame
	}
	return out
}

// compress gives f, a room frame, its compressed variant when it is large
// enough to be worth it (Config.CompressMinBytes).
func (s *Server) compress(f *frame) {
	if s.cfg.NoCompress || len(f.b)-serverHeaderLen(f.b) < s.cfg.CompressMinBytes {
		return
	}
	if f.z = compressFrame(f.b); f.z != nil {
		s.stats.FramesDeflated.Add(1)
	}
}

// serverHeaderLen is the header length of an unmasked frame.
func serverHeaderLen(b []byte) int {
	switch b[1] & 0x7F {
	case 126:
		return 4
	case 127:
		return 10
	}
	return 2
}

var inflaters = sync.Pool{New: func() any { return flate.NewReader(bytes.NewReader(nil)) }}

// inflateWithin checks that z, the payload of a compressed client message,
// inflates, to at most limit bytes. The gateway acts on no client message,
// but a message it accepts must be one it could read, and the read limit
// holds for what it would read.
func inflateWithin(z []byte, limit int) error {
	fr := inflaters.Get().(io.ReadCloser)
	defer inflaters.Put(fr)
	if err := fr.(flate.Resetter).Reset(io.MultiReader(bytes.NewReader(z), bytes.NewReader(deflateTail)), nil); err != nil {
		return errBadDeflate
	}
	n, err := io.Copy(io.Discard, io.LimitReader(fr, int64(limit)+1))
	switch {
	case n > int64(limit):
		return errTooLarge
	case err == nil, errors.Is(err, io.ErrUnexpectedEOF):
		// A message ends with a sync flush, not a final block.
		return nil
	}
	return errBadDeflate
}
