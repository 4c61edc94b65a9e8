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
	if _, err := send("absent"); !errors.Is(err, bus.ErrGone) || !errors.Is(err, nats.ErrNoResponders) || errors.Is(err, bus.ErrRefused) {
		t.Fatalf("no gateway: %v", err)
	}

	// A gateway that hangs for a moment is asked again, and a request that
	// never gets an answer is "no answer yet", not "gone".
	var calls int
	sub, err := nc.Subscribe(bus.ControlSubject("slow"), func(m *nats.Msg) {
		calls++
		if calls == 1 {
			return // the first request is lost in a hung process
		}
		_ = m.Respond([]byte(`{"gateway":"slow","state":"draining"}`))
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	hung, err := nc.Subscribe(bus.ControlSubject("hung"), func(*nats.Msg) {})
	if err != nil {
		t.Fatal(err)
	}
	defer hung.Unsubscribe()
	_ = nc.Flush()
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Second)
	defer cancel()
	if r, err := bus.SendControl(ctx, nc, "slow", bus.CmdDrain); err != nil || r.State != "draining" || calls != 2 {
		t.Fatalf("retried request: %+v %v after %d calls", r, err, calls)
	}
	ctx2, cancel2 := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel2()
	_, err = bus.SendControl(ctx2, nc, "hung", bus.CmdStatus)
	if err == nil || errors.Is(err, bus.ErrGone) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("hung gateway: %v, want no answer yet (deadline), not gone", err)
	}
}
