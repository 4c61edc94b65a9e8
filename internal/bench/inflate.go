package bench

import (
	"bytes"
	"errors"
	"hash/maphash"
	"io"

	"github.com/klauspost/compress/flate"
)

// inflateCache decompresses the compressed frames a poller reads. A gateway
// compresses each room frame once and writes the same bytes to every member,
// so the viewers of one room on one gateway read identical compressed
// frames: each distinct frame is inflated once and the result reused, which
// keeps the bench's CPU per frame what it was without compression (a
// viewer's browser inflates its own copy; the bench has tens of thousands of
// viewers on the gateway's cores). Owned by its poller goroutine.
type inflateCache struct {
	seed  maphash.Seed
	index map[uint64]int // hash of the compressed bytes → slot
	slots [256]inflated
	next  int
	fr    io.ReadCloser
	src   bytes.Reader
	out   bytes.Buffer
}

type inflated struct {
	h        uint64
	z, plain []byte
}

// deflateReadTail ends a message's deflate data with an empty final block,
// so that the reader stops at the end of the message (RFC 7692 §7.2.2).
var deflateReadTail = []byte{0x00, 0x00, 0xff, 0xff, 0x01, 0x00, 0x00, 0xff, 0xff}

// get returns the decompressed payload of z; the slice stays valid until
// 256 other distinct frames were inflated.
func (c *inflateCache) get(z []byte) ([]byte, bool) {
	if c.index == nil {
		c.seed = maphash.MakeSeed()
		c.index = make(map[uint64]int, len(c.slots))
	}
	h := maphash.Bytes(c.seed, z)
	if i, ok := c.index[h]; ok && bytes.Equal(c.slots[i].z, z) {
		return c.slots[i].plain, true
	}
	c.src.Reset(append(append(make([]byte, 0, len(z)+len(deflateReadTail)), z...), deflateReadTail...))
	if c.fr == nil {
		c.fr = flate.NewReader(&c.src)
	} else if err := c.fr.(flate.Resetter).Reset(&c.src, nil); err != nil {
		return nil, false
	}
	c.out.Reset()
	if _, err := c.out.ReadFrom(io.LimitReader(c.fr, 64<<20)); err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		return nil, false
	}
	s := &c.slots[c.next]
	if j, ok := c.index[s.h]; ok && j == c.next {
		delete(c.index, s.h)
	}
	*s = inflated{h: h, z: append(s.z[:0], z...), plain: append(s.plain[:0], c.out.Bytes()...)}
	c.index[h] = c.next
	c.next = (c.next + 1) % len(c.slots)
	return s.plain, true
}
