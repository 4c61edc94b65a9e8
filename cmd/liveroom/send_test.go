package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/liveroom/liveroom/internal/app"
	"github.com/liveroom/liveroom/internal/auth"
	"github.com/liveroom/liveroom/internal/protocol"
	"github.com/liveroom/liveroom/internal/testutil"
)

// sendFakeUplink is a small stand-in for the uplink: it verifies tokens with
// testutil.Secret, records accepted bodies and answers like the contract.
// It also serves the dev token endpoint, as a server in dev mode does.
type sendFakeUplink struct {
	srv      *httptest.Server
	mu       sync.Mutex
	bodies   []map[string]any
	keys     []string
	users    []string
	failNext int // answer this many requests with 503 first
}

func newFakeUplink(t *testing.T) *sendFakeUplink {
	t.Helper()
	v := testutil.Verifier(t)
	signer, err := auth.NewSigner([]byte(testutil.Secret))
	if err != nil {
		t.Fatal(err)
	}
	u := &sendFakeUplink{}
	mux := http.NewServeMux()
	mux.Handle("POST /v1/dev/token", app.DevTokenHandler(signer, false))
	mux.HandleFunc("POST /v1/rooms/{room}/messages", func(w http.ResponseWriter, r *http.Request) {
		id, err := v.FromRequest(r)
		if err != nil {
			protocol.WriteError(w, err)
			return
		}
		var body map[string]any
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			protocol.WriteError(w, protocol.Errorf(400, protocol.CodeInvalidJSON, "", "bad json"))
			return
		}
		u.mu.Lock()
		defer u.mu.Unlock()
		u.keys = append(u.keys, r.Header.Get("Idempotency-Key"))
		if u.failNext > 0 {
			u.failNext--
			protocol.WriteError(w, protocol.Errorf(503, protocol.CodeUnavailable, "", "try again").WithRetry(5))
			return
		}
		if body["type"] == "danmaku" && body["text"] == "" {
			protocol.WriteError(w, protocol.Errorf(400, protocol.CodeInvalidField, "text", "text is required"))
			return
		}
		u.bodies = append(u.bodies, body)
		u.users = append(u.users, string(id.User))
		ans := map[string]any{"id": "m" + string(rune('0'+len(u.bodies)))}
		if body["type"] == "gift" {
			ans["seq"] = 40 + len(u.bodies)
		}
		protocol.WriteJSON(w, http.StatusAccepted, ans)
	})
	u.srv = httptest.NewServer(mux)
	t.Cleanup(u.srv.Close)
	return u
}

func TestRunSend(t *testing.T) {
	unsetEnv(t, envSecret)
	t.Setenv(envToken, "")
	t.Setenv(envURL, "")
	up := newFakeUplink(t)
	tok := testutil.Token(t, "carol", "viewer")
	tests := []struct {
		name     string
		args     []string
		wantOut  string
		wantBody map[string]any
		wantUser string
	}{
		{
			name:     "danmaku with token, words joined",
			args:     []string{"--url", up.srv.URL, "--room", "r1", "--token", tok, "danmaku", "hello", "world"},
			wantOut:  "202 id=m1\n",
			wantBody: map[string]any{"type": "danmaku", "text": "hello world"},
			wantUser: "carol",
		},
		{
			name:     "gift with flags after the kind, minted token",
			args:     []string{"--url", up.srv.URL, "--room", "r1", "--secret", testutil.Secret, "--user", "dave", "gift", "rocket", "--count", "3", "--key", "k-1"},
			wantOut:  "202 id=m2 seq=42 key=k-1\n",
			wantBody: map[string]any{"type": "gift", "gift": "rocket", "count": 3.0},
			wantUser: "dave",
		},
		{
			name:     "like through the dev token endpoint",
			args:     []string{"--url", up.srv.URL, "--room", "r1", "--user", "erin", "like", "--count", "7"},
			wantOut:  "202 id=m3\n",
			wantBody: map[string]any{"type": "like", "count": 7.0},
			wantUser: "erin",
		},
		{
			name:     "text after -- may start with a dash",
			args:     []string{"--url", up.srv.URL, "--room", "r1", "--token", tok, "danmaku", "--", "-1", "lol"},
			wantOut:  "202 id=m4\n",
			wantBody: map[string]any{"type": "danmaku", "text": "-1 lol"},
			wantUser: "carol",
		},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			if err := runSend(context.Background(), tt.args, &out, &errOut); err != nil {
				t.Fatalf("%v (stderr %q)", err, errOut.String())
			}
			if out.String() != tt.wantOut {
				t.Errorf("stdout %q, want %q", out.String(), tt.wantOut)
			}
			up.mu.Lock()
			defer up.mu.Unlock()
			if len(up.bodies) != i+1 {
				t.Fatalf("%d accepted bodies", len(up.bodies))
			}
			got, _ := json.Marshal(up.bodies[i])
			want, _ := json.Marshal(tt.wantBody)
			if string(got) != string(want) || up.users[i] != tt.wantUser {
				t.Errorf("body %s from %s, want %s from %s", got, up.users[i], want, tt.wantUser)
			}
		})
	}
}

