package bus

import (
	"strconv"
	"strings"
	"testing"
)

func TestDecodeUsage(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		ok       bool
	}{
		{"beat only", `{"id":"up-1","ts":1,"interval_ms":250}`, true},
		{"hot keys", `{"id":"up-1","ts":1,"interval_ms":250,"hot":{"user":{"u1":3},"room":{"r1":0.5},"gift":{"u2":1},"like":{"u3":40}}}`, true},
		{"not json", `{"id":`, false},
		{"run id", `{"id":"up-1","run":"abc","ts":1,"interval_ms":250}`, true},
		{"bad run id", `{"id":"up-1","run":"a b","ts":1,"interval_ms":250}`, false},
		{"bad id", `{"id":"up.1","ts":1,"interval_ms":250}`, false},
		{"no id", `{"ts":1,"interval_ms":250}`, false},
		{"no interval", `{"id":"up-1","ts":1}`, false},
		{"negative time", `{"id":"up-1","ts":-1,"interval_ms":250}`, false},
		{"unknown class", `{"id":"up-1","ts":1,"interval_ms":250,"hot":{"admin":{"u1":1}}}`, false},
		{"bad user", `{"id":"up-1","ts":1,"interval_ms":250,"hot":{"user":{"u.1":1}}}`, false},
		{"bad room", `{"id":"up-1","ts":1,"interval_ms":250,"hot":{"room":{"r>":1}}}`, false},
		{"negative demand", `{"id":"up-1","ts":1,"interval_ms":250,"hot":{"user":{"u1":-1}}}`, false},
		{"demand not a number", `{"id":"up-1","ts":1,"interval_ms":250,"hot":{"user":{"u1":"x"}}}`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeUsage([]byte(tc.in))
			if (err == nil) != tc.ok {
				t.Errorf("DecodeUsage(%s) error %v, want ok=%v", tc.in, err, tc.ok)
			}
		})
	}
	var b strings.Builder
	b.WriteString(`{"id":"up-1","ts":1,"interval_ms":250,"hot":{"user":{`)
	for i := range MaxUsageKeys + 1 {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`"u` + strconv.Itoa(i) + `":1`)
	}
	b.WriteString(`}}}`)
	if _, err := DecodeUsage([]byte(b.String())); err == nil {
		t.Error("a report with too many keys was accepted")
	}
}

func FuzzDecodeUsage(f *testing.F) {
	f.Add([]byte(`{"id":"up-1","ts":1,"interval_ms":250,"hot":{"user":{"u1":3},"room":{"r1":0.5}}}`))
	f.Add([]byte(`{"id":"up-1","ts":1,"interval_ms":250}`))
	f.Add([]byte(`{"hot":{"like":{"":1e308}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		u, err := DecodeUsage(data)
		if err != nil {
			return
		}
		if !ValidUplinkID(u.ID) || u.IntervalMS <= 0 {
			t.Fatalf("accepted a report with id %q interval %d", u.ID, u.IntervalMS)
		}
		for _, keys := range u.Hot {
			if len(keys) > MaxUsageKeys {
				t.Fatal("accepted too many keys")
			}
			for _, d := range keys {
				if !(d >= 0) {
					t.Fatalf("accepted demand %v", d)
				}
			}
		}
	})
}
