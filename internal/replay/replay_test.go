package replay_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/liveroom/liveroom/internal/archive"
	"github.com/liveroom/liveroom/internal/bus"
	"github.com/liveroom/liveroom/internal/replay"
	"github.com/liveroom/liveroom/internal/session"
	"github.com/liveroom/liveroom/internal/testutil"
)

// TestReplayPages: a window holding more than MaxMessages is answered in
// parts joined by next_from_ms, none lost or repeated.
func TestReplayPages(t *testing.T) {
	_, _, js := testutil.StartBackbone(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kv, _ := js.KeyValue(ctx, bus.SessionsKV)
	store, err := archive.Open(filepath.Join(t.TempDir(), "a.db"), false)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	var recs []archive.Record
	for i := range 25 {
		off := int64(i / 2 * 100) // two messages per offset
		recs = append(recs, archive.Record{Room: "r", Session: "s1", OffsetMS: off, Source: archive.SourceLive, Seq: uint64(i + 1),
			Data: fmt.Appendf(nil, `{"id":"m%d","type":"danmaku","offset_ms":%d}`, i, off)})
	}
	if _, err := store.Put(recs); err != nil {
		t.Fatal(err)
	}
	api, err := replay.New(replay.Config{JS: js, Sessions: session.NewRegistry(kv), Store: store, Verifier: testutil.Verifier(t),
		Logger: testutil.Logger(), MaxMessages: 5})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	from, calls := int64(0), 0
	for {
		req := httptest.NewRequest(http.MethodGet, fmt.Sprintf("/x?from_ms=%d&to_ms=%d", from, 60000), nil)
		req.SetPathValue("room", "r")
		req.SetPathValue("session", "s1")
		w := httptest.NewRecorder()
		api.Replay().ServeHTTP(w, req)
		var a struct {
			FromMS     int64  `json:"from_ms"`
			NextFromMS *int64 `json:"next_from_ms"`
			Msgs       []struct {
				ID       string `json:"id"`
				OffsetMS int64  `json:"offset_ms"`
			} `json:"msgs"`
		}
		if w.Code != http.StatusOK || json.Unmarshal(w.Body.Bytes(), &a) != nil {
			t.Fatalf("%d %s", w.Code, w.Body)
		}
		calls++
		if len(a.Msgs) > 6 {
			t.Errorf("answer of %d messages, cap 5 (+ the rest of a millisecond)", len(a.Msgs))
		}
		for _, m := range a.Msgs {
			if seen[m.ID] {
				t.Errorf("%s twice", m.ID)
			}
			seen[m.ID] = true
		}
		if a.NextFromMS == nil {
			break
		}
		if *a.NextFromMS <= from {
			t.Fatalf("next_from_ms %d does not advance from %d", *a.NextFromMS, from)
		}
		from = *a.NextFromMS
	}
	if len(seen) != 25 || calls < 5 {
		t.Errorf("%d messages in %d calls, want 25 in at least 5", len(seen), calls)
	}
}
