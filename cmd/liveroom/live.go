package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/liveroom/liveroom/client"
	"github.com/liveroom/liveroom/internal/protocol"
)

const liveUsage = `usage: liveroom live start|stop|list --room R [--url URL] [--token T | --secret S --user U] [--json]

Starts and stops a room's live session, and lists the room's sessions with
their replay pages. The session API is POST /v1/rooms/R/live/start,
POST /v1/rooms/R/live/stop and GET /v1/rooms/R/sessions (docs/PROTOCOL.md).

  start   start the room's live session (201; 200 when one already runs);
          what is said in the room from now on is archived for replay
  stop    stop it (409 not_live when none runs); prints its replay page
  list    the room's sessions, newest first, with their replay pages

Only the room's anchor or an admin may start and stop: the first anchor to
start an anchorless room becomes its anchor. Listing needs no token. Against
a dev-mode serve the token comes from its dev token endpoint, for the user
cli-anchor (role anchor) unless --user and --role say otherwise.

examples:
  liveroom live start --room demo
  liveroom live list --room demo
  liveroom live stop --room demo

flags:`

// liveDefaultUser is the user of live's minted and dev tokens when --user is
// not given: one fixed anchor, so that a stop is allowed after a start.
const liveDefaultUser = "cli-anchor"

// runLive implements `liveroom live start|stop|list`.
func runLive(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("live", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var tf toolFlags
	tf.register(fs, protocol.RoleAnchor)
	asJSON := fs.Bool("json", false, "print the server's JSON answer")
	fs.Lookup("user").Usage = "user id for a minted or dev token (default " + liveDefaultUser + ")"
	setUsage(fs, liveUsage)
	pos, stop, err := parseInterspersed(fs, args)
	if stop {
		return err
	}
	if len(pos) != 1 {
		return errors.New("live: want one of start, stop or list (liveroom live -h)")
	}
	action := pos[0]
	if action != "start" && action != "stop" && action != "list" {
		return fmt.Errorf("live: unknown action %q: want start, stop or list", action)
	}
	r, err := protocol.ParseRoom(tf.room)
	if err != nil {
		return fmt.Errorf("live: --room: %w", err)
	}
	base := tf.base()
	lc := liveClient{base: base, room: string(r), stdout: stdout, json: *asJSON}
	if action == "list" {
		return lc.list(ctx)
	}
	if tf.user == "" {
		tf.user = liveDefaultUser
	}
	if tf.role == protocol.RoleAnchor {
		// A minted or dev anchor token owns the room it starts.
		tf.rooms = []protocol.Room{r}
	}
	tok, err := tf.resolve(ctx, base)
	if err != nil {
		return fmt.Errorf("live %s: %w", action, err)
	}
	return lc.startStop(ctx, action, tok)
}

// liveClient calls the session API of one room.
type liveClient struct {
	base, room string
	stdout     io.Writer
	json       bool
}

// session is a session as the API answers it.
type session struct {
	ID         string `json:"id"`
	Room       string `json:"room"`
	StartedMS  int64  `json:"started_ms"`
	StoppedMS  int64  `json:"stopped_ms"`
	Live       bool   `json:"live"`
	DurationMS int64  `json:"duration_ms"`
	Messages   int64  `json:"messages"`
}

func (lc liveClient) replayURL(id string) string {
	return lc.base + "/replay/" + url.PathEscape(lc.room) + "/" + url.PathEscape(id)
}

func (lc liveClient) startStop(ctx context.Context, action, token string) error {
	var s session
	raw, status, err := lc.call(ctx, http.MethodPost, "live/"+action, token, &s)
	if err != nil {
		return fmt.Errorf("live %s: %w", action, err)
	}
	if lc.json {
		_, err := fmt.Fprintf(lc.stdout, "%s\n", raw)
		return err
	}
	state := "live"
	switch {
	case !s.Live:
		state = "stopped duration=" + fmtDuration(s.DurationMS)
		if s.Messages >= 0 {
			state += fmt.Sprintf(" messages=%d", s.Messages)
		}
	case action == "start" && status == http.StatusOK:
		state = "live (it was already)"
	}
	_, err = fmt.Fprintf(lc.stdout, "%d session=%s room=%s %s\nreplay: %s\n", status, s.ID, lc.room, state, lc.replayURL(s.ID))
	return err
}

func (lc liveClient) list(ctx context.Context) error {
	var ans struct {
		Sessions []session `json:"sessions"`
	}
	raw, _, err := lc.call(ctx, http.MethodGet, "sessions", "", &ans)
	if err != nil {
		return fmt.Errorf("live list: %w", err)
	}
	if lc.json {
		_, err := fmt.Fprintf(lc.stdout, "%s\n", raw)
		return err
	}
	if len(ans.Sessions) == 0 {
		_, err := fmt.Fprintf(lc.stdout, "room %s has no sessions yet (liveroom live start --room %s starts one)\n", lc.room, lc.room)
		return err
	}
	tw := tabwriter.NewWriter(lc.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SESSION\tSTARTED\tDURATION\tMESSAGES\tREPLAY")
	for _, s := range ans.Sessions {
		msgs := "-"
		if s.Messages >= 0 {
			msgs = fmt.Sprint(s.Messages)
		}
		dur := fmtDuration(s.DurationMS)
		if s.Live {
			dur += " (live)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", cleanText(s.ID), time.UnixMilli(s.StartedMS).Format("2006-01-02 15:04:05"), dur, msgs, lc.replayURL(s.ID))
	}
	return tw.Flush()
}

// call sends one request to /v1/rooms/{room}/{path} and decodes a 2xx JSON
// answer into out. A refusal is printed as "STATUS {JSON error}", the way
// send prints one, and returned as a reportedError.
func (lc liveClient) call(ctx context.Context, method, path, token string, out any) ([]byte, int, error) {
	u := lc.base + "/v1/rooms/" + url.PathEscape(lc.room) + "/" + path
	req, err := http.NewRequestWithContext(ctx, method, u, nil)
	if err != nil {
		return nil, 0, err
	}
	req.Header.Set("Accept", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	hc := &http.Client{Timeout: 15 * time.Second}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, 0, reachErr(lc.base, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return nil, resp.StatusCode, fmt.Errorf("cannot read the answer: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error client.ErrorBody `json:"error"`
		}
		if json.Unmarshal(raw, &e) != nil || e.Error.Code == "" {
			return nil, resp.StatusCode, fmt.Errorf("%s answered %s: %.200s", u, resp.Status, strings.TrimSpace(string(raw)))
		}
		b, _ := json.Marshal(e)
		fmt.Fprintf(lc.stdout, "%d %s\n", resp.StatusCode, b)
		return nil, resp.StatusCode, reportedError{fmt.Errorf("%d %s: %s", resp.StatusCode, e.Error.Code, e.Error.Message)}
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return nil, resp.StatusCode, fmt.Errorf("cannot decode the answer of %s: %w", u, err)
	}
	return raw, resp.StatusCode, nil
}

// fmtDuration renders milliseconds as 1h02m03s, 2m03s or 3.2s.
func fmtDuration(ms int64) string {
	d := time.Duration(ms) * time.Millisecond
	if d < time.Minute {
		return d.Round(100 * time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}
