package protocol

import (
	"encoding/json"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestParseRoom(t *testing.T) {
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{"a", true}, {"Room_1-x", true}, {strings.Repeat("r", 64), true},
		{"", false}, {strings.Repeat("r", 65), false}, {"a.b", false}, {"a*", false},
		{">", false}, {"a b", false}, {"é", false}, {"a\x00", false}, {"lr.room.x", false},
	} {
		t.Run(tc.in, func(t *testing.T) {
			r, err := ParseRoom(tc.in)
			if (err == nil) != tc.ok {
				t.Fatalf("ParseRoom(%q) err = %v, want ok=%v", tc.in, err, tc.ok)
			}
			if !tc.ok && !errors.Is(err, ErrInvalidRoom) {
				t.Fatalf("error %v does not wrap ErrInvalidRoom", err)
			}
			if tc.ok && string(r) != tc.in {
				t.Fatalf("got %q", r)
			}
		})
	}
}

func FuzzParseRoom(f *testing.F) {
	for _, s := range []string{"a", "a.b", ">", "*", "room-1", strings.Repeat("x", 64), strings.Repeat("x", 65), "\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRoom(s)
		if err != nil {
			return
		}
		// Anything accepted is a single, literal NATS subject token.
		if len(r) == 0 || len(r) > MaxRoomLen || strings.ContainsAny(string(r), ".*> \t\r\n") {
			t.Fatalf("accepted unsafe room %q", r)
		}
		// ... made only of [A-Za-z0-9_-], and exactly the input (no
		// normalisation that could make two spellings one room).
		for i := 0; i < len(r); i++ {
			c := r[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
				t.Fatalf("accepted room %q with byte %q", r, c)
			}
		}
		if string(r) != s {
			t.Fatalf("ParseRoom(%q) = %q", s, r)
		}
	})
}

func TestAppendBatchAndWithSeqAreValidJSON(t *testing.T) {
	m1 := Encode(Message{ID: "a", Type: TypeDanmaku, Text: `quote " and \ backslash`, TS: 1})
	m2 := WithSeq(Encode(Message{ID: "g", Type: TypeGift, Gift: "rose", Count: 1, TS: 2}), 42)
	for _, window := range []int64{0, 200} {
		b := AppendBatch(nil, "room-1", window, [][]byte{m1, m2})
		var got Batch
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("invalid batch %s: %v", b, err)
		}
		if got.Type != FrameBatch || got.Room != "room-1" || got.WindowMS != window || len(got.Msgs) != 2 || got.Msgs[1].Seq != 42 || got.Msgs[0].Text != `quote " and \ backslash` {
			t.Fatalf("decoded %+v", got)
		}
	}
	if string(WithSeq([]byte("{}"), 7)) != `{"seq":7}` {
		t.Fatalf("WithSeq on empty object: %s", WithSeq([]byte("{}"), 7))
	}
}

func TestAppendHistoryIsValidJSON(t *testing.T) {
	m1 := Encode(Message{ID: "a", Type: TypeDanmaku, Text: `quote " and \ backslash`, TS: 1})
	m2 := WithSeq(Encode(Message{ID: "g", Type: TypeGift, Gift: "rose", Count: 1, TS: 2}), 42)
	b := AppendHistory(nil, "room-1", [][]byte{m1, m2})
	var got History
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatalf("invalid history %s: %v", b, err)
	}
	if got.Type != FrameHistory || got.Room != "room-1" || len(got.Msgs) != 2 || got.Msgs[1].Seq != 42 || got.Msgs[0].Text != `quote " and \ backslash` {
		t.Fatalf("decoded %+v", got)
	}
	if b := AppendHistory(nil, "r", nil); string(b) != `{"type":"history","room":"r","msgs":[]}` {
		t.Fatalf("empty history: %s", b)
	}
	w, _ := json.Marshal(Welcome{Type: FrameWelcome, History: 3})
	if !strings.Contains(string(w), `"history":3`) {
		t.Fatalf("welcome without history count: %s", w)
	}
	w, _ = json.Marshal(Welcome{Type: FrameWelcome})
	if strings.Contains(string(w), `history`) {
		t.Fatalf("welcome with an empty history count: %s", w)
	}
}

func TestWriteErrorShapes(t *testing.T) {
	w := httptest.NewRecorder()
	WriteError(w, Errorf(429, CodeUserRateLimited, "", "slow down").WithRetry(1500))
	if w.Code != 429 || w.Header().Get("Retry-After") != "2" {
		t.Fatalf("got %d Retry-After %q", w.Code, w.Header().Get("Retry-After"))
	}
	var body struct {
		Error ErrorBody `json:"error"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || body.Error.Code != CodeUserRateLimited {
		t.Fatalf("body %s", w.Body)
	}
	w = httptest.NewRecorder()
	WriteError(w, errors.New("db password is hunter2"))
	if w.Code != 500 || strings.Contains(w.Body.String(), "hunter2") {
		t.Fatalf("internal error leaked: %d %s", w.Code, w.Body)
	}
}
