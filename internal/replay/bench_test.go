package replay_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/liveroom/liveroom/internal/archive"
	"github.com/liveroom/liveroom/internal/bus"
	"github.com/liveroom/liveroom/internal/protocol"
	"github.com/liveroom/liveroom/internal/replay"
	"github.com/liveroom/liveroom/internal/session"
	"github.com/liveroom/liveroom/internal/testutil"
)

// The benchmark fixture: one session of fixtureMsgs messages spread evenly
// over fixtureSpanMS (an hour: 278 messages a second, so a 10 s window
// holds about 2,800). It is built once per test process, in a directory
// TestMain removes.
const (
	fixtureMsgs   = 1_000_000
	fixtureSpanMS = 3_600_000
	fixtureRoom   = "bench"
	fixtureSess   = "20261127-100000-bnch"
)

var (
	fixtureOnce  sync.Once
	fixtureDir   string
	fixtureStore *archive.Store
	fixtureErr   error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if fixtureStore != nil {
		_ = fixtureStore.Close()
	}
	if fixtureDir != "" {
		_ = os.RemoveAll(fixtureDir)
	}
	os.Exit(code)
}

func fixture(b *testing.B) *archive.Store {
	b.Helper()
	fixtureOnce.Do(func() {
		start := time.Now()
		if fixtureDir, fixtureErr = os.MkdirTemp("", "liveroom-replay-bench-"); fixtureErr != nil {
			return
		}
		if fixtureStore, fixtureErr = archive.Open(filepath.Join(fixtureDir, "archive.db"), true); fixtureErr != nil {
			return
		}
		const batch = 50_000
		recs := make([]archive.Record, 0, batch)
		for i := range fixtureMsgs {
			off := int64(i) * fixtureSpanMS / fixtureMsgs
			m := protocol.Message{ID: fmt.Sprintf("m%021d", i), Type: protocol.TypeDanmaku, Room: fixtureRoom,
				User: fmt.Sprintf("user%d", i%5000), Name: "viewer", Role: protocol.RoleViewer, TS: 1_790_000_000_000 + off,
				Text: "a bullet comment of ordinary length", Session: fixtureSess, OffsetMS: off}
			recs = append(recs, archive.Record{Room: fixtureRoom, Session: fixtureSess, OffsetMS: off,
				Source: archive.SourceLive, Seq: uint64(i + 1), Data: protocol.Encode(m)})
			if len(recs) == batch {
				if _, fixtureErr = fixtureStore.Put(recs); fixtureErr != nil {
					return
				}
				recs = recs[:0]
			}
		}
		fmt.Fprintf(os.Stderr, "replay bench: built a %d-message session in %v\n", fixtureMsgs, time.Since(start).Round(time.Millisecond))
	})
	if fixtureErr != nil {
		b.Fatal(fixtureErr)
	}
	return fixtureStore
}

// BenchmarkReplayWindow answers GET …/sessions/S/replay for a random 10 s
// window of a session holding a million messages, through the HTTP
// handler (range scan, JSON assembly, write). The goal is well under 50 ms.
func BenchmarkReplayWindow(b *testing.B) {
	if testing.Short() {
		b.Skip("builds a 1M-message archive; skipped with -short")
	}
	store := fixture(b)
	_, _, js := testutil.StartBackbone(b)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kv, err := js.KeyValue(ctx, bus.SessionsKV)
	if err != nil {
		b.Fatal(err)
	}
	api, err := replay.New(replay.Config{JS: js, Sessions: session.NewRegistry(kv), Store: store,
		Verifier: testutil.Verifier(b), Logger: testutil.Logger()})
	if err != nil {
		b.Fatal(err)
	}
	h := api.Replay()
	rng := rand.New(rand.NewPCG(1, 2))
	var msgs, bytes int
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		from := rng.Int64N(fixtureSpanMS - 10_000)
		req := httptest.NewRequest(http.MethodGet, fmt.Sprintf("/v1/rooms/%s/sessions/%s/replay?from_ms=%d&to_ms=%d",
			fixtureRoom, fixtureSess, from, from+10_000), nil)
		req.SetPathValue("room", fixtureRoom)
		req.SetPathValue("session", fixtureSess)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != http.StatusOK {
			b.Fatalf("%d %s", w.Code, w.Body.String())
		}
		bytes += w.Body.Len()
		msgs++
	}
	b.StopTimer()
	b.ReportMetric(float64(bytes)/float64(msgs), "B/answer")
}
