package client

// DefaultDedupeSize is how many recent reliable message ids a Conn remembers.
const DefaultDedupeSize = 4096

// dedupe remembers the last n ids it was shown, evicting the oldest first.
// It is not safe for concurrent use; a Conn's reader goroutine owns it.
type dedupe struct {
	set  map[string]struct{}
	ring []string
	next int
}

func newDedupe(n int) *dedupe {
	if n <= 0 {
		n = DefaultDedupeSize
	}
	return &dedupe{set: make(map[string]struct{}, n), ring: make([]string, n)}
}

// seen reports whether id was recorded among the last n ids and records it
// if not.
func (d *dedupe) seen(id string) bool {
	if _, ok := d.set[id]; ok {
		return true
	}
	if old := d.ring[d.next]; old != "" {
		delete(d.set, old)
	}
	d.ring[d.next] = id
	d.set[id] = struct{}{}
	d.next = (d.next + 1) % len(d.ring)
	return false
}
