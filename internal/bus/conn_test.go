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

func TestEnsureStreamsIsIdempotentAndKeepsSettings(t *testing.T) {
	e := testutil.StartNATS(t)
	nc, err := bus.Connect(testutil.NATSURL(t, e, bus.RoleUplink, ""), "t", testutil.Logger())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for range 2 {
		if err := bus.WaitStreams(ctx, js, testutil.Logger(), bus.StreamConfig{}); err != nil {
			t.Fatal(err)
		}
	}
	st, err := js.Stream(ctx, bus.ReliableStream)
	if err != nil {
		t.Fatal(err)
	}
	cfg := st.CachedInfo().Config
	if cfg.Duplicates < 2*time.Minute || cfg.Replicas != 1 || cfg.Subjects[0] != bus.StoreWildcard || !cfg.AllowDirect ||
		cfg.RePublish == nil || cfg.RePublish.Source != bus.StoreWildcard {
		t.Fatalf("stream config %+v", cfg)
	}
	if _, err := js.KeyValue(ctx, bus.RoomStateKV); err != nil {
		t.Fatal(err)
	}
}

// TestConnectContextStopsWaiting: the wait for a first connection to a
// server that does not answer ends with the caller's context, with an error
// that says so and no connection left behind (goleak checks its goroutines).
// Connect would wait its 2 s and return a connection still retrying.
func TestConnectContextStopsWaiting(t *testing.T) {
	url := "nats://" + testutil.Addr(testutil.FreePort(t)) // nobody listens
	ctx, cancel := context.WithCancel(context.Background())
	go func() { time.Sleep(20 * time.Millisecond); cancel() }()
	nc, err := bus.ConnectContext(ctx, url, "t", testutil.Logger())
	if !errors.Is(err, context.Canceled) || nc != nil {
		t.Fatalf("ConnectContext after cancel = %v, %v; want no connection and context.Canceled", nc, err)
	}
}
