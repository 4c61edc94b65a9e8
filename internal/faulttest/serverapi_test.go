package faulttest

import (
	"context"
	"testing"
	"time"

	"github.com/liveroom/liveroom/client"
	"github.com/liveroom/liveroom/internal/apikey"
	"github.com/liveroom/liveroom/internal/protocol"
	"github.com/liveroom/liveroom/internal/testutil"
)

// TestServerAPIAcrossProcesses runs the server API on uplink processes with
// their own NATS credentials: online counts add up viewers on two gateway
// processes, a paid gift sent through one uplink and retried through the
// other is one gift with one seq on both gateways, and a notice to one user
// reaches that user on the gateway that holds them.
func TestServerAPIAcrossProcesses(t *testing.T) {
	if raceEnabled {
		t.Skip("multi-process test: runs without -race")
	}
	key := apikey.Generate()
	t.Setenv("LIVEROOM_API_KEYS", "backend:"+key) // read by every uplink process
	c := startCluster(t, 1, 2, 2)
	const room = "fleet"
	join := func(gw, room, user string) *client.GatewayConn {
		g, err := dial(t, gw, room, testutil.Token(t, user, protocol.RoleViewer))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = g.Close() })
		return g
	}
	a := join(c.gwURLs[0], room, "a")
	join(c.gwURLs[0], room, "b")
	join(c.gwURLs[0], room, "c")
	d := join(c.gwURLs[1], room, "d")
	join(c.gwURLs[1], room, "e")
	join(c.gwURLs[1], "side", "f")

	ctx := context.Background()
	up0 := &client.Server{BaseURL: c.uplinks[0], APIKey: key}
	up1 := &client.Server{BaseURL: c.uplinks[1], APIKey: key}
	testutil.Eventually(t, 20*time.Second, "fleet-wide counts on both uplinks", func() bool {
		for _, up := range []*client.Server{up0, up1} {
			st, err := up.Room(ctx, room)
			lr, err2 := up.LiveRooms(ctx, 0)
			if err != nil || err2 != nil || st.Online != 5 || lr.Total != 2 || lr.Rooms[0].Room != room || lr.Rooms[1].Online != 1 {
				return false
			}
		}
		return true
	})

	g := client.PaidGift{Room: room, User: "a", Gift: "castle", Count: 1, OrderID: "mp-order-1", Amount: 4999, Currency: "EUR"}
	r0, err := up0.SendGift(ctx, g)
	if err != nil {
		t.Fatal(err)
	}
	r1, err := up1.SendGift(ctx, g)
	if err != nil || !r1.Duplicate || r1.ID != r0.ID || r1.Seq != r0.Seq {
		t.Fatalf("the same order through the other uplink: %+v %v, want a duplicate of %+v", r1, err, r0)
	}
	if _, err := up1.Notify(ctx, client.Notice{Room: room, User: "d", Text: "thanks from the shop"}); err != nil {
		t.Fatal(err)
	}
	// d gets the gift and its notice in either order (the notice is not
	// sequenced with room traffic); a gets the gift.
	for _, w := range []struct {
		gc     *client.GatewayConn
		notice bool
	}{{a, false}, {d, true}} {
		gift, notice := false, !w.notice
		if _, err := readUntil(w.gc, 10*time.Second, func(f client.Frame) bool {
			for _, m := range batchMsgs(f) {
				gift = gift || (m.ID == r0.ID && m.Seq == r0.Seq && m.OrderID == "mp-order-1" && m.Amount == 4999)
				notice = notice || (m.Type == protocol.TypeNotice && m.Action == "notice" && m.Text == "thanks from the shop")
			}
			return gift && notice
		}); err != nil {
			t.Fatalf("gift %v, notice %v: %v", gift, notice, err)
		}
	}
}

func batchMsgs(f client.Frame) []protocol.Message {
	if f.Batch == nil {
		return nil
	}
	return f.Batch.Msgs
}
