package bus_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/liveroom/liveroom/internal/bus"
	"github.com/liveroom/liveroom/internal/testutil"
)

// TestOpenKV: a bucket that exists opens; one that does not is an answer,
// not a reason to ask again; a JetStream that does not answer is asked
// again until the caller's context ends (a gateway once exited when one
// request timed out while a fresh cluster was still electing leaders).
func TestOpenKV(t *testing.T) {
	_, nc, js := testutil.StartBackbone(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := bus.EnsureStreams(ctx, js, bus.StreamConfig{}); err != nil {
		t.Fatal(err)
	}
	kv, err := bus.OpenKV(ctx, js, bus.ModerationKV)
	if err != nil || kv.Bucket() != bus.ModerationKV {
		t.Fatalf("open %s: %v", bus.ModerationKV, err)
	}
	if _, err := bus.OpenKV(ctx, js, "nosuch"); !errors.Is(err, jetstream.ErrBucketNotFound) {
		t.Fatalf("open a missing bucket: %v, want ErrBucketNotFound", err)
	}
	if ctx.Err() != nil {
		t.Fatal("a missing bucket was asked for until the context ended")
	}

	// A domain nobody serves: every request goes unanswered.
	silent, err := jetstream.NewWithDomain(nc, "nosuch")
	if err != nil {
		t.Fatal(err)
	}
	sctx, scancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer scancel()
	if _, err := bus.OpenKV(sctx, silent, bus.ModerationKV); err == nil {
		t.Fatal("opened a bucket in a JetStream that does not answer")
	}
	if sctx.Err() == nil {
		t.Fatal("gave up before the context ended: one unanswered request is not the end of a start")
	}
}
