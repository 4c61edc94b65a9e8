package session_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/liveroom/liveroom/internal/protocol"
	"github.com/liveroom/liveroom/internal/session"
	"github.com/liveroom/liveroom/internal/testutil"
)

func TestRegistryAndCache(t *testing.T) {
	_, _, js := testutil.StartBackbone(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	kv, err := js.KeyValue(ctx, session.Bucket)
	if err != nil {
		t.Fatal(err)
	}
	reg := session.NewRegistry(kv)

	// A session running before the cache starts is in its first load.
	first, started, err := reg.Start(ctx, "r1", "anna")
	if err != nil || !started || !protocol.ValidID(first.ID) || !first.Live() {
		t.Fatalf("start: %+v %v %v", first, started, err)
	}
	cache := session.NewCache(js, testutil.Logger())
	cctx, ccancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); cache.Run(cctx) }()
	defer func() { ccancel(); <-done }()
	if got, ok := cache.Current("r1"); !ok || got.ID != first.ID {
		t.Fatalf("cache after first load: %+v %v", got, ok)
	}
	if again, started, err := reg.Start(ctx, "r1", "bob"); err != nil || started || again.ID != first.ID {
		t.Fatalf("second start: %+v %v %v, want the running session", again, started, err)
	}
	if _, ok := cache.Current("r2"); ok {
		t.Fatal("r2 live without a start")
	}
	refused := errors.New("refused")
	if _, err := reg.StopIf(ctx, "r1", func(cur session.Session) error {
		if cur.ID != first.ID {
			t.Errorf("StopIf asked about %+v, want %s", cur, first.ID)
		}
		return refused
	}); err != refused {
		t.Fatalf("refused stop: %v, want the refusal", err)
	}
	if got, err := reg.Current(ctx, "r1"); err != nil || got.ID != first.ID {
		t.Fatalf("after a refused stop: %+v %v, want %s still live", got, err, first.ID)
	}
	stopped, err := reg.Stop(ctx, "r1")
	if err != nil || stopped.Live() || stopped.StoppedMS < stopped.StartedMS {
		t.Fatalf("stop: %+v %v", stopped, err)
	}
	testutil.Eventually(t, 5*time.Second, "cache forgets the stopped session", func() bool {
		_, ok := cache.Current("r1")
		return !ok
	})
	if _, err := reg.Stop(ctx, "r1"); !errors.Is(err, session.ErrNotLive) {
		t.Fatalf("second stop: %v, want ErrNotLive", err)
	}
	time.Sleep(1100 * time.Millisecond) // ids carry the start second
	second, _, err := reg.Start(ctx, "r1", "anna")
	if err != nil || second.ID == first.ID {
		t.Fatalf("new session: %+v %v", second, err)
	}
	testutil.Eventually(t, 5*time.Second, "cache sees the new session", func() bool {
		got, ok := cache.Current("r1")
		return ok && got.ID == second.ID
	})
	if got := second.Offset(second.StartedMS + 1500); got != 1500 {
		t.Errorf("offset %d", got)
	}
	list, err := reg.List(ctx, "r1")
	if err != nil || len(list) != 2 || list[0].ID != second.ID || list[1].ID != first.ID || list[1].Live() || !list[0].Live() {
		t.Fatalf("list: %+v %v", list, err)
	}
	if got, err := reg.Get(ctx, "r1", first.ID); err != nil || got.StoppedMS != stopped.StoppedMS {
		t.Fatalf("get: %+v %v", got, err)
	}
	if _, err := reg.Get(ctx, "r1", "nope"); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("get unknown: %v", err)
	}
	if _, err := reg.Get(ctx, "r1", "a.b"); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("get invalid: %v", err)
	}
}
