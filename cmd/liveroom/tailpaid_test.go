package main

import (
	"testing"
	"time"

	"github.com/liveroom/liveroom/client"
	"github.com/liveroom/liveroom/internal/protocol"
)

// TestTailShowsPaidGifts: a gift from the server API shows its order and
// amount; a user's gift shows neither.
func TestTailShowsPaidGifts(t *testing.T) {
	ts := time.Date(2026, 1, 2, 20, 15, 30, 250e6, time.Local).UnixMilli()
	paid := client.Message{Type: protocol.TypeGift, Name: "Ann", Gift: "rocket", Count: 1, Seq: 7, TS: ts,
		OrderID: "ord-1", Amount: 1999, Currency: "USD"}
	if got, want := formatMessage(paid), "20:15:30.250 gift    Ann: rocket ×1  (order ord-1, amount 1999 USD)  [seq 7]"; got != want {
		t.Errorf("paid gift:\n%s\nwant\n%s", got, want)
	}
	paid.OrderID, paid.Amount, paid.Currency = "", 0, ""
	if got, want := formatMessage(paid), "20:15:30.250 gift    Ann: rocket ×1  [seq 7]"; got != want {
		t.Errorf("user gift: %s", got)
	}
}
