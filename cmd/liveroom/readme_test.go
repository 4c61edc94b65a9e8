package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/liveroom/liveroom/internal/testutil"
)

// The README's examples are checked, so that they cannot drift from the
// program. A fenced block right after a line
//
//	<!-- readme-check -->
//
// holds "$ command" lines, each followed by the output it prints (stdout
// and stderr). The blocks run in order, each in one sh (so an export holds
// for the rest of its block), with liveroom on $PATH and $LIVEROOM_URL
// pointing at a dev-mode serve the test starts; each command's output must
// have the shape of the lines shown. "readme-check: background" marks a
// command that keeps running (tail): it is started before the other blocks,
// and each line shown must match one line it printed by the end.
// "readme-check: serve-log" lines must each match a line of serve's log.
//
// The shape of a line keeps its words and punctuation and forgets what
// changes from run to run: numbers, times, durations, and ids (random or
// derived from the time).

// readmeBlock is one checked block.
type readmeBlock struct {
	kind  string // "", "background" or "serve-log"
	line  int    // of the marker, for messages
	steps []readmeStep
	lines []string // serve-log: the lines shown
}

type readmeStep struct {
	cmd  string
	want []string
}

var readmeMarker = regexp.MustCompile(`^<!-- readme-check(?:: ([a-z-]+))? -->$`)

func parseREADME(t *testing.T, path string) []readmeBlock {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var blocks []readmeBlock
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	n := 0
	next := func() (string, bool) {
		if !sc.Scan() {
			return "", false
		}
		n++
		return sc.Text(), true
	}
	for {
		line, ok := next()
		if !ok {
			break
		}
		m := readmeMarker.FindStringSubmatch(strings.TrimSpace(line))
		if m == nil {
			continue
		}
		b := readmeBlock{kind: m[1], line: n}
		fence, ok := next()
		indent := len(fence) - len(strings.TrimLeft(fence, " "))
		if !ok || !strings.HasPrefix(strings.TrimSpace(fence), "```") {
			t.Fatalf("README.md:%d: a readme-check marker must be followed by a fenced block", b.line)
		}
		for {
			line, ok := next()
			if !ok {
				t.Fatalf("README.md:%d: block never closed", b.line)
			}
			if strings.TrimSpace(line) == "```" {
				break
			}
			line = line[min(indent, len(line)-len(strings.TrimLeft(line, " "))):]
			switch {
			case b.kind == "serve-log":
				b.lines = append(b.lines, line)
			case strings.HasPrefix(line, "$ "):
				b.steps = append(b.steps, readmeStep{cmd: strings.TrimPrefix(line, "$ ")})
			case len(b.steps) == 0:
				t.Fatalf("README.md:%d: output before any $ command: %q", n, line)
			default:
				s := &b.steps[len(b.steps)-1]
				s.want = append(s.want, line)
			}
		}
		blocks = append(blocks, b)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return blocks
}

// shapeRules turn a line into its shape, in order.
var shapeRules = []struct {
	re   *regexp.Regexp
	with string
}{
	{regexp.MustCompile(`\b\d{1,2}:\d{2}:\d{2}(\.\d+)?\b`), "TIME"},
	{regexp.MustCompile(`\b(\d+(\.\d+)?(ns|µs|ms|s|m|h))+\b`), "DUR"},
	{regexp.MustCompile(`\b(cli|gw|guest)-[0-9a-f]{4,}\b`), "$1-HEX"},
	{regexp.MustCompile(`[A-Za-z0-9_-]{12,}`), "ID"},
	{regexp.MustCompile(`\d+`), "N"},
	{regexp.MustCompile(`\s+`), " "},
}

func shape(line string) string {
	line = strings.TrimSpace(line)
	for _, r := range shapeRules {
		line = r.re.ReplaceAllString(line, r.with)
	}
	return line
}

func TestShape(t *testing.T) {
	for _, tc := range [][2]string{
		{"202 id=8RcllCvzgDg1hjmOZCqmrR", "202 id=V07N6rYiz2R6y9rW54wPuc"},
		{"202 id=giragilgbt5ppqojdemtfedwj seq=1 key=ca6ba84d59a3520ab153cb22c02730f2", "202 id=gqyito6ylwqyxmqtqgae4gi7i seq=14 key=2396a7074104f95d99f1779db1423558"},
		{"# joined room demo via gw-a3986ed9 as cli-90638802: seq=0 online=1", "# joined room demo via gw-95877c12 as cli-e95e31e0: seq=3 online=12"},
		{"07:44:40.679 gift    cli-788cd80f: rocket ×1  [seq 1]", "06:14:12.211 gift cli-b0f01769: rocket ×1 [seq 4]"},
		{"200 session=20261204-064350-h3kq room=demo stopped duration=1.4s messages=2", "200 session=20261205-101010-abcd room=demo stopped duration=600ms messages=12"},
	} {
		if a, b := shape(tc[0]), shape(tc[1]); a != b {
			t.Errorf("shapes differ:\n%q → %q\n%q → %q", tc[0], a, tc[1], b)
		}
	}
	for _, tc := range [][2]string{
		{"202 id=8RcllCvzgDg1hjmOZCqmrR", "400 id=8RcllCvzgDg1hjmOZCqmrR seq=1"},
		{"07:44:40.495 danmaku cli-9d4bffac: hi", "07:44:40.495 danmaku cli-9d4bffac: hello"},
	} {
		if shape(tc[0]) == shape(tc[1]) {
			t.Errorf("%q and %q have the same shape", tc[0], tc[1])
		}
	}
}

// TestREADMECommands runs the README's checked examples against the real
// binary and a dev-mode serve.
func TestREADMECommands(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	blocks := parseREADME(t, filepath.Join("..", "..", "README.md"))
	if len(blocks) < 5 {
		t.Fatalf("only %d checked blocks in README.md", len(blocks))
	}
	for _, kv := range os.Environ() {
		if name, _, _ := strings.Cut(kv, "="); strings.HasPrefix(name, "LIVEROOM_") {
			unsetEnv(t, name)
		}
	}
	bin := testutil.Binary(t)
	port := testutil.FreePort(t)
	url := "http://" + testutil.Addr(port)
	serve := testutil.StartProc(t, "serve", nil, "serve", "--addr", testutil.Addr(port), "--nats-port", "-1", "--data-dir", t.TempDir())
	testutil.WaitHTTP(t, url+"/healthz", 60*time.Second)
	env := append(os.Environ(), "PATH="+filepath.Dir(bin)+string(os.PathListSeparator)+os.Getenv("PATH"), "LIVEROOM_URL="+url)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	type bg struct {
		b   readmeBlock
		out *testutil.SyncBuffer
	}
	var bgs []bg
	for _, b := range blocks {
		if b.kind != "background" {
			continue
		}
		if len(b.steps) != 1 {
			t.Fatalf("README.md:%d: a background block holds one command", b.line)
		}
		var out testutil.SyncBuffer
		cmd := exec.CommandContext(ctx, "sh", "-c", "exec "+b.steps[0].cmd+" 2>&1")
		cmd.Env, cmd.Stdout = env, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		first := b.steps[0].want[0]
		testutil.Eventually(t, 20*time.Second, "README.md:"+strconv.Itoa(b.line)+": "+b.steps[0].cmd+" prints "+first, func() bool {
			return len(matchLines([]string{first}, out.String())) == 0
		})
		bgs = append(bgs, bg{b, &out})
	}

	for _, b := range blocks {
		if b.kind != "" {
			continue
		}
		var script strings.Builder
		script.WriteString("exec 2>&1\n")
		for i, s := range b.steps {
			fmt.Fprintf(&script, "echo '@@step %d@@'\n%s\n", i, s.cmd)
		}
		cmd := exec.CommandContext(ctx, "sh", "-c", script.String())
		cmd.Env = env
		out, _ := cmd.Output() // commands that fail are shown failing
		got := splitSteps(string(out), len(b.steps))
		for i, s := range b.steps {
			if !sameShape(s.want, got[i]) {
				t.Errorf("README.md:%d: $ %s\nshows:\n%s\nprinted:\n%s", b.line, s.cmd, strings.Join(s.want, "\n"), strings.Join(got[i], "\n"))
			}
		}
	}

	for _, g := range bgs {
		want := g.b.steps[0].want
		var missing []string
		for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			if missing = matchLines(want, g.out.String()); len(missing) == 0 {
				break
			}
		}
		if len(missing) > 0 {
			t.Errorf("README.md:%d: $ %s\nnever printed lines shaped like:\n%s\nit printed:\n%s", g.b.line, g.b.steps[0].cmd, strings.Join(missing, "\n"), g.out.String())
		}
	}

	timePrefix := regexp.MustCompile(`^time=\S+ `)
	var log []string
	for _, l := range strings.Split(serve.Log(), "\n") {
		log = append(log, timePrefix.ReplaceAllString(l, ""))
	}
	for _, b := range blocks {
		if b.kind != "serve-log" {
			continue
		}
		if missing := matchLines(b.lines, strings.Join(log, "\n")); len(missing) > 0 {
			t.Errorf("README.md:%d: serve never logged lines shaped like:\n%s", b.line, strings.Join(missing, "\n"))
		}
	}
}

