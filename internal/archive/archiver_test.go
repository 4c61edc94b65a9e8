package archive_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/liveroom/liveroom/internal/archive"
	"github.com/liveroom/liveroom/internal/bus"
	"github.com/liveroom/liveroom/internal/protocol"
	"github.com/liveroom/liveroom/internal/testutil"
)

// TestArchiverStopsAndCatchesUp: messages sent while the archiver is
// stopped are archived when it starts again; messages that expired from
// the buffer stream meanwhile are counted as lost, not silently skipped.
func TestArchiverStopsAndCatchesUp(t *testing.T) {
	_, nc, js := testutil.StartBackbone(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// A live buffer of one second: what is sent while the archiver is
	// stopped expires before it starts again.
	if err := bus.EnsureStreams(ctx, js, bus.StreamConfig{LiveMaxAge: time.Second}); err != nil {
		t.Fatal(err)
	}
	store, err := archive.Open(filepath.Join(t.TempDir(), "a.db"), false)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	a, err := archive.New(archive.Config{JS: js, Store: store, Logger: testutil.Logger(), Batch: 10})
	if err != nil {
		t.Fatal(err)
	}
	send := func(from, to int) {
		for i := from; i < to; i++ {
			m := protocol.Message{ID: fmt.Sprintf("m%d", i), Type: protocol.TypeDanmaku, Room: "r", TS: int64(i), Session: "s1", OffsetMS: int64(i)}
			if err := nc.Publish(bus.LiveSubject("r"), protocol.Encode(m)); err != nil {
				t.Fatal(err)
			}
		}
		// Outside a session: skipped.
		_ = nc.Publish(bus.LiveSubject("r"), protocol.Encode(protocol.Message{ID: "x", Type: protocol.TypeDanmaku, Room: "r"}))
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	count := func() int64 {
		m, err := store.Meta("r", "s1")
		if err != nil {
			return 0
		}
		return m.Messages
	}
	if err := a.Start(ctx); err != nil {
		t.Fatal(err)
	}
	send(0, 25)
	testutil.Eventually(t, 10*time.Second, "25 archived", func() bool { return count() == 25 })
	a.Stop()
	send(25, 40) // within the buffer's age: archived after the restart
	if err := a.Start(ctx); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "40 archived after a restart", func() bool { return count() == 40 })
	a.Stop()
	send(40, 45) // these expire before the archive comes back
	testutil.Eventually(t, 10*time.Second, "the buffer drops them", func() bool {
		st, err := js.Stream(ctx, bus.LiveStream)
		return err == nil && st.CachedInfo().State.Msgs == 0
	})
	send(45, 48)
	if err := a.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer a.Stop()
	// The counter follows the commit that the store's count sees first.
	testutil.Eventually(t, 10*time.Second, "the last 3 archived", func() bool {
		archived, _ := a.Stats()
		return count() == 43 && archived == 43
	})
	if lost := a.Lost(); lost != 6 { // 5 in a session + 1 outside one
		t.Errorf("lost %d, want 6", lost)
	}
	if archived, skipped := a.Stats(); archived != 43 || skipped != 3 {
		t.Errorf("archived %d skipped %d, want 43 and 3", archived, skipped)
	}
	var got []string
	if _, err := store.Window("r", "s1", 0, 100, 100, func(_ int64, d []byte) { got = append(got, string(d)) }); err != nil || len(got) != 43 {
		t.Fatalf("window: %d %v", len(got), err)
	}
}
