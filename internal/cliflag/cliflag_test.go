package cliflag

import (
	"bytes"
	"errors"
	"flag"
	"strings"
	"testing"
)

func newFlags(out *bytes.Buffer) *flag.FlagSet {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.String("addr", "", "HTTP listen address")
	fs.String("nats-port", "", "NATS port")
	fs.Int("count", 1, "a count")
	fs.Bool("json", false, "print JSON")
	fs.Usage = func() {
		out.WriteString("usage: liveroom serve [flags]\n")
		fs.PrintDefaults()
	}
	return fs
}

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string // the error; "" for none
	}{
		{"fine", []string{"--addr", ":1", "--count=2", "-json"}, ""},
		{"typo", []string{"--adr", ":1"}, "serve: unknown flag --adr: did you mean --addr? (liveroom serve -h lists the flags)"},
		{"swapped letters", []string{"--cuont", "3"}, "serve: unknown flag --cuont: did you mean --count?"},
		{"part of a name", []string{"--port", "4"}, "serve: unknown flag --port: did you mean --nats-port?"},
		{"typo with value", []string{"-adr=:1"}, "serve: unknown flag --adr: did you mean --addr?"},
		{"nothing near", []string{"--zzzzzz"}, "serve: unknown flag --zzzzzz (liveroom serve -h lists the flags)"},
		{"bad value", []string{"--count", "lots"}, `serve: invalid value "lots" for flag -count: parse error (liveroom serve -h lists the flags)`},
		{"missing value", []string{"--addr"}, "serve: flag needs an argument: -addr"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			err := Parse(newFlags(&out), tc.args)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("err = %v", err)
			case tc.want != "" && (err == nil || !strings.HasPrefix(err.Error(), tc.want)):
				t.Fatalf("err = %v, want it to start with %q", err, tc.want)
			}
			if out.Len() != 0 {
				t.Errorf("printed %q; a mistake is told by the error alone", out.String())
			}
		})
	}
}

func TestParseHelp(t *testing.T) {
	var out bytes.Buffer
	fs := newFlags(&out)
	if err := Parse(fs, []string{"-h"}); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("err = %v, want flag.ErrHelp", err)
	}
	if !strings.HasPrefix(out.String(), "usage: liveroom serve") || !strings.Contains(out.String(), "-nats-port") {
		t.Errorf("usage not printed: %q", out.String())
	}
	// The usage and output are back in place after a silent mistake.
	out.Reset()
	_ = Parse(fs, []string{"--nope"})
	fs.Usage()
	if !strings.HasPrefix(out.String(), "usage: liveroom serve") {
		t.Errorf("usage lost after a mistake: %q", out.String())
	}
}

func TestDistance(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		d    int
	}{
		{"addr", "addr", 0}, {"adr", "addr", 1}, {"dadr", "addr", 1}, {"", "abc", 3}, {"kitten", "sitting", 3}, {"ca", "ac", 1},
	} {
		if d := distance(tc.a, tc.b); d != tc.d {
			t.Errorf("distance(%q, %q) = %d, want %d", tc.a, tc.b, d, tc.d)
		}
	}
}