// splitSteps cuts a block's output at its step markers.
func splitSteps(out string, n int) [][]string {
	got := make([][]string, n)
	step := -1
	for _, l := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
		var i int
		if _, err := fmt.Sscanf(l, "@@step %d@@", &i); err == nil && i < n {
			step = i
			continue
		}
		if step >= 0 {
			got[step] = append(got[step], l)
		}
	}
	return got
}

// sameShape reports whether got has want's lines, shape for shape.
func sameShape(want, got []string) bool {
	if len(want) != len(got) {
		return false
	}
	for i := range want {
		if shape(want[i]) != shape(got[i]) {
			return false
		}
	}
	return true
}

// matchLines returns the lines of want that no distinct line of out
// matches in shape.
func matchLines(want []string, out string) []string {
	left := map[string]int{}
	for _, l := range strings.Split(out, "\n") {
		left[shape(l)]++
	}
	var missing []string
	for _, w := range want {
		if s := shape(w); left[s] > 0 {
			left[s]--
		} else {
			missing = append(missing, w)
		}
	}
	return missing
}

// TestREADMEListsEveryCommand: the README's command table names every
// command of the binary, and no other.
func TestREADMEListsEveryCommand(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	sec := string(b)
	start := strings.Index(sec, "\n## Commands\n")
	if start < 0 {
		t.Fatal("README.md has no Commands section")
	}
	sec = sec[start+1:]
	if end := strings.Index(sec[3:], "\n## "); end >= 0 {
		sec = sec[:end+3]
	}
	listed := map[string]bool{}
	for _, m := range regexp.MustCompile("(?m)^\\| `([a-z]+)` \\|").FindAllStringSubmatch(sec, -1) {
		listed[m[1]] = true
	}
	for _, c := range commands {
		if !listed[c.name] {
			t.Errorf("README.md's Commands table does not list %s", c.name)
		}
		delete(listed, c.name)
	}
	for name := range listed {
		t.Errorf("README.md's Commands table lists %s, which is no command", name)
	}
}
