package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/liveroom/liveroom/client"
	"github.com/liveroom/liveroom/internal/protocol"
)

const sendUsage = `usage: liveroom send --room R [--url URL] [--token T | --secret S --user U] KIND ARGS
  KIND ARGS is one of:
    danmaku TEXT...
    gift NAME [--count N] [--key IDEMPOTENCY-KEY]
    like [--count N]
Flags may also follow KIND. Prints "STATUS id=… [seq=…]", or the server's
refusal as "STATUS {JSON error}"; exits non-zero on error. A count is 1 to
999. Gifts are retried with the same key on 5xx and network errors; nothing
else is retried.`

// runSend implements `liveroom send`: it posts one danmaku, gift or like.
func runSend(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("send", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var tf toolFlags
	tf.register(fs, protocol.RoleViewer)
	count := fs.Int("count", 1, "gift count or number of likes, 1 to "+strconv.Itoa(client.MaxCount))
	key := fs.String("key", "", "gift idempotency key (default: random; reuse one to retry a gift safely)")
	retries := fs.Int("retries", client.DefaultGiftRetries, "gift retries after the first attempt (0: none)")
	setUsage(fs, sendUsage)
	pos, stop, err := parseInterspersed(fs, args)
	if stop {
		return err
	}
	if tf.room == "" {
		return errors.New("send: --room is required")
	}
	if len(pos) == 0 {
		fs.Usage()
		return errors.New("send: a kind is required: danmaku, gift or like")
	}
	kind, rest := pos[0], pos[1:]
	switch kind {
	case protocol.TypeDanmaku:
		if len(rest) == 0 || strings.TrimSpace(strings.Join(rest, " ")) == "" {
			return errors.New("send: danmaku needs a text")
		}
	case protocol.TypeGift:
		if len(rest) != 1 {
			return errors.New("send: gift needs exactly one gift name, e.g. `gift rocket --count 2`")
		}
	case protocol.TypeLike:
		if len(rest) != 0 {
			return fmt.Errorf("send: like takes no argument, got %q (use --count N)", rest[0])
		}
	default:
		return fmt.Errorf("send: unknown kind %q: use danmaku, gift or like", kind)
	}
	if kind != protocol.TypeDanmaku && (*count < 1 || *count > client.MaxCount) {
		// Never send a zero as "the default": the server reads a missing
		// count as one, and a gift is paid.
		return fmt.Errorf("send: --count %d: a %s count is 1 to %d", *count, kind, client.MaxCount)
	}

	base := tf.base()
	tok, err := tf.resolve(ctx, base)
	if err != nil {
		return fmt.Errorf("send: %w", err)
	}
	s := &client.Sender{BaseURL: base, Token: tok, Retries: *retries}
	if *retries <= 0 {
		s.Retries = -1
	}
	var res client.SendResult
	switch kind {
	case protocol.TypeDanmaku:
		res, err = s.Danmaku(ctx, tf.room, strings.Join(rest, " "))
	case protocol.TypeGift:
		res, err = s.Gift(ctx, tf.room, rest[0], *count, *key)
	case protocol.TypeLike:
		res, err = s.Like(ctx, tf.room, *count)
	}
	if err != nil {
		var ae *client.APIError
		isAPI := errors.As(err, &ae)
		// After a refusal the gift was not stored; otherwise its fate is
		// unknown and only the same key can retry it without a duplicate.
		if res.Key != "" && (!isAPI || ae.Temporary()) {
			fmt.Fprintf(stderr, "gift idempotency key: %s (reuse it with --key to retry safely)\n", res.Key)
		}
		if !isAPI {
			return fmt.Errorf("send %s: %w", kind, reachErr(base, err))
		}
		// The refusal is the command's output, once: "STATUS {JSON}".
		b, _ := json.Marshal(struct {
			Error client.ErrorBody `json:"error"`
		}{ae.Body})
		fmt.Fprintf(stdout, "%d %s\n", ae.Status, b)
		return reportedError{fmt.Errorf("send %s: %d %s: %s", kind, ae.Status, ae.Body.Code, ae.Body.Message)}
	}
	line := fmt.Sprintf("%d id=%s", res.Status, res.ID)
	if kind == protocol.TypeGift {
		line += fmt.Sprintf(" seq=%d key=%s", res.Seq, res.Key)
	}
	if res.Attempts > 1 {
		line += fmt.Sprintf(" attempts=%d", res.Attempts)
	}
	_, err = fmt.Fprintln(stdout, line)
	return err
}

// parseInterspersed parses args into fs allowing flags after positional
// arguments (`gift rocket --count 3`), and returns the positional ones. "--"
// ends flag parsing. stop and err are as for parseFlags.
func parseInterspersed(fs *flag.FlagSet, args []string) (pos []string, stop bool, err error) {
	for {
		if stop, err := parseFlags(fs, args); stop {
			return nil, true, err
		}
		rest := fs.Args()
		// flag stops at "--" and drops it; keep everything after as text.
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			return append(pos, rest...), false, nil
		}
		if len(rest) == 0 {
			return pos, false, nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}