func TestRunSendGiftRetries(t *testing.T) {
	up := newFakeUplink(t)
	up.failNext = 2
	tok := testutil.Token(t, "carol", "viewer")
	var out, errOut bytes.Buffer
	err := runSend(context.Background(), []string{"--url", up.srv.URL, "--room", "r1", "--token", tok, "gift", "rocket"}, &out, &errOut)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out.String(), "202 id=m1 seq=41 key=") || !strings.HasSuffix(out.String(), " attempts=3\n") {
		t.Errorf("stdout %q", out.String())
	}
	up.mu.Lock()
	defer up.mu.Unlock()
	if len(up.keys) != 3 || up.keys[0] == "" || up.keys[0] != up.keys[1] || up.keys[1] != up.keys[2] {
		t.Errorf("keys %q", up.keys)
	}
}

func TestRunSendErrors(t *testing.T) {
	unsetEnv(t, envSecret)
	t.Setenv(envToken, "")
	up := newFakeUplink(t)
	tok := testutil.Token(t, "carol", "viewer")
	tests := []struct {
		name    string
		args    []string
		wantErr string
		wantOut string
	}{
		{name: "blank danmaku", args: []string{"--room", "r1", "--token", tok, "danmaku", " "}, wantErr: "needs a text"},
		{name: "bad token", args: []string{"--room", "r1", "--token", "nope", "danmaku", "hi"}, wantErr: "401", wantOut: `401 {"error":{"code":"unauthorized"`},
		{name: "no room", args: []string{"--token", tok, "like"}, wantErr: "--room"},
		{name: "no kind", args: []string{"--room", "r1", "--token", tok}, wantErr: "kind is required"},
		{name: "unknown kind", args: []string{"--room", "r1", "--token", tok, "hug"}, wantErr: "unknown kind"},
		{name: "gift without name", args: []string{"--room", "r1", "--token", tok, "gift"}, wantErr: "gift name"},
		{name: "like with argument", args: []string{"--room", "r1", "--token", tok, "like", "5"}, wantErr: "--count"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			args := append([]string{"--url", up.srv.URL}, tt.args...)
			err := runSend(context.Background(), args, &out, &errOut)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want it to mention %q", err, tt.wantErr)
			}
			if !strings.HasPrefix(out.String(), tt.wantOut) {
				t.Errorf("stdout %q, want prefix %q", out.String(), tt.wantOut)
			}
		})
	}
}

// TestRunSendCounts: a count outside 1-999 is refused before anything is
// sent; a zero never becomes the server's default of one.
func TestRunSendCounts(t *testing.T) {
	up := newFakeUplink(t)
	tok := testutil.Token(t, "carol", "viewer")
	for _, args := range [][]string{
		{"gift", "rose", "--count", "0"},
		{"gift", "rose", "--count", "-2"},
		{"like", "--count", "0"},
		{"like", "--count", "1000"},
	} {
		var out, errOut bytes.Buffer
		err := runSend(context.Background(), append([]string{"--url", up.srv.URL, "--room", "r1", "--token", tok}, args...), &out, &errOut)
		if err == nil || !strings.Contains(err.Error(), "count is 1 to 999") {
			t.Errorf("%v: err = %v", args, err)
		}
	}
	up.mu.Lock()
	defer up.mu.Unlock()
	if len(up.keys) != 0 {
		t.Errorf("%d requests sent for bad counts", len(up.keys))
	}
}

// TestRunSendRefusalPrintedOnce: a refusal is the command's output (STATUS
// and the JSON error), and main does not print it again.
func TestRunSendRefusalPrintedOnce(t *testing.T) {
	up := newFakeUplink(t)
	var out, errOut bytes.Buffer
	err := runSend(context.Background(), []string{"--url", up.srv.URL, "--room", "r1", "--token", "bad", "danmaku", "hi"}, &out, &errOut)
	var rep reportedError
	if !errors.As(err, &rep) {
		t.Fatalf("err = %v, want a reportedError", err)
	}
	// One prefix: main adds "liveroom: " (when it prints at all).
	if !strings.HasPrefix(err.Error(), "send danmaku: 401 unauthorized: ") || strings.Contains(err.Error(), "liveroom:") {
		t.Errorf("err = %q", err)
	}
	if !strings.HasPrefix(out.String(), `401 {"error":{"code":"unauthorized"`) || strings.Count(out.String(), "\n") != 1 || errOut.Len() != 0 {
		t.Errorf("stdout %q stderr %q", out.String(), errOut.String())
	}
}

func TestParseInterspersed(t *testing.T) {
	tests := []struct {
		name      string
		args      []string
		wantPos   []string
		wantCount int
	}{
		{name: "flags first", args: []string{"--count", "2", "gift", "rocket"}, wantPos: []string{"gift", "rocket"}, wantCount: 2},
		{name: "flags last", args: []string{"gift", "rocket", "--count", "3"}, wantPos: []string{"gift", "rocket"}, wantCount: 3},
		{name: "flags between", args: []string{"gift", "--count=4", "rocket"}, wantPos: []string{"gift", "rocket"}, wantCount: 4},
		{name: "double dash", args: []string{"danmaku", "--", "--count", "5"}, wantPos: []string{"danmaku", "--count", "5"}, wantCount: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := newTestFlagSet()
			count := fs.Int("count", 1, "")
			pos, stop, err := parseInterspersed(fs, tt.args)
			if stop || err != nil {
				t.Fatalf("stop %v err %v", stop, err)
			}
			if strings.Join(pos, "|") != strings.Join(tt.wantPos, "|") || *count != tt.wantCount {
				t.Errorf("pos %q count %d", pos, *count)
			}
		})
	}
}
