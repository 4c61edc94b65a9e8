package uplink

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/liveroom/liveroom/internal/protocol"
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

// FuzzServerBatch checks the server API's batch decoding: it never panics;
// every refusal is a 4xx with a known code; an accepted paid gift has a
// valid user, a count of 1-999, a printable order id of at most 128 bytes, a
// non-negative amount and, with an amount, a three-letter currency.
func FuzzServerBatch(f *testing.F) {
	for _, seed := range []string{
		`{"messages":[{"op":"gift","room":"r1","user":"u1","gift":"rose","order_id":"o-1","amount":100,"currency":"USD"}]}`,
		`{"messages":[{"op":"announce","room":"r1","text":"hi","key":"k"},{"op":"notice","room":"r1","user":"u","text":"x"}]}`,
		`{"messages":[{"op":"gift","room":"r1","user":"u1","gift":"rose","count":0,"order_id":"o"}]}`,
		`{"messages":[{"op":"gift","room":"r1","user":"u1","gift":"rose","order_id":"o","amount":5}]}`,
		`{"messages":[{"op":"gift","room":"r1","User":"u1","gift":"rose","order_id":"o"}]}`,
		`{"messages":[{"op":"poke"}]}`, `{"messages":[1,"x",null]}`, `{"messages":{}}`, `{}`, `[]`, ``,
	} {
		f.Add([]byte(seed))
	}
	known := map[string]bool{protocol.CodeInvalidJSON: true, protocol.CodeUnknownType: true, protocol.CodeInvalidRoom: true,
		protocol.CodeInvalidField: true, protocol.CodeUnknownGift: true}
	check := func(t *testing.T, perr *protocol.Error) {
		if perr.Status < 400 || perr.Status > 499 || !known[perr.Body.Code] {
			t.Fatalf("refusal %d %s", perr.Status, perr.Body.Code)
		}
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var b serverBatch
		if perr := decodeStrict(body, &b, "messages"); perr != nil {
			check(t, perr)
			return
		}
		for _, raw := range b.Messages {
			var op struct {
				Op string `json:"op"`
			}
			if json.Unmarshal(raw, &op) != nil {
				continue
			}
			keys, ok := batchKeys[op.Op]
			if !ok {
				continue
			}
			var it batchItem
			if perr := decodeStrict(raw, &it, keys...); perr != nil {
				check(t, perr)
				continue
			}
			if op.Op != OpGift {
				continue
			}
			it.serverGift.User = it.User
			user, count, perr := fuzzGifts.checkPaidGift(it.serverGift)
			if perr != nil {
				check(t, perr)
				continue
			}
			g := it.serverGift
			if _, err := protocol.ParseUser(string(user)); err != nil || count < 1 || count > MaxCount ||
				len(g.OrderID) < 1 || len(g.OrderID) > MaxOrderIDLen || g.Amount < 0 || (g.Amount > 0 && !isCurrency(g.Currency)) {
				t.Fatalf("accepted %+v (user %q count %d)", g, user, count)
			}
			for i := 0; i < len(g.OrderID); i++ {
				if g.OrderID[i] < 0x20 || g.OrderID[i] > 0x7e {
					t.Fatalf("accepted order id %q", g.OrderID)
				}
			}
		}
	})
}
