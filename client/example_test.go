package client_test

import (
	"context"
	"errors"
	"fmt"
	"log"

	"github.com/liveroom/liveroom/client"
)

func ExampleConnect() {
	ctx := context.Background()
	c, err := client.Connect(ctx, client.Config{
		BaseURL: "http://127.0.0.1:8080",
		Room:    "demo",
		Token:   "<viewer JWT>",
	})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	for ev := range c.Events() {
		switch ev.Kind {
		case client.EventMessage:
			fmt.Println(ev.Msg.Type, ev.Msg.User, ev.Msg.Text)
		case client.EventReconnecting:
			fmt.Println("reconnecting:", ev.Err)
		case client.EventClosed:
			fmt.Println("closed:", ev.Err)
		}
	}
}

func ExampleSender_Gift() {
	s := &client.Sender{BaseURL: "http://127.0.0.1:8080", Token: "<sender JWT>"}
	// Keep the key: sending again with it can never show the gift twice.
	key := client.NewIdempotencyKey()
	res, err := s.Gift(context.Background(), "demo", "rocket", 1, key)
	var ae *client.APIError
	switch {
	case errors.As(err, &ae):
		fmt.Println("refused:", ae.Status, ae.Body.Code, ae.Body.Message)
	case err != nil:
		fmt.Println("unknown outcome, retry later with key", key, err)
	default:
		fmt.Println("stored as", res.ID, "seq", res.Seq)
	}
}

func ExampleServer_SendGift() {
	// On the platform's backend, once the payment of order ord-2026-000123
	// went through.
	backend := &client.Server{BaseURL: "http://127.0.0.1:8080", APIKey: "<API key, lrk_…>"}
	res, err := backend.SendGift(context.Background(), client.PaidGift{
		Room: "demo", User: "fan42", Name: "Ann", Gift: "rocket", Count: 1,
		OrderID: "ord-2026-000123", Amount: 1999, Currency: "USD",
	})
	var ae *client.APIError
	switch {
	case errors.As(err, &ae):
		fmt.Println("refused (refund the order?):", ae.Status, ae.Body.Code, ae.Body.Message)
	case err != nil:
		fmt.Println("unknown outcome: retry later with the same order id", err)
	default:
		fmt.Println("shown as", res.ID, "seq", res.Seq, "duplicate", res.Duplicate)
	}
}
