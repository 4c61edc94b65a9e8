package uplink

import (
	"bytes"
	"encoding/json"
	"errors"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/liveroom/liveroom/internal/protocol"
)

// Limits of a send body. They are part of the public contract (docs/PROTOCOL.md).
const (
	// MaxTextRunes is the longest danmaku text, in characters (runes).
	MaxTextRunes = 200
	// MaxCount is the largest gift or like count of one request.
	MaxCount = protocol.MaxCount
	// MaxIdempotencyKeyLen is the longest Idempotency-Key header accepted.
	MaxIdempotencyKeyLen = 128
	// HeaderIdempotencyKey names the header that makes a gift idempotent.
	HeaderIdempotencyKey = "Idempotency-Key"
)

// sendRequest is a decoded and validated send body. Only the fields of its
// Type are set: Text for danmaku, Gift and Count for gifts, Count for likes.
// It encodes back to a body that decodes to the same value (the fuzzer checks).
type sendRequest struct {
	Type  string `json:"type"`
	Text  string `json:"text,omitempty"`
	Gift  string `json:"gift,omitempty"`
	Count int64  `json:"count,omitempty"`
}

// wireSend is the body as sent. Every field stays raw so that each one is
// checked on its own and a wrong type names its field instead of failing the
// whole body; unknown fields are ignored.
type wireSend struct {
	Type  json.RawMessage `json:"type"`
	Text  json.RawMessage `json:"text"`
	Gift  json.RawMessage `json:"gift"`
	Count json.RawMessage `json:"count"`
}

// catalogue is the set of gift names accepted; read-only after New.
type catalogue map[string]struct{}

// unknownGift is the error for a gift outside the catalogue. It lists the
// catalogue (sorted, at most maxListedGifts names) so that a sender can fix
// the request; the gift sent is not echoed.
func (c catalogue) unknownGift() *protocol.Error {
	names := slices.Sorted(maps.Keys(c))
	more := ""
	if len(names) > maxListedGifts {
		names, more = names[:maxListedGifts], ", …"
	}
	return badRequest(protocol.CodeUnknownGift, "gift", "gift is not in the catalogue ("+strings.Join(names, ", ")+more+")")
}

// maxListedGifts bounds the names an unknown_gift error lists.
const maxListedGifts = 30

// decodeSend parses and validates a send body. Every error is a 400
// *protocol.Error naming the field at fault. It never panics.
func decodeSend(body []byte, gifts catalogue) (sendRequest, *protocol.Error) {
	if err := protocol.CheckKeys(body, "type", "text", "gift", "count"); err != nil {
		return sendRequest{}, badRequest(protocol.CodeInvalidJSON, "", "body must be one JSON object: "+strings.TrimPrefix(err.Error(), protocol.ErrKeys.Error()+": "))
	}
	var w wireSend
	if err := json.Unmarshal(body, &w); err != nil {
		return sendRequest{}, badRequest(protocol.CodeInvalidJSON, "", "body must be one JSON object: "+jsonReason(err))
	}
	var req sendRequest
	typ, ok := rawString(w.Type)
	switch {
	case !ok:
		return sendRequest{}, badRequest(protocol.CodeUnknownType, "type", `type is required: "danmaku", "gift" or "like"`)
	case typ != protocol.TypeDanmaku && typ != protocol.TypeGift && typ != protocol.TypeLike:
		return sendRequest{}, badRequest(protocol.CodeUnknownType, "type", `type must be "danmaku", "gift" or "like"`)
	}
	req.Type = typ
	switch typ {
	case protocol.TypeDanmaku:
		text, perr := decodeText(w.Text)
		if perr != nil {
			return sendRequest{}, perr
		}
		req.Text = text
	case protocol.TypeGift:
		if isNull(w.Gift) {
			return sendRequest{}, badRequest(protocol.CodeUnknownGift, "gift", "gift is required")
		}
		g, ok := rawString(w.Gift)
		if !ok {
			return sendRequest{}, badRequest(protocol.CodeInvalidField, "gift", "gift must be a string")
		}
		if _, known := gifts[g]; !known {
			return sendRequest{}, gifts.unknownGift()
		}
		req.Gift = g
		fallthrough
	case protocol.TypeLike:
		n, perr := decodeCount(w.Count)
		if perr != nil {
			return sendRequest{}, perr
		}
		req.Count = n
	}
	if perr := req.validate(gifts); perr != nil {
		return sendRequest{}, perr
	}
	return req, nil
}

// validate checks the invariants of a decoded request. decodeSend ends with
// it so that what the decoder lets through and what the handlers rely on can
// never drift apart.
func (r sendRequest) validate(gifts catalogue) *protocol.Error {
	switch r.Type {
	case protocol.TypeDanmaku:
		if perr := checkText(r.Text); perr != nil {
			return perr
		}
		if r.Gift != "" || r.Count != 0 {
			return badRequest(protocol.CodeInvalidField, "type", "danmaku carries only text")
		}
	case protocol.TypeGift:
		if _, ok := gifts[r.Gift]; !ok {
			return gifts.unknownGift()
		}
		if r.Text != "" {
			return badRequest(protocol.CodeInvalidField, "type", "a gift carries no text")
		}
		return checkCount(r.Count)
	case protocol.TypeLike:
		if r.Text != "" || r.Gift != "" {
			return badRequest(protocol.CodeInvalidField, "type", "a like carries only a count")
		}
		return checkCount(r.Count)
	default:
		return badRequest(protocol.CodeUnknownType, "type", `type must be "danmaku", "gift" or "like"`)
	}
	return nil
}

