package archive

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

func rec(off int64, src Source, seq uint64) Record {
	return Record{Room: "r1", Session: "s1", OffsetMS: off, Source: src, Seq: seq, Data: []byte(fmt.Sprintf(`{"o":%d,"q":%d}`, off, seq))}
}

func window(t *testing.T, s *Store, from, to int64, limit int) (string, int64) {
	t.Helper()
	out := ""
	next, err := s.Window("r1", "s1", from, to, limit, func(_ int64, d []byte) { out += string(d) })
	if err != nil {
		t.Fatal(err)
	}
	return out, next
}

func TestStorePutWindowDedupeRetention(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "a.db"), false)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	n, err := s.Put([]Record{rec(5, SourceLive, 3), rec(1, SourceLive, 1), rec(5, SourceReliable, 1), rec(5, SourceLive, 2), rec(9, SourceLive, 4),
		{Room: "r1", Session: "", OffsetMS: 1, Data: []byte("{}")}})
	if err != nil || n != 5 {
		t.Fatalf("put: %d %v, want 5 new (no-session record ignored)", n, err)
	}
	// Redelivery: the same records again are not new.
	if n, err := s.Put([]Record{rec(5, SourceLive, 3), rec(9, SourceLive, 4), rec(12, SourceLive, 5)}); err != nil || n != 1 {
		t.Fatalf("second put: %d %v, want 1 new", n, err)
	}
	if m, err := s.Meta("r1", "s1"); err != nil || m.Messages != 6 || m.LastOffsetMS != 12 {
		t.Fatalf("meta %+v %v", m, err)
	}
	cases := []struct {
		name     string
		from, to int64
		limit    int
		want     string
		next     int64
	}{
		{"all in order", 0, 100, 100, `{"o":1,"q":1}{"o":5,"q":2}{"o":5,"q":3}{"o":5,"q":1}{"o":9,"q":4}{"o":12,"q":5}`, -1},
		{"to is exclusive", 1, 9, 100, `{"o":1,"q":1}{"o":5,"q":2}{"o":5,"q":3}{"o":5,"q":1}`, -1},
		{"cap finishes the millisecond", 0, 100, 2, `{"o":1,"q":1}{"o":5,"q":2}{"o":5,"q":3}{"o":5,"q":1}`, 9},
		{"cap at a boundary", 0, 100, 1, `{"o":1,"q":1}`, 5},
		{"empty window", 13, 100, 10, ``, -1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, next := window(t, s, tc.from, tc.to, tc.limit)
			if got != tc.want || next != tc.next {
				t.Errorf("got %s next %d, want %s next %d", got, next, tc.want, tc.next)
			}
		})
	}
	if _, err := s.Window("r1", "nope", 0, 10, 10, func(int64, []byte) {}); err != ErrNoSession {
		t.Errorf("unknown session: %v", err)
	}
	if n, err := s.DeleteWrittenBefore(time.Now().Add(-time.Hour)); err != nil || n != 0 {
		t.Errorf("retention deleted %d %v of a fresh session", n, err)
	}
	if n, err := s.DeleteWrittenBefore(time.Now().Add(time.Second)); err != nil || n != 1 {
		t.Errorf("retention deleted %d %v, want 1", n, err)
	}
	if _, err := s.Meta("r1", "s1"); err != ErrNoSession {
		t.Errorf("meta after retention: %v", err)
	}
}
