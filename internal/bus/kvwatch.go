package bus

import "github.com/nats-io/nats.go/jetstream"

// ApplyUpdates hands every entry of a key-value watch to apply, in order,
// until the watch ends, then stops it. The watch first delivers the
// bucket's current values, then a nil entry, then live updates: apply is
// told which, and ready is closed at the nil entry (or when the watch ends
// before it), which is when a cache built from the watch holds the bucket.
func ApplyUpdates(w jetstream.KeyWatcher, ready chan<- struct{}, apply func(e jetstream.KeyValueEntry, initial bool)) {
	defer func() { _ = w.Stop() }()
	initial := true
	for e := range w.Updates() {
		if e == nil {
			if initial {
				initial = false
				close(ready)
			}
			continue
		}
		apply(e, initial)
	}
	if initial {
		close(ready)
	}
}