// decodeText decodes the raw "text" value. encoding/json silently replaces
// invalid UTF-8 and lone surrogate escapes with U+FFFD, so both are checked
// on the raw bytes before decoding: a client sending broken text is told so
// instead of having its comment altered.
func decodeText(raw json.RawMessage) (string, *protocol.Error) {
	if isNull(raw) {
		return "", badRequest(protocol.CodeInvalidField, "text", "text is required")
	}
	if len(raw) < 2 || raw[0] != '"' {
		return "", badRequest(protocol.CodeInvalidField, "text", "text must be a string")
	}
	if !utf8.Valid(raw) || !validSurrogates(raw) {
		return "", badRequest(protocol.CodeInvalidField, "text", "text must be valid UTF-8")
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", badRequest(protocol.CodeInvalidField, "text", "text must be a string")
	}
	return s, checkText(s)
}

// checkText enforces 1-200 runes of valid UTF-8 without control characters.
// Newlines and tabs are control characters too: a danmaku is one line that
// flies across the video.
func checkText(s string) *protocol.Error {
	if !utf8.ValidString(s) {
		return badRequest(protocol.CodeInvalidField, "text", "text must be valid UTF-8")
	}
	if p := protocol.TextProblem(s); p != "" {
		return badRequest(protocol.CodeInvalidField, "text", "text "+p)
	}
	n := utf8.RuneCountInString(s)
	if n < 1 || n > MaxTextRunes {
		return badRequest(protocol.CodeInvalidField, "text", "text must be 1-"+strconv.Itoa(MaxTextRunes)+" characters")
	}
	return nil
}

// decodeCount decodes the raw "count": an integer literal 1-999, default 1
// when absent or null. 1.0, 1e2 and "1" are rejected rather than guessed at.
func decodeCount(raw json.RawMessage) (int64, *protocol.Error) {
	if isNull(raw) {
		return 1, nil
	}
	n, err := strconv.ParseInt(string(raw), 10, 64)
	if err != nil {
		return 0, badRequest(protocol.CodeInvalidField, "count", "count must be an integer 1-"+strconv.Itoa(MaxCount))
	}
	return n, checkCount(n)
}

func checkCount(n int64) *protocol.Error {
	if n < 1 || n > MaxCount {
		return badRequest(protocol.CodeInvalidField, "count", "count must be an integer 1-"+strconv.Itoa(MaxCount))
	}
	return nil
}

// checkIdempotencyKey validates the Idempotency-Key header values of a gift:
// exactly one value of 1-128 printable ASCII characters.
func checkIdempotencyKey(values []string) (string, *protocol.Error) {
	if len(values) == 0 || (len(values) == 1 && values[0] == "") {
		return "", badRequest(protocol.CodeMissingIdemKey, HeaderIdempotencyKey, "a gift needs an Idempotency-Key header; retry with the same key")
	}
	if len(values) > 1 {
		return "", badRequest(protocol.CodeInvalidField, HeaderIdempotencyKey, "send exactly one Idempotency-Key header")
	}
	k := values[0]
	if perr := checkPrintable(k, HeaderIdempotencyKey, MaxIdempotencyKeyLen); perr != nil {
		return "", perr
	}
	return k, nil
}

// rawString decodes raw as a JSON string; ok is false for any other value.
func rawString(raw json.RawMessage) (string, bool) {
	if len(raw) == 0 || raw[0] != '"' {
		return "", false
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", false
	}
	return s, true
}

func isNull(raw json.RawMessage) bool {
	return len(raw) == 0 || bytes.Equal(raw, []byte("null"))
}

// validSurrogates reports whether every \uD800-\uDFFF escape of the JSON
// string literal raw is part of a high+low pair.
func validSurrogates(raw []byte) bool {
	for i := 0; i < len(raw); i++ {
		if raw[i] != '\\' {
			continue
		}
		i++
		if i >= len(raw) || raw[i] != 'u' {
			continue
		}
		r, ok := hex4(raw, i+1)
		if !ok {
			return false
		}
		i += 4
		switch {
		case r >= 0xDC00 && r <= 0xDFFF:
			return false
		case r >= 0xD800 && r <= 0xDBFF:
			if i+2 >= len(raw) || raw[i+1] != '\\' || raw[i+2] != 'u' {
				return false
			}
			lo, ok := hex4(raw, i+3)
			if !ok || lo < 0xDC00 || lo > 0xDFFF {
				return false
			}
			i += 6
		}
	}
	return true
}

// hex4 parses the four hex digits at raw[at:].
func hex4(raw []byte, at int) (rune, bool) {
	if at < 0 || at+4 > len(raw) {
		return 0, false
	}
	var r rune
	for _, c := range raw[at : at+4] {
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	return r, true
}

// jsonReason is a short, input-free description of a decode error.
func jsonReason(err error) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return "syntax error at byte " + strconv.FormatInt(syn.Offset, 10)
	case errors.As(err, &typ):
		return "expected an object"
	default:
		return "malformed"
	}
}

func badRequest(code, field, msg string) *protocol.Error {
	return protocol.Errorf(http.StatusBadRequest, code, field, msg)
}
