package web_test

import (
	"bytes"
	"encoding/json"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"

	"github.com/liveroom/liveroom/internal/gateway"
)

// nodeWithWebSocket finds node and the flag that gives it a global
// WebSocket (Node 22 has one; Node 20 needs --experimental-websocket), or
// skips the test saying what is missing.
func nodeWithWebSocket(t *testing.T) []string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not on PATH: cannot run the SDK in Node (install Node.js ≥ 20 to run this test)")
	}
	for _, args := range [][]string{{node}, {node, "--experimental-websocket"}} {
		probe := exec.Command(args[0], append(args[1:], "-e", "process.exit(typeof WebSocket === 'function' ? 0 : 1)")...)
		if probe.Run() == nil {
			return args
		}
	}
	t.Skip("this node has no WebSocket, even with --experimental-websocket (Node ≥ 20.10 needed)")
	return nil
}

// TestSDKInNode runs the SDK in Node against a real dev-mode server, as a
// backend or a test harness of a web app would: a dev token, dispatch, a
// gateway, a gift sent with the SDK's helper and received once, a dropped
// connection resumed with since= and a gift sent meanwhile received once.
func TestSDKInNode(t *testing.T) {
	node := nodeWithWebSocket(t)
	n := startNode(t, "", gateway.Config{})
	mod, err := filepath.Abs("../../sdk/js/liveroom.js")
	if err != nil {
		t.Fatal(err)
	}
	script := `import { connect, request } from ` + jsString((&url.URL{Scheme: "file", Path: mod}).String()) + `;
const base = process.env.LIVEROOM_URL;
const fail = (why) => { console.error(why); process.exit(1); };
setTimeout(() => fail('timed out: ' + JSON.stringify(out)), 30000);
const out = { states: [], gifts: [], dials: [] };
const until = (cond) => new Promise((res) => { const t = setInterval(() => { if (cond()) { clearInterval(t); res(); } }, 20); });
const { token } = await request(base + '/v1/dev/token', { method: 'POST', body: { user: 'nodey', name: 'Nodey', role: 'viewer' } });
const room = connect({ room: 'node-room', token, baseURL: base });
room.on('state', (s) => out.states.push(s.state));
room.on('gift', (m) => out.gifts.push(m.id));
room.on('welcome', (w) => out.dials.push(w.resumed));
await until(() => room.state === 'live');
const first = await room.sendGift('rose');
await until(() => out.gifts.includes(first.id));
room.drop(300);
const second = await room.sendGift('castle'); // sent while the connection is down
await until(() => room.state === 'live' && out.gifts.includes(second.id));
out.sent = [first.id, second.id];
out.lastSeq = room.lastSeq;
out.secondSeq = second.seq;
room.close();
console.log(JSON.stringify(out));
process.exit(0);
`
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "sdk-node.mjs"), []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(node[0], append(node[1:], "--no-warnings", "sdk-node.mjs")...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "LIVEROOM_URL="+n.URL())
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.Output()
	if err != nil {
		t.Fatalf("node: %v\n%s%s", err, stdout, stderr.String())
	}
	var got struct {
		States    []string `json:"states"`
		Gifts     []string `json:"gifts"`
		Dials     []bool   `json:"dials"`
		Sent      []string `json:"sent"`
		LastSeq   uint64   `json:"lastSeq"`
		SecondSeq uint64   `json:"secondSeq"`
	}
	if err := json.Unmarshal(bytes.TrimSpace(stdout), &got); err != nil {
		t.Fatalf("node printed %q: %v", stdout, err)
	}
	if !slices.Equal(got.Gifts, got.Sent) {
		t.Errorf("gifts received %v, want each sent gift once: %v", got.Gifts, got.Sent)
	}
	if !slices.Equal(got.Dials, []bool{false, true}) || got.LastSeq != got.SecondSeq || got.LastSeq == 0 {
		t.Errorf("welcomes (resumed) %v, lastSeq %d (second gift's seq %d)", got.Dials, got.LastSeq, got.SecondSeq)
	}
	if !slices.Contains(got.States, "reconnecting") || got.States[len(got.States)-1] != "offline" {
		t.Errorf("states %v", got.States)
	}
}
