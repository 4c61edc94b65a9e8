package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
)

// Control commands.
const (
	CmdDrain  = "drain"
	CmdStatus = "status"
)

// ErrRefused is wrapped by SendControl when the gateway answered with an
// error or with something that is not a ControlReply.
var ErrRefused = errors.New("gateway refused the command")

// ErrGone is wrapped by SendControl when no gateway of that id is
// subscribed: the NATS connection is up and nobody answers the subject
// ("no responders"), so the gateway has exited (or never ran).
var ErrGone = errors.New("gateway is gone")

// controlAttempt bounds one control request: a gateway answers within
// milliseconds unless it or its NATS node hangs, and the next attempt may
// reach it through another node.
const controlAttempt = 2 * time.Second

// SendControl sends cmd to gateway id (which must have passed
// ValidGatewayID) on its control subject and returns its reply; ctx bounds
// the wait. A gateway that is not running shows as nats.ErrNoResponders in
// the error chain; an answer with an error as ErrRefused, with the reply
// (and its Error) returned too.
//
// A request that gets no answer (a hung gateway or NATS node, a connection
// failing over to another node of the cluster) is tried again, each try at
// most 2 s, until ctx ends; the error then wraps context.DeadlineExceeded
// ("no answer yet"), never ErrGone. A drain or status is safe to repeat.
func SendControl(ctx context.Context, nc *nats.Conn, id, cmd string) (ControlReply, error) {
	req, err := json.Marshal(Control{Cmd: cmd})
	if err != nil {
		return ControlReply{}, fmt.Errorf("cannot encode %s command: %w", cmd, err)
	}
	var m *nats.Msg
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, controlAttempt)
		m, err = nc.RequestWithContext(actx, ControlSubject(id), req)
		cancel()
		if err == nil {
			break
		}
		if errors.Is(err, nats.ErrNoResponders) && nc.IsConnected() {
			return ControlReply{}, fmt.Errorf("cannot send %s to gateway %s: %w (%w)", cmd, id, ErrGone, err)
		}
		if ctx.Err() != nil {
			return ControlReply{}, fmt.Errorf("cannot send %s to gateway %s: no answer after %d attempts: %w (%w)", cmd, id, attempt, ctx.Err(), err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
	var r ControlReply
	if err := json.Unmarshal(m.Data, &r); err != nil {
		return r, fmt.Errorf("%w: gateway %s answered %s with an unreadable reply: %w", ErrRefused, id, cmd, err)
	}
	if r.Error != "" {
		return r, fmt.Errorf("%w: gateway %s: %s", ErrRefused, id, r.Error)
	}
	return r, nil
}
