package bus

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

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

// OpenWait bounds OpenKV when its context has no deadline of its own.
const OpenWait = 30 * time.Second

// OpenKV opens the key-value bucket name. Right after WaitStreams says the
// streams exist, a cluster may still be electing their leaders, and a
// single request then times out: OpenKV asks again (each request bounded
// by 5 s) until it succeeds, the bucket is not found, ctx ends or OpenWait
// passes, and returns the last error.
func OpenKV(ctx context.Context, js jetstream.JetStream, name string) (jetstream.KeyValue, error) {
	ctx, cancel := context.WithTimeout(ctx, OpenWait)
	defer cancel()
	for {
		rctx, rcancel := context.WithTimeout(ctx, 5*time.Second)
		kv, err := js.KeyValue(rctx, name)
		rcancel()
		if err == nil || errors.Is(err, jetstream.ErrBucketNotFound) {
			return kv, err
		}
		t := time.NewTimer(250 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, err
		case <-t.C:
		}
	}
}
