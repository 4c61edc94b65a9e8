package announce_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/liveroom/liveroom/internal/announce"
	"github.com/liveroom/liveroom/internal/bus"
	"github.com/liveroom/liveroom/internal/protocol"
	"github.com/liveroom/liveroom/internal/testutil"
)

var now = time.Date(2030, 1, 2, 19, 0, 0, 0, time.UTC)

func TestBuild(t *testing.T) {
	at := now.Add(time.Hour)
	for _, tc := range []struct {
		name  string
		req   announce.Request
		field string // "" when valid
	}{
		{"valid", announce.Request{Room: "star", Viewers: 5000, At: at}, ""},
		{"with until and note", announce.Request{Room: "star", Viewers: 1, At: at, Until: at.Add(2 * time.Hour), Note: " final "}, ""},
		{"started already", announce.Request{Room: "star", Viewers: 10, At: now.Add(-time.Minute)}, ""},
		{"bad room", announce.Request{Room: "a.b", Viewers: 10, At: at}, "room"},
		{"no viewers", announce.Request{Room: "star", At: at}, "viewers"},
		{"too many viewers", announce.Request{Room: "star", Viewers: announce.MaxViewers + 1, At: at}, "viewers"},
		{"no at", announce.Request{Room: "star", Viewers: 10}, "at"},
		{"too far ahead", announce.Request{Room: "star", Viewers: 10, At: now.Add(8 * 24 * time.Hour)}, "at"},
		{"until before at", announce.Request{Room: "star", Viewers: 10, At: at, Until: at.Add(-time.Second)}, "until"},
		{"too long", announce.Request{Room: "star", Viewers: 10, At: at, Until: at.Add(25 * time.Hour)}, "until"},
		{"over already", announce.Request{Room: "star", Viewers: 10, At: now.Add(-2 * time.Hour)}, "until"},
		{"long note", announce.Request{Room: "star", Viewers: 10, At: at, Note: strings.Repeat("é", 201)}, "note"},
		{"control in note", announce.Request{Room: "star", Viewers: 10, At: at, Note: "a\nb"}, "note"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, err := tc.req.Build(now, "boss")
			if tc.field == "" {
				if err != nil {
					t.Fatal(err)
				}
				if !strings.HasPrefix(a.ID, "an-") || a.By != "boss" || !a.Until.After(a.At) || a.Created != now {
					t.Errorf("announcement %+v", a)
				}
				if tc.req.Until.IsZero() && a.Until.Sub(a.At) != announce.DefaultLength {
					t.Errorf("until %v, want at + %v", a.Until, announce.DefaultLength)
				}
				return
			}
			var pe *protocol.Error
			if !errors.As(err, &pe) || pe.Status != http.StatusBadRequest || pe.Body.Field != tc.field {
				t.Fatalf("error %v, want a 400 on %s", err, tc.field)
			}
		})
	}
}

// TestStore runs two stores on one real NATS: what one writes the other
// sees through its watch; expired announcements are not listed and are
// purged by the next create; the count of live ones is bounded.
func TestStore(t *testing.T) {
	_, _, js := testutil.StartBackbone(t)
	clock := now
	open := func() *announce.Store {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s, err := announce.Open(ctx, announce.Config{JS: js, Logger: testutil.Logger(), Now: func() time.Time { return clock }})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	}
	a, b := open(), open()
	ctx := context.Background()
	mk := func(viewers int, at time.Time) announce.Announcement {
		x, err := announce.Request{Room: "star", Viewers: viewers, At: at}.Build(clock, "boss")
		if err != nil {
			t.Fatal(err)
		}
		return x
	}
	first := mk(5000, now.Add(time.Minute))
	if err := a.Create(ctx, first); err != nil {
		t.Fatal(err)
	}
	if l := a.List(clock); len(l) != 1 || l[0].ID != first.ID {
		t.Fatalf("writer lists %+v", l)
	}
	testutil.Eventually(t, 5*time.Second, "the other store sees it", func() bool {
		l := b.List(clock)
		return len(l) == 1 && l[0].ID == first.ID && l[0].Viewers == 5000 && l[0].At.Equal(first.At)
	})
	// A third store opened now loads it.
	if l := open().List(clock); len(l) != 1 {
		t.Fatalf("a new store lists %+v", l)
	}
	// Expired: not listed, and purged by the next create.
	short, _ := announce.Request{Room: "old", Viewers: 3, At: now, Until: now.Add(time.Second)}.Build(clock, "boss")
	if err := a.Create(ctx, short); err != nil {
		t.Fatal(err)
	}
	clock = clock.Add(2 * time.Second)
	if l := a.List(clock); len(l) != 1 || l[0].ID != first.ID {
		t.Fatalf("an expired announcement is listed: %+v", l)
	}
	for i := range announce.MaxActive - 1 {
		if err := a.Create(ctx, mk(10+i, now.Add(time.Hour))); err != nil {
			t.Fatalf("create %d: %v", i, err)
		}
	}
	var pe *protocol.Error
	if err := a.Create(ctx, mk(1, now.Add(time.Hour))); !errors.As(err, &pe) || pe.Status != http.StatusConflict || pe.Body.Code != protocol.CodeTooManyAnnouncements {
		t.Fatalf("create beyond %d: %v, want 409", announce.MaxActive, err)
	}
	kv, err := js.KeyValue(ctx, bus.AnnouncementsKV)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Get(ctx, short.ID); err == nil {
		t.Error("the expired announcement is still in the bucket")
	}
	// Delete, seen by the other store.
	if err := b.Delete(ctx, first.ID); err != nil {
		t.Fatal(err)
	}
	if err := b.Delete(ctx, first.ID); !errors.Is(err, announce.ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
	testutil.Eventually(t, 5*time.Second, "the delete reaches the first store", func() bool {
		for _, x := range a.List(clock) {
			if x.ID == first.ID {
				return false
			}
		}
		return true
	})
	// A value that does not have the documented shape is ignored.
	bad, _ := json.Marshal(map[string]any{"id": "an-bad", "room": "x.y", "viewers": -1})
	if _, err := kv.Put(ctx, "an-bad", bad); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	for _, x := range b.List(clock) {
		if x.ID == "an-bad" {
			t.Errorf("a malformed entry is listed: %+v", x)
		}
	}
}

// TestStoreBeforeTheBucket: a store opened before any uplink created the
// bucket starts empty, refuses writes with ErrNotReady, and finds the
// bucket once it exists.
func TestStoreBeforeTheBucket(t *testing.T) {
	e := testutil.StartNATS(t)
	nc, err := nats.Connect(testutil.NATSURL(t, e, bus.RoleAll, ""))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s, err := announce.Open(ctx, announce.Config{JS: js, Logger: testutil.Logger()})
	if err != nil {
		t.Fatalf("open before the bucket exists: %v", err)
	}
	defer s.Close()
	a, _ := announce.Request{Room: "star", Viewers: 10, At: time.Now().Add(time.Hour)}.Build(time.Now(), "boss")
	if err := s.Create(ctx, a); !errors.Is(err, announce.ErrNotReady) {
		t.Fatalf("create before the bucket exists: %v, want ErrNotReady", err)
	}
	if err := bus.EnsureStreams(ctx, js, bus.StreamConfig{}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "the store finds the bucket", func() bool { return s.Create(ctx, a) == nil })
	if l := s.List(time.Now()); len(l) != 1 || l[0].ID != a.ID {
		t.Fatalf("list %+v", l)
	}
}
