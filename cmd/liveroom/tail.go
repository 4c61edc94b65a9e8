package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/liveroom/liveroom/client"
	"github.com/liveroom/liveroom/internal/protocol"
)

const tailUsage = `usage: liveroom tail --room R [--url URL] [--token T | --secret S --user U] [--json] [--since SEQ]

Prints a room's messages as a viewer receives them, reconnecting as needed.
With a token from a dev-mode server's dev token endpoint, it gets a new one
when the server restarts (with a new secret) and resumes where it stopped.`

// runTail implements `liveroom tail`: it joins a room through dispatch, like
// a viewer, and prints its traffic until ctx is cancelled or the server
// refuses the viewer for good.
func runTail(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("tail", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var tf toolFlags
	tf.register(fs, protocol.RoleViewer)
	asJSON := fs.Bool("json", false, "print one JSON object per line instead of readable lines")
	since := fs.Uint64("since", 0, "resume after this reliable sequence, replaying what came after it (0: start live)")
	verbose := fs.Bool("v", false, "log connection details to stderr")
	setUsage(fs, tailUsage)
	if stop, err := parseFlags(fs, args); stop {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("tail: unexpected argument %q", fs.Arg(0))
	}
	if tf.room == "" {
		return errors.New("tail: --room is required")
	}
	base := tf.base()
	tok, err := tf.resolve(ctx, base)
	if err != nil {
		return fmt.Errorf("tail: %w", err)
	}
	logger := slog.New(slog.DiscardHandler)
	if *verbose {
		logger = slog.New(slog.NewTextHandler(stderr, nil))
	}
	p := tailPrinter{w: stdout, json: *asJSON}
	cfg := client.Config{BaseURL: base, Room: tf.room, Token: tok, Since: *since, Logger: logger}
	for {
		c, err := client.Connect(ctx, cfg)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("tail: %w", reachErr(base, err))
		}
		err = p.follow(ctx, c)
		// A dev-mode server that restarted signs with a new secret, so it
		// refuses the old dev token: get a new one and resume where this
		// connection stopped, as the room page does.
		if !tf.dev || !rejectedToken(err) {
			return err
		}
		if err := p.note(fmt.Sprintf("the server refused the dev token (a dev-mode server restarted?): getting a new one, resuming after seq %d", c.LastSeq())); err != nil {
			return err
		}
		if cfg.Token, err = tf.renew(ctx, base); err != nil {
			return fmt.Errorf("tail: cannot renew the dev token: %w", err)
		}
		cfg.Since = c.LastSeq()
	}
}

// follow prints c's events until ctx ends (nil), c is closed for good (the
// error, wrapped) or printing fails. It closes c.
func (p tailPrinter) follow(ctx context.Context, c *client.Conn) error {
	defer c.Close()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-c.Events():
			if !ok {
				return nil
			}
			if ev.Kind == client.EventClosed {
				if errors.Is(ev.Err, client.ErrClosed) {
					return nil
				}
				return fmt.Errorf("tail: disconnected: %w", ev.Err)
			}
			if err := p.print(ev); err != nil {
				return fmt.Errorf("tail: cannot write: %w", err)
			}
		}
	}
}

// rejectedToken reports whether err is a refusal of the token itself (401),
// from dispatch, a gateway's upgrade or a gateway's error frame.
func rejectedToken(err error) bool {
	var ae *client.APIError
	var fe *client.FrameError
	switch {
	case errors.As(err, &ae):
		return ae.Status == http.StatusUnauthorized
	case errors.As(err, &fe):
		return fe.Body.Code == protocol.CodeUnauthorized
	}
	return false
}

// tailPrinter renders events for people or, with json, for programs.
type tailPrinter struct {
	w    io.Writer
	json bool
}

// note prints a line of tail's own: "# text", or a JSON object of type
// "note" with --json.
func (p tailPrinter) note(text string) error {
	if p.json {
		b, err := json.Marshal(struct {
			Type string `json:"type"`
			Text string `json:"text"`
		}{"note", text})
		if err != nil {
			return err
		}
		_, err = p.w.Write(append(b, '\n'))
		return err
	}
	_, err := fmt.Fprintln(p.w, "# "+text)
	return err
}

