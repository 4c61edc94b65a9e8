package bench

import (
	"bytes"
	"strconv"
	"testing"

	"github.com/klauspost/compress/flate"
)

func deflate(t *testing.T, p []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	w, _ := flate.NewWriter(&b, 1)
	w.Write(p)
	w.Flush()
	return bytes.TrimSuffix(b.Bytes(), []byte{0, 0, 0xff, 0xff})
}

// TestInflateCache: each distinct frame decompresses to its own bytes,
// whether it is seen for the first time or again after many others, and
// data that does not inflate is refused.
func TestInflateCache(t *testing.T) {
	var c inflateCache
	var frames, plains [][]byte
	for i := range 600 {
		p := []byte(`{"type":"batch","msgs":[` + strconv.Itoa(i) + `,"哈哈哈哈哈哈哈哈"]}`)
		plains = append(plains, p)
		frames = append(frames, deflate(t, p))
	}
	for round := range 2 {
		for i, z := range frames {
			got, ok := c.get(z)
			if !ok || !bytes.Equal(got, plains[i]) {
				t.Fatalf("round %d, frame %d: %q %v", round, i, got, ok)
			}
			if again, _ := c.get(z); !bytes.Equal(again, plains[i]) {
				t.Fatalf("frame %d from the cache: %q", i, again)
			}
		}
	}
	if _, ok := c.get([]byte{0xff, 0xff, 0xff}); ok {
		t.Fatal("garbage inflated")
	}
}
