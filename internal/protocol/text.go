package protocol

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Text shown on every viewer's screen (danmaku, notices, reasons, names)
// must not be able to reorder or hide the text around it, or to spill over
// it. The rules, in one place for every input that ends up on screen
// (docs/PROTOCOL.md, "Text"):
//
//   - control characters are refused (newlines and tabs included);
//   - bidirectional controls (U+061C, U+200E, U+200F, U+202A–U+202E,
//     U+2066–U+2069) are refused: they can make a comment display
//     reversed, or swallow the name shown next to it;
//   - invisible characters (U+200B zero width space, U+2060 word joiner,
//     U+FEFF, U+180E, U+2061–U+2064) are refused; U+200C and U+200D
//     (joiners) stay: scripts such as Persian and emoji sequences need them;
//   - at most MaxCombiningRun combining marks in a row (scripts stack two or
//     three; "Zalgo" text stacks hundreds that spill over other lines).
//
// Input a sender types (danmaku, reasons, announcements) is refused with a
// reason (TextProblem); a name from a token, which the platform signed, is
// cleaned instead (CleanName), so a viewer is never locked out by the
// platform's data.

// MaxCombiningRun is the most combining marks accepted in a row.
const MaxCombiningRun = 3

// unsafeRune reports whether r is a bidirectional control or an invisible
// character (see above).
func unsafeRune(r rune) bool {
	switch {
	case r == 0x061C, r == 0x200E, r == 0x200F,
		r >= 0x202A && r <= 0x202E,
		r >= 0x2066 && r <= 0x2069:
		return true // bidirectional controls
	case r == 0x200B, r == 0x2060, r == 0xFEFF, r == 0x180E,
		r >= 0x2061 && r <= 0x2064:
		return true // invisible
	}
	return false
}

func combining(r rune) bool { return unicode.In(r, unicode.Mn, unicode.Me) }

// TextProblem returns why s cannot be shown on screen (the rules above,
// plus invalid UTF-8), or "" when it can.
func TextProblem(s string) string {
	if !utf8.ValidString(s) {
		return "must be valid UTF-8"
	}
	run := 0
	for _, r := range s {
		switch {
		case unicode.IsControl(r):
			return "must not contain control characters (including newlines and tabs)"
		case unsafeRune(r):
			return fmt.Sprintf("must not contain bidirectional controls or invisible characters (U+%04X)", r)
		case combining(r):
			run++
			if run > MaxCombiningRun {
				return fmt.Sprintf("must not stack more than %d combining marks on one character", MaxCombiningRun)
			}
		default:
			run = 0
		}
	}
	return ""
}

// CleanName drops from a display name what TextProblem would refuse
// (control, bidirectional and invisible characters, combining marks beyond
// MaxCombiningRun in a row) and cuts it to max runes. Invalid bytes become
// U+FFFD.
func CleanName(s string, max int) string {
	var b strings.Builder
	n, run := 0, 0
	for _, r := range s {
		if unicode.IsControl(r) || unsafeRune(r) {
			continue
		}
		if combining(r) {
			run++
			if run > MaxCombiningRun {
				continue
			}
		} else {
			run = 0
		}
		if n == max {
			break
		}
		b.WriteRune(r)
		n++
	}
	return b.String()
}

// ErrKeys is wrapped by CheckKeys.
var ErrKeys = errors.New("bad JSON object keys")

// CheckKeys checks that body is a JSON object whose keys appear once each
// and, when they name one of fields, with its exact spelling. Go's decoder
// matches keys case-insensitively and lets the last duplicate win, so
// {"gift":"rose","GIFT":"castle"} would be a castle: such bodies are refused
// rather than guessed at. It checks the top-level keys only; the error names
// the key. A body that is not an object passes: the decoder reports it.
func CheckKeys(body []byte, fields ...string) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	tok, err := dec.Token()
	if err != nil || tok != json.Delim('{') {
		return nil
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil // malformed: the decoder says so
		}
		key, _ := tok.(string)
		if seen[key] {
			return fmt.Errorf("%w: %q appears twice", ErrKeys, key)
		}
		seen[key] = true
		for _, f := range fields {
			if key != f && strings.EqualFold(key, f) {
				return fmt.Errorf("%w: %q: keys are case-sensitive, write %q", ErrKeys, key, f)
			}
		}
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return nil
		}
	}
	return nil
}

// JSONProblem describes a JSON decoding error for a client, naming the
// field and the kind of value expected but no Go type.
func JSONProblem(err error) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return fmt.Sprintf("syntax error at byte %d", syn.Offset)
	case errors.As(err, &typ):
		want := "a different type"
		switch typ.Type.Kind().String() {
		case "string":
			want = "a string"
		case "bool":
			want = "true or false"
		case "int", "int8", "int16", "int32", "int64", "uint", "uint8", "uint16", "uint32", "uint64", "float32", "float64":
			want = "a number"
		case "slice", "array":
			want = "an array"
		case "struct", "map":
			want = "an object"
		case "ptr":
			want = "a value of another type"
		}
		if typ.Field == "" {
			return "the body must be " + want
		}
		return fmt.Sprintf("%s must be %s", typ.Field, want)
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return "the body ends early"
	case errors.As(err, new(*time.ParseError)), strings.HasPrefix(err.Error(), "Time.UnmarshalJSON"):
		return "times must be RFC 3339, e.g. 2030-01-02T20:00:00Z"
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return "unknown field " + strings.TrimPrefix(err.Error(), "json: unknown field ")
	}
	return "malformed JSON"
}
