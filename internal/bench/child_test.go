package bench

import (
	"context"
	"io"
	"testing"
	"time"
)

type nopWriteCloser struct{ io.Writer }

func (nopWriteCloser) Close() error { return nil }

// TestRemoteCallSkipsLateReplies: a call that gave up on its context leaves
// its reply behind; the next call must not take it for its own, even for
// the same op.
func TestRemoteCallSkipsLateReplies(t *testing.T) {
	r := &remoteAgent{in: nopWriteCloser{io.Discard}, replies: make(chan childMsg, 4), done: make(chan struct{})}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if _, err := r.call(ctx, childCmd{Op: "report"}); err == nil {
		t.Fatal("a call without a reply returned no error")
	}
	r.replies <- childMsg{Kind: "reply", Op: "report", Seq: 1, Error: "stale"}
	r.replies <- childMsg{Kind: "reply", Op: "report", Seq: 2}
	m, err := r.call(context.Background(), childCmd{Op: "report"})
	if err != nil || m.Seq != 2 {
		t.Fatalf("got %+v, %v; want the reply with seq 2", m, err)
	}
}