func (p tailPrinter) print(ev client.Event) error {
	if p.json {
		return p.printJSON(ev)
	}
	var line string
	switch ev.Kind {
	case client.EventMessage:
		line = formatMessage(ev.Msg)
	case client.EventHistory:
		// What the room said before this viewer came, marked so that no
		// one reads it as live.
		for _, m := range ev.History {
			if _, err := fmt.Fprintln(p.w, formatMessage(m)+"  [history]"); err != nil {
				return err
			}
		}
		return nil
	case client.EventWelcome, client.EventReconnected:
		w := ev.Welcome
		verb := "joined"
		if ev.Kind == client.EventReconnected {
			verb = "reconnected"
		}
		line = fmt.Sprintf("# %s room %s via %s as %s: seq=%d online=%d likes=%d replayed=%d",
			verb, cleanText(w.Room), cleanText(ev.Gateway), cleanText(w.User), w.Seq, w.Online, w.Likes, w.Replayed)
		if w.History > 0 {
			line += fmt.Sprintf(" history=%d", w.History)
		}
	case client.EventReconnecting:
		line = fmt.Sprintf("# reconnecting in %v (attempt %d): %v", ev.Delay.Round(time.Millisecond), ev.Attempt, ev.Err)
	case client.EventWaiting:
		// Not an error: the fleet is growing and dispatch asked to wait.
		line = fmt.Sprintf("# joining… every gateway is full and more are starting; asking again in %v (%d)", ev.Delay.Round(time.Millisecond), ev.Attempt)
	default:
		return nil
	}
	_, err := fmt.Fprintln(p.w, line)
	return err
}

func (p tailPrinter) printJSON(ev client.Event) error {
	var v any
	switch ev.Kind {
	case client.EventMessage:
		v = ev.Msg
	case client.EventWelcome, client.EventReconnected:
		v = ev.Welcome
	case client.EventHistory:
		v = struct {
			Type string           `json:"type"`
			Msgs []client.Message `json:"msgs"`
		}{protocol.FrameHistory, ev.History}
	case client.EventReconnecting:
		v = struct {
			Type    string `json:"type"`
			Attempt int    `json:"attempt"`
			DelayMS int64  `json:"delay_ms"`
			Error   string `json:"error,omitempty"`
		}{"reconnecting", ev.Attempt, ev.Delay.Milliseconds(), errString(ev.Err)}
	case client.EventWaiting:
		v = struct {
			Type    string `json:"type"`
			Attempt int    `json:"attempt"`
			DelayMS int64  `json:"delay_ms"`
		}{"waiting", ev.Attempt, ev.Delay.Milliseconds()}
	default:
		return nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = p.w.Write(append(b, '\n'))
	return err
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// formatMessage renders m as one line: time, type, sender and content.
func formatMessage(m client.Message) string {
	ts := time.Now()
	if m.TS > 0 {
		ts = time.UnixMilli(m.TS)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s %-7s ", ts.Format("15:04:05.000"), cleanText(m.Type))
	who := m.Name
	if who == "" {
		who = m.User
	}
	switch m.Type {
	case protocol.TypeDanmaku:
		fmt.Fprintf(&b, "%s: %s", cleanText(who), cleanText(m.Text))
	case protocol.TypeGift:
		fmt.Fprintf(&b, "%s: %s ×%d", cleanText(who), cleanText(m.Gift), m.Count)
		if m.OrderID != "" {
			// A paid gift from the platform's backend (server API).
			fmt.Fprintf(&b, "  (order %s", cleanText(m.OrderID))
			if m.Currency != "" {
				// Minor units: the currency says how many make one.
				fmt.Fprintf(&b, ", amount %d %s", m.Amount, cleanText(m.Currency))
			}
			b.WriteString(")")
		}
	case protocol.TypeLike:
		fmt.Fprintf(&b, "+%d, total %d", m.Count, m.Total)
	case protocol.TypeCount:
		fmt.Fprintf(&b, "online %d", m.Online)
	case protocol.TypeNotice:
		if who != "" {
			fmt.Fprintf(&b, "%s: ", cleanText(who))
		}
		b.WriteString(cleanText(m.Text))
	default:
		raw, _ := json.Marshal(m)
		b.Write(raw)
	}
	if m.Seq > 0 {
		fmt.Fprintf(&b, "  [seq %d]", m.Seq)
	}
	return b.String()
}

// cleanText replaces control characters and bidi overrides, which could rewrite
// the terminal or forge extra lines, in text that other users wrote.
func cleanText(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) ||
			(r >= 0x202a && r <= 0x202e) || (r >= 0x2066 && r <= 0x2069) {
			return '�'
		}
		return r
	}, s)
}
