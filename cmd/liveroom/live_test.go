package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/liveroom/liveroom/internal/app"
	"github.com/liveroom/liveroom/internal/protocol"
	"github.com/liveroom/liveroom/internal/testutil"
)

// TestRunLive drives liveroom live against a real node: an anchor starts
// and stops a session and the list shows it with its replay page; a viewer,
// another anchor and a caller without a token cannot start or stop it.
func TestRunLive(t *testing.T) {
	t.Setenv(envToken, "")
	unsetEnv(t, envSecret)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	n, err := app.New(app.Config{Addr: "127.0.0.1:0", DataDir: t.TempDir(), NATSPort: -1, JWTSecret: testutil.Secret, Logger: testutil.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Close() })
	live := func(args ...string) (string, error) {
		var out, errOut bytes.Buffer
		err := runLive(ctx, append([]string{"--url", n.URL(), "--room", "r1", "--secret", testutil.Secret}, args...), &out, &errOut)
		return out.String(), err
	}
	refused := func(what, status, code string, args ...string) {
		t.Helper()
		out, err := live(args...)
		var rep reportedError
		if !errors.As(err, &rep) || !strings.HasPrefix(out, status+` {"error":{"code":"`+code+`"`) {
			t.Errorf("%s: err %v, stdout %q; want %s %s", what, err, out, status, code)
		}
	}

	if out, err := live("list"); err != nil || out != "room r1 has no sessions yet (liveroom live start --room r1 starts one)\n" {
		t.Fatalf("list before: %q %v", out, err)
	}
	refused("a viewer starting", "403", protocol.CodeForbidden, "start", "--user", "fan", "--role", "viewer")
	out, err := live("start", "--user", "dj")
	m := regexp.MustCompile(`^201 session=(\S+) room=r1 live\nreplay: (\S+)\n$`).FindStringSubmatch(out)
	if err != nil || m == nil || m[2] != n.URL()+"/replay/r1/"+m[1] {
		t.Fatalf("start: %q %v", out, err)
	}
	id := m[1]
	if out, err := live("start", "--user", "dj"); err != nil || !strings.HasPrefix(out, "200 session="+id+" room=r1 live (it was already)") {
		t.Errorf("second start: %q %v", out, err)
	}
	refused("another anchor stopping", "403", protocol.CodeForbidden, "stop", "--user", "rival")
	refused("a viewer stopping", "403", protocol.CodeForbidden, "stop", "--user", "dj", "--role", "viewer")
	for _, path := range []string{"start", "stop"} {
		if st := testutil.APICall(t, http.MethodPost, n.URL()+"/v1/rooms/r1/live/"+path, "", "", nil); st != http.StatusUnauthorized {
			t.Errorf("live/%s without a token: %d, want 401", path, st)
		}
	}
	out, err = live("stop", "--user", "dj")
	if err != nil || !regexp.MustCompile(`^200 session=`+id+` room=r1 stopped duration=\S+ messages=\d+\nreplay: `+regexp.QuoteMeta(n.URL()+"/replay/r1/"+id)+"\n$").MatchString(out) {
		t.Fatalf("stop: %q %v", out, err)
	}
	refused("stopping twice", "409", protocol.CodeNotLive, "stop", "--user", "dj")

	out, err = live("list")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if err != nil || len(lines) != 2 || !strings.HasPrefix(lines[0], "SESSION ") || !strings.HasPrefix(lines[1], id+" ") ||
		!strings.HasSuffix(lines[1], n.URL()+"/replay/r1/"+id) {
		t.Fatalf("list: %q %v", out, err)
	}
	out, err = live("list", "--json")
	var ans struct {
		Sessions []struct {
			ID   string `json:"id"`
			Live bool   `json:"live"`
		} `json:"sessions"`
	}
	if err != nil || json.Unmarshal([]byte(out), &ans) != nil || len(ans.Sessions) != 1 || ans.Sessions[0].ID != id || ans.Sessions[0].Live {
		t.Errorf("list --json: %q %v", out, err)
	}
	if _, err := live("pause"); err == nil || !strings.Contains(err.Error(), `unknown action "pause"`) {
		t.Errorf("unknown action: %v", err)
	}
}
