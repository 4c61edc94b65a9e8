package uplink

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
)

var fuzzGifts = catalogue{"rose": {}, "heart": {}, "rocket": {}, "castle": {}, "car": {}}

// FuzzDecodeSend checks that the send body decoder never panics, that every
// rejection is a 400 with a known code and field, and that an accepted body
// re-validates and survives an encode/decode round trip unchanged.
func FuzzDecodeSend(f *testing.F) {
	for _, seed := range []string{
		`{"type":"danmaku","text":"hello"}`,
		`{"type":"danmaku","text":"好好好 🚀 \ud83d\ude00"}`,
		`{"type":"danmaku","text":"a\ud800b"}`,
		`{"type":"danmaku","text":"\udc00"}`,
		`{"type":"danmaku","text":"a\u0007"}`,
		`{"type":"danmaku","text":""}`,
		`{"type":"danmaku","text":7}`,
		"{\"type\":\"danmaku\",\"text\":\"\xff\"}",
		`{"type":"gift","gift":"rocket","count":1}`,
		`{"type":"gift","gift":"rose"}`,
		`{"type":"gift","gift":"yacht","count":1}`,
		`{"type":"gift","gift":"rose","count":1000}`,
		`{"type":"gift","gift":"rose","count":1e2}`,
		`{"type":"like","count":5}`,
		`{"type":"like","count":null}`,
		`{"type":"like","count":-1}`,
		`{"type":"like","count":99999999999999999999}`,
		`{"TYPE":"like","Count":3}`,
		`{"type":"like","type":"danmaku","text":"dup keys"}`,
		`{"type":"poke"}`,
		`{}`, `null`, `[]`, `"x"`, `{`, ``, `{"type":"danmaku","text":"hi"}x`,
	} {
		f.Add([]byte(seed))
	}
	codes := map[string]map[string]bool{
		"invalid_json":  {"": true},
		"unknown_type":  {"type": true},
		"invalid_field": {"text": true, "gift": true, "count": true, "type": true},
		"unknown_gift":  {"gift": true},
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req, perr := decodeSend(body, fuzzGifts)
		if perr != nil {
			if perr.Status != http.StatusBadRequest || !codes[perr.Body.Code][perr.Body.Field] || perr.Body.Message == "" {
				t.Fatalf("%q: unexpected rejection %d %+v", body, perr.Status, perr.Body)
			}
			return
		}
		if v := req.validate(fuzzGifts); v != nil {
			t.Fatalf("%q: accepted %+v does not re-validate: %v", body, req, v)
		}
		b, err := json.Marshal(req)
		if err != nil {
			t.Fatal(err)
		}
		again, perr := decodeSend(b, fuzzGifts)
		if perr != nil || again != req {
			t.Fatalf("%q: round trip %s gave %+v, %v; want %+v", body, b, again, perr, req)
		}
	})
}

// FuzzIdempotencyKey checks the header check never panics and accepts
// exactly 1-128 printable ASCII characters.
func FuzzIdempotencyKey(f *testing.F) {
	for _, seed := range []string{"k", "order-1", "", " ", "clé", "\x00", "~~~"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, k string) {
		got, perr := checkIdempotencyKey([]string{k})
		valid := len(k) >= 1 && len(k) <= MaxIdempotencyKeyLen
		for i := 0; i < len(k); i++ {
			valid = valid && k[i] >= 0x20 && k[i] <= 0x7e
		}
		if valid != (perr == nil) || (valid && got != k) {
			t.Fatalf("%q: got %q, %v; valid %v", k, got, perr, valid)
		}
		if perr != nil && (perr.Status != http.StatusBadRequest || perr.Body.Field != HeaderIdempotencyKey) {
			t.Fatalf("%q: rejection %+v", k, perr)
		}
	})
}

// TestUnknownGiftListsTheCatalogue: the sender of an unknown gift learns
// which gifts exist, sorted, and a long catalogue is cut short.
func TestUnknownGiftListsTheCatalogue(t *testing.T) {
	_, perr := decodeSend([]byte(`{"type":"gift","gift":"yacht","count":1}`), fuzzGifts)
	if perr == nil || perr.Body.Code != "unknown_gift" || perr.Body.Message != "gift is not in the catalogue (car, castle, heart, rocket, rose)" {
		t.Fatalf("unknown gift: %+v", perr)
	}
	big := catalogue{}
	for i := range maxListedGifts + 5 {
		big[fmt.Sprintf("g%02d", i)] = struct{}{}
	}
	perr = big.unknownGift()
	if !strings.HasSuffix(perr.Body.Message, fmt.Sprintf("g%02d, …)", maxListedGifts-1)) {
		t.Errorf("long catalogue: %q", perr.Body.Message)
	}
}
