package main

import (
	"bytes"
	"context"
	"regexp"
	"runtime/debug"
	"strings"
	"testing"
)

// TestHelp: liveroom help COMMAND prints that command's help on stdout and
// succeeds; help for a command that does not exist fails and lists them.
func TestHelp(t *testing.T) {
	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"help", "serve"}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out.String(), "usage: liveroom serve [flags]") || !strings.Contains(out.String(), "-nats-port") {
		t.Errorf("help serve printed:\n%s", out.String())
	}
	out.Reset()
	errOut.Reset()
	err := run(context.Background(), []string{"help", "nosuch"}, &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), `unknown command "nosuch"`) {
		t.Errorf("help nosuch: err = %v", err)
	}
	if out.Len() != 0 || !strings.Contains(errOut.String(), "commands:") {
		t.Errorf("help nosuch: stdout %q, stderr %q", out.String(), errOut.String())
	}
	out.Reset()
	if err := run(context.Background(), []string{"help"}, &out, &errOut); err != nil || !strings.Contains(out.String(), "  version ") {
		t.Errorf("help: %v\n%s", err, out.String())
	}
}

// TestEveryCommandsHelp runs -h on every command: it succeeds, and no flag's
// usage renders a value name the flag package took from a backquoted word
// (`liveroom archive` in a usage string prints "-no-archive liveroom archive").
func TestEveryCommandsHelp(t *testing.T) {
	flagLine := regexp.MustCompile(`^ {2}-([a-z0-9-]+)(?: (.+))?$`)
	valueNames := map[string]bool{"string": true, "int": true, "uint": true, "int64": true, "uint64": true, "float": true, "duration": true, "value": true}
	for _, c := range commands {
		t.Run(c.name, func(t *testing.T) {
			var out bytes.Buffer
			if err := run(context.Background(), []string{"help", c.name}, &out, &out); err != nil {
				t.Fatalf("help %s: %v", c.name, err)
			}
			if !strings.Contains(out.String(), "usage: liveroom "+c.name) {
				t.Errorf("help %s does not start with its usage:\n%s", c.name, out.String())
			}
			for _, line := range strings.Split(out.String(), "\n") {
				if m := flagLine.FindStringSubmatch(line); m != nil && m[2] != "" && !valueNames[m[2]] {
					t.Errorf("help %s: flag -%s renders the value name %q (a backquoted word in its usage?)", c.name, m[1], m[2])
				}
			}
		})
	}
}

// TestMistypedFlag: a typo answers one line naming the flag meant, not the
// whole usage.
func TestMistypedFlag(t *testing.T) {
	var out, errOut bytes.Buffer
	err := run(context.Background(), []string{"serve", "--adr", ":9"}, &out, &errOut)
	if err == nil || err.Error() != "serve: unknown flag --adr: did you mean --addr? (liveroom serve -h lists the flags)" {
		t.Errorf("err = %v", err)
	}
	if out.Len()+errOut.Len() != 0 {
		t.Errorf("printed %d bytes besides the error", out.Len()+errOut.Len())
	}
}

func TestVersion(t *testing.T) {
	for _, args := range [][]string{{"--version"}, {"version"}} {
		var out bytes.Buffer
		if err := run(context.Background(), args, &out, &out); err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(out.String(), "liveroom ") || !strings.Contains(out.String(), "go1.") {
			t.Errorf("%v printed %q", args, out.String())
		}
	}
	bi := &debug.BuildInfo{Main: debug.Module{Version: "v1.2.3"}, Settings: []debug.BuildSetting{
		{Key: "vcs.revision", Value: "0123456789abcdef0123"}, {Key: "vcs.time", Value: "2026-01-02T03:04:05Z"}, {Key: "vcs.modified", Value: "true"},
	}}
	if got := versionLine(bi, true); !strings.HasPrefix(got, "liveroom v1.2.3 (commit 0123456789ab, 2026-01-02T03:04:05Z, modified) go1.") {
		t.Errorf("versionLine = %q", got)
	}
	if got := versionLine(nil, false); !strings.HasPrefix(got, "liveroom (unknown) go1.") {
		t.Errorf("versionLine without build info = %q", got)
	}
}
