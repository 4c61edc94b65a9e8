package gateway

import (
	"encoding/binary"
	"errors"

	"github.com/gobwas/ws"

	"github.com/liveroom/liveroom/internal/protocol"
)

// frame is one encoded WebSocket frame, shared by every connection it is
// written to. Its bytes are never modified after construction.
type frame struct {
	b []byte
	// z, when set, is the same message compressed (permessage-deflate, RSV1
	// set), for the connections that negotiated it (deflate.go).
	z []byte
	// msgs is how many room messages the frame carries (for counters).
	msgs int
	// reliable marks a frame holding at least one reliable message: it may
	// not be dropped for a connected viewer.
	reliable bool
}

// maxServerHeader is the largest header of an unmasked server frame.
const maxServerHeader = 10

// newTextFrame returns a frame whose payload is built by fill, which appends
// to the slice it is given. The header is written in front of the payload in
// the same allocation (RFC 6455 §5.2, server frames are never masked).
func newTextFrame(fill func([]byte) []byte, sizeHint int) []byte {
	buf := make([]byte, maxServerHeader, maxServerHeader+sizeHint)
	buf = fill(buf)
	n := len(buf) - maxServerHeader
	hs := headerSize(n)
	start := maxServerHeader - hs
	putHeader(buf[start:], ws.OpText, n)
	return buf[start:]
}

// textFrame encodes payload as a single text frame.
func textFrame(payload []byte) []byte {
	return newTextFrame(func(b []byte) []byte { return append(b, payload...) }, len(payload))
}

func headerSize(n int) int {
	switch {
	case n <= 125:
		return 2
	case n <= 0xFFFF:
		return 4
	default:
		return 10
	}
}

func putHeader(b []byte, op ws.OpCode, n int) {
	b[0] = 0x80 | byte(op) // FIN
	switch {
	case n <= 125:
		b[1] = byte(n)
	case n <= 0xFFFF:
		b[1] = 126
		binary.BigEndian.PutUint16(b[2:], uint16(n))
	default:
		b[1] = 127
		binary.BigEndian.PutUint64(b[2:], uint64(n))
	}
}

// Precompiled control frames.
var (
	pingFrame = &frame{b: ws.MustCompileFrame(ws.NewPingFrame(nil))}
	// heartbeatFrame tells a viewer of a quiet room that its gateway is
	// alive (heartbeat.go). A text frame, not a WebSocket ping: browsers do
	// not show pings to the page.
	heartbeatFrame = &frame{b: textFrame([]byte(`{"type":"` + protocol.FrameHeartbeat + `"}`))}
)

func closeFrameBytes(code ws.StatusCode, reason string) []byte {
	return ws.MustCompileFrame(ws.NewCloseFrame(ws.NewCloseFrameBody(code, reason)))
}

// clientFrame is a parsed, unmasked frame from a client.
type clientFrame struct {
	op      ws.OpCode
	fin     bool
	rsv1    bool   // "per-message compressed" (RFC 7692), checked by the caller
	payload []byte // aliases the read buffer; valid until the next read
}

var (
	errNotMasked     = errors.New("client frame not masked")
	errTooLarge      = errors.New("client message too large")
	errReserved      = errors.New("reserved bits or opcode set")
	errControl       = errors.New("fragmented or oversized control frame")
	errFragment      = errors.New("continuation frame outside a fragmented message, or a new message inside one")
	errCompressedBit = errors.New("compression bit on a control frame, a continuation frame, or without permessage-deflate")
	errBadDeflate    = errors.New("compressed message does not inflate")
)

// parseClientFrame parses one client frame from b. It returns the frame, the
// number of bytes consumed, or n == 0 when b holds only part of a frame. The
// payload is unmasked in place. A data frame declaring more than limit
// bytes is refused before its payload arrives; RSV1 is returned for the
// caller to judge (it is legal only on the first frame of a data message
// of a connection that negotiated compression).
func parseClientFrame(b []byte, limit int) (f clientFrame, n int, err error) {
	if len(b) < 2 {
		return f, 0, nil
	}
	if b[0]&0x30 != 0 {
		return f, 0, errReserved
	}
	f.rsv1 = b[0]&0x40 != 0
	f.fin = b[0]&0x80 != 0
	f.op = ws.OpCode(b[0] & 0x0F)
	if f.op.IsReserved() {
		return f, 0, errReserved
	}
	if b[1]&0x80 == 0 {
		return f, 0, errNotMasked
	}
	hdr := 2
	var plen uint64
	switch l := b[1] & 0x7F; l {
	case 126:
		hdr += 2
		if len(b) < hdr {
			return f, 0, nil
		}
		plen = uint64(binary.BigEndian.Uint16(b[2:]))
	case 127:
		hdr += 8
		if len(b) < hdr {
			return f, 0, nil
		}
		plen = binary.BigEndian.Uint64(b[2:])
	default:
		plen = uint64(l)
	}
	if f.op.IsControl() && (plen > 125 || !f.fin) {
		return f, 0, errControl
	}
	if !f.op.IsControl() && plen > uint64(max(limit, 0)) {
		return f, 0, errTooLarge
	}
	hdr += 4
	total := hdr + int(plen)
	if len(b) < total {
		return f, 0, nil
	}
	var mask [4]byte
	copy(mask[:], b[hdr-4:hdr])
	f.payload = b[hdr:total]
	ws.Cipher(f.payload, mask, 0)
	return f, total, nil
}

// clientMsg follows the data message a client is sending across its
// fragments (RFC 6455 §5.4): the read limit applies to the whole message,
// continuation frames included, and a compressed message (RFC 7692) must
// inflate to no more than the limit either.
type clientMsg struct {
	open       bool // a data message has begun and not yet ended
	size       int  // payload bytes of the open message so far
	compressed bool
	z          []byte // the open compressed message's payload so far
}

// add takes data frame f (text, binary or continuation) of a connection
// that negotiated compression or not.
func (m *clientMsg) add(f clientFrame, limit int, deflate bool) error {
	if f.op == ws.OpContinuation {
		if !m.open {
			return errFragment
		}
		if f.rsv1 {
			return errCompressedBit
		}
	} else {
		if m.open {
			return errFragment
		}
		if f.rsv1 && !deflate {
			return errCompressedBit
		}
		m.open, m.size, m.compressed = true, 0, f.rsv1
	}
	m.size += len(f.payload)
	if m.size > limit {
		return errTooLarge
	}
	if m.compressed {
		m.z = append(m.z, f.payload...)
	}
	if !f.fin {
		return nil
	}
	m.open, m.size = false, 0
	if !m.compressed {
		return nil
	}
	err := inflateWithin(m.z, limit)
	m.z = nil
	return err
}
