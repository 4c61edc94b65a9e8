package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

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

// SendControl sends cmd to gateway id (which must have passed
// ValidGatewayID) on its control subject and returns its reply; ctx bounds
// the wait. A gateway that is not running shows as nats.ErrNoResponders in
// the error chain; an answer with an error as ErrRefused, with the reply
// (and its Error) returned too.
func SendControl(ctx context.Context, nc *nats.Conn, id, cmd string) (ControlReply, error) {
	req, err := json.Marshal(Control{Cmd: cmd})
	if err != nil {
		return ControlReply{}, fmt.Errorf("cannot encode %s command: %w", cmd, err)
	}
	m, err := nc.RequestWithContext(ctx, ControlSubject(id), req)
	if err != nil {
		return ControlReply{}, fmt.Errorf("cannot send %s to gateway %s: %w", cmd, id, err)
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
