package bus_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/liveroom/liveroom/internal/bus"
	"github.com/liveroom/liveroom/internal/testutil"
)

func TestSendControl(t *testing.T) {
	_, nc, _ := testutil.StartBackbone(t)
	answer := func(id string, reply []byte) {
		sub, err := nc.Subscribe(bus.ControlSubject(id), func(m *nats.Msg) {
			var c bus.Control
			if json.Unmarshal(m.Data, &c) != nil || c.Cmd != bus.CmdDrain {
				reply = []byte(`{"error":"unexpected command"}`)
			}
			_ = m.Respond(reply)
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = sub.Unsubscribe() })
	}
	answer("ok", []byte(`{"gateway":"ok","state":"draining","conns":7}`))
	answer("no", []byte(`{"gateway":"no","error":"already stopping"}`))
	answer("junk", []byte(`not json`))
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	send := func(id string) (bus.ControlReply, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		return bus.SendControl(ctx, nc, id, bus.CmdDrain)
	}
	if r, err := send("ok"); err != nil || r.Gateway != "ok" || r.State != "draining" || r.Conns != 7 {
		t.Fatalf("ok: %+v %v", r, err)
	}
	if r, err := send("no"); !errors.Is(err, bus.ErrRefused) || r.Error != "already stopping" {
		t.Fatalf("refusal: %+v %v", r, err)
	}
	if _, err := send("junk"); !errors.Is(err, bus.ErrRefused) {
		t.Fatalf("unreadable reply: %v", err)
	}
	if _, err := send("absent"); !errors.Is(err, nats.ErrNoResponders) || errors.Is(err, bus.ErrRefused) {
		t.Fatalf("no gateway: %v", err)
	}
}
