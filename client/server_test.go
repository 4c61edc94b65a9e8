package client

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/liveroom/liveroom/internal/protocol"
)

func answer(status int, v any) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, _ *http.Request) { protocol.WriteJSON(w, status, v) }
}

// TestServerGiftRetriesWithTheSameOrder: a lost answer and a 503 are retried
// with the same body (so the same order id), with the API key as bearer; a
// 4xx is not retried.
func TestServerGiftRetriesWithTheSameOrder(t *testing.T) {
	u := newFakeUplink(t, hangup, failing(503, protocol.CodeUnavailable, "", 10),
		answer(202, ServerResult{Status: 202, Room: "r1", ID: "pabc", Seq: 9, Duplicate: true}))
	s := &Server{BaseURL: u.srv.URL, APIKey: "lrk_test", MaxBackoff: 50 * time.Millisecond}
	g := PaidGift{Room: "r1", User: "u1", Gift: "rocket", Count: 3, OrderID: "o-7", Amount: 250, Currency: "USD"}
	res, err := s.SendGift(context.Background(), g)
	if err != nil || res.ID != "pabc" || res.Seq != 9 || !res.Duplicate || !res.OK() {
		t.Fatalf("%+v %v", res, err)
	}
	reqs := u.Requests()
	if len(reqs) != 3 {
		t.Fatalf("%d requests, want 3", len(reqs))
	}
	for _, r := range reqs {
		if r.path != "/v1/server/rooms/r1/gifts" || r.auth != "Bearer lrk_test" || r.body["order_id"] != "o-7" ||
			r.body["count"] != 3.0 || r.body["amount"] != 250.0 || r.body["currency"] != "USD" || r.body["user"] != "u1" {
			t.Fatalf("request %+v", r)
		}
	}
	u = newFakeUplink(t, failing(400, protocol.CodeUnknownGift, "gift", 0))
	s.BaseURL = u.srv.URL
	_, err = s.SendGift(context.Background(), g)
	var ae *APIError
	if !errors.As(err, &ae) || ae.Body.Code != protocol.CodeUnknownGift || len(u.Requests()) != 1 {
		t.Fatalf("4xx: %v after %d requests", err, len(u.Requests()))
	}
}

// TestServerRefusesBeforeSending: a zero count, a missing order id and a
// batch of 0 or 101 messages never leave the client.
func TestServerRefusesBeforeSending(t *testing.T) {
	u := newFakeUplink(t, answer(202, ServerResult{Status: 202}))
	s := &Server{BaseURL: u.srv.URL, APIKey: "lrk_test"}
	ctx := context.Background()
	if _, err := s.SendGift(ctx, PaidGift{Room: "r", User: "u", Gift: "rose", OrderID: "o"}); !errors.Is(err, ErrInvalidCount) {
		t.Fatalf("count 0: %v", err)
	}
	if _, err := s.SendGift(ctx, PaidGift{Room: "r", User: "u", Gift: "rose", Count: 1}); !errors.Is(err, ErrInvalidOrder) {
		t.Fatalf("no order: %v", err)
	}
	if _, err := s.Batch(ctx, nil); err == nil {
		t.Fatal("empty batch")
	}
	if _, err := s.Batch(ctx, make([]BatchMessage, MaxBatch+1)); err == nil {
		t.Fatal("101 messages")
	}
	if n := len(u.Requests()); n != 0 {
		t.Fatalf("%d requests sent", n)
	}
}

// TestServerBatchAndNotices: a batch's 207 is a success whose results say
// which messages failed; a batch holding a notice, and a notice alone, are
// never retried (a notice could show twice).
func TestServerBatchAndNotices(t *testing.T) {
	results := serverResults207()
	u := newFakeUplink(t, answer(207, results))
	s := &Server{BaseURL: u.srv.URL, APIKey: "lrk_test"}
	ctx := context.Background()
	res, err := s.Batch(ctx, []BatchMessage{
		GiftMessage(PaidGift{Room: "r", User: "u", Gift: "rose", Count: 1, OrderID: "o"}),
		AnnounceMessage("r", "hello", "", ""),
	})
	if err != nil || len(res) != 2 || !res[0].OK() || res[1].OK() || res[1].Error.Code != protocol.CodeInvalidRoom {
		t.Fatalf("%+v %v", res, err)
	}
	if b := u.Requests()[0].body; b["messages"].([]any)[1].(map[string]any)["op"] != "announce" {
		t.Fatalf("body %v", b)
	}
	u = newFakeUplink(t, failing(503, protocol.CodeUnavailable, "", 10))
	s.BaseURL = u.srv.URL
	if _, err := s.Notify(ctx, Notice{Room: "r", User: "u", Text: "hi"}); err == nil {
		t.Fatal("503 notice succeeded")
	}
	if _, err := s.Batch(ctx, []BatchMessage{NoticeMessage(Notice{Room: "r", User: "u", Text: "hi"})}); err == nil {
		t.Fatal("503 batch succeeded")
	}
	if n := len(u.Requests()); n != 2 {
		t.Fatalf("%d requests, want 2 (no retries)", n)
	}
	if p := u.Requests()[0].path; p != "/v1/server/rooms/r/users/u/notices" {
		t.Fatalf("notice path %s", p)
	}
}

// serverResults207 is a batch answer with one success and one failure.
func serverResults207() map[string]any {
	return map[string]any{"results": []ServerResult{
		{Status: 202, Room: "r", ID: "p1", Seq: 1},
		{Status: 400, Error: &ErrorBody{Code: protocol.CodeInvalidRoom, Message: "bad"}},
	}}
}
