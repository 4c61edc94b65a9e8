package bus_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/liveroom/liveroom/internal/bus"
	"github.com/liveroom/liveroom/internal/protocol"
	"github.com/liveroom/liveroom/internal/testutil"
)

// TestDirectReads: batches after a sequence, the last message of many
// subjects (more than one request's worth), only those newer than a
// position, and the republished copy's sequence headers, all read by a
// gateway credential, which may create no consumer.
func TestDirectReads(t *testing.T) {
	e, _, js := testutil.StartBackbone(t)
	gnc, err := nats.Connect(testutil.NATSURL(t, e, bus.RoleGateway, ""))
	if err != nil {
		t.Fatal(err)
	}
	defer gnc.Close()
	d, err := bus.NewDirect(gnc)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	rep, err := gnc.SubscribeSync(bus.ReliableSubject("a"))
	if err != nil {
		t.Fatal(err)
	}
	_ = gnc.Flush()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	store := func(room string, i int) uint64 {
		t.Helper()
		ack, err := js.Publish(ctx, bus.StoreSubject(protocol.Room(room)), []byte(room+"-"+strconv.Itoa(i)), jetstream.WithMsgID(room+strconv.Itoa(i)))
		if err != nil {
			t.Fatal(err)
		}
		return ack.Sequence
	}
	var seqA []uint64
	for i := range 10 {
		seqA = append(seqA, store("a", i))
		store("b", i)
	}
	// The republished copies carry their sequence and the room's previous one.
	var prevSeen uint64
	for i := range 10 {
		m, err := rep.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		seq, prev, ok := bus.SeqHeaders(m.Header)
		if !ok || seq != seqA[i] || prev != prevSeen || string(m.Data) != "a-"+strconv.Itoa(i) {
			t.Fatalf("republished %d: seq %d prev %d %q, want %d, %d", i, seq, prev, m.Data, seqA[i], prevSeen)
		}
		prevSeen = seq
	}
	msgs, more, err := d.After(ctx, bus.ReliableStream, bus.StoreSubject("a"), seqA[2], 4)
	if err != nil || !more || len(msgs) != 4 || msgs[0].Seq != seqA[2] || msgs[3].Seq != seqA[5] {
		t.Fatalf("After: %d msgs, more %v, %v", len(msgs), more, err)
	}
	msgs, more, err = d.After(ctx, bus.ReliableStream, bus.StoreSubject("a"), seqA[7], 10)
	if err != nil || more || len(msgs) != 3 {
		t.Fatalf("After to the end: %d msgs, more %v, %v", len(msgs), more, err)
	}
	if msgs, more, err := d.After(ctx, bus.ReliableStream, bus.StoreSubject("nobody"), 1, 10); err != nil || more || len(msgs) != 0 {
		t.Fatalf("After on an empty subject: %d, %v, %v", len(msgs), more, err)
	}
	// 300 subjects: two requests.
	var subjects []string
	for i := range 300 {
		subjects = append(subjects, bus.StoreSubject(protocol.Room("r"+strconv.Itoa(i))))
	}
	subjects = append(subjects, bus.StoreSubject("a"), bus.StoreSubject("b"))
	last, err := d.LastOf(ctx, bus.ReliableStream, subjects)
	if err != nil || len(last) != 2 || last[bus.StoreSubject("a")].Seq != seqA[9] {
		t.Fatalf("LastOf: %v, %v", last, err)
	}
	// Only what moved after a position.
	newer := store("b", 99)
	got, upTo, err := d.LastSince(ctx, bus.ReliableStream, subjects, seqA[9]+1, newer)
	if err != nil || len(got) != 1 || got[bus.StoreSubject("b")].Seq != newer || upTo < newer {
		t.Fatalf("LastSince: %v up to %d, %v", got, upTo, err)
	}
	if m, found, err := d.Last(ctx, bus.ReliableStream, bus.StoreWildcard); err != nil || !found || m.Seq != newer {
		t.Fatalf("Last of the stream: %+v %v %v", m, found, err)
	}
	info, err := js.Stream(ctx, bus.ReliableStream)
	if err != nil || info.CachedInfo().State.Consumers != 0 {
		t.Fatalf("consumers after direct reads: %v", err)
	}
}

// TestDirectTail: the last messages of a subject up to a sequence, read
// from the live buffer stream with a gateway credential: a busy subject
// (interleaved with another) in a few requests, a quiet one in one. A role
// that reads no stream (dispatch) is refused.
func TestDirectTail(t *testing.T) {
	e, _, js := testutil.StartBackbone(t)
	gnc, _ := connectAs(t, e, bus.RoleGateway, "gw-1")
	d, err := bus.NewDirect(gnc)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	store := func(room string, i int) uint64 {
		t.Helper()
		ack, err := js.Publish(ctx, bus.LiveSubject(protocol.Room(room)), []byte(room+"-"+strconv.Itoa(i)))
		if err != nil {
			t.Fatal(err)
		}
		return ack.Sequence
	}
	busy := map[int]uint64{}
	var last uint64
	for i := range 600 {
		busy[i] = store("busy", i)
		last = store("other", i)
		if i%200 == 0 {
			last = store("quiet", i)
		}
	}
	check := func(name string, msgs []bus.StoredMsg, reqs int, lastI, minN, maxN int) {
		t.Helper()
		t.Logf("%s: %d messages in %d requests", name, len(msgs), reqs)
		if len(msgs) < minN || len(msgs) > maxN || reqs > 6 {
			t.Fatalf("%s: %d messages (want %d to %d) in %d requests", name, len(msgs), minN, maxN, reqs)
		}
		first := lastI - len(msgs) + 1
		for k, m := range msgs {
			if want := "busy-" + strconv.Itoa(first+k); string(m.Data) != want {
				t.Fatalf("%s: message %d is %q, want %q (the tail, in order, without a gap)", name, k, m.Data, want)
			}
		}
	}
	msgs, reqs, err := d.Tail(ctx, bus.LiveStream, bus.LiveSubject("busy"), last, 20, 80, 1<<16)
	if err != nil {
		t.Fatal(err)
	}
	check("busy", msgs, reqs, 599, 20, 80)
	// Up to a snapshot a little behind the end: what came after is left
	// out (and counts against the batch).
	msgs, reqs, err = d.Tail(ctx, bus.LiveStream, bus.LiveSubject("busy"), busy[590], 20, 80, 1<<16)
	if err != nil {
		t.Fatal(err)
	}
	check("busy up to 590", msgs, reqs, 590, 20, 80)
	// A quiet subject: Tail looks further back until it has them all...
	msgs, reqs, err = d.Tail(ctx, bus.LiveStream, bus.LiveSubject("quiet"), last, 20, 80, 1<<16)
	if err != nil || len(msgs) != 3 || reqs > 2 || string(msgs[2].Data) != "quiet-400" {
		t.Fatalf("quiet: %d messages in %d requests, %v", len(msgs), reqs, err)
	}
	// ...but not past maxSpan sequences: quiet-400 lies about 400 back.
	msgs, _, err = d.Tail(ctx, bus.LiveStream, bus.LiveSubject("quiet"), last, 20, 80, 500)
	if err != nil || len(msgs) != 1 || string(msgs[0].Data) != "quiet-400" {
		t.Fatalf("quiet within 500: %d messages, %v", len(msgs), err)
	}
	if msgs, _, err := d.Tail(ctx, bus.LiveStream, bus.LiveSubject("nobody"), last, 20, 80, 1<<16); err != nil || len(msgs) != 0 {
		t.Fatalf("nobody: %d messages, %v", len(msgs), err)
	}

	nc, v := connectAs(t, e, bus.RoleDispatch, "")
	subj := "$JS.API.DIRECT.GET." + bus.LiveStream
	if err := nc.Publish(subj, []byte(`{"last_by_subj":"lr.room.busy.live"}`)); err != nil {
		t.Fatal(err)
	}
	_ = nc.Flush()
	testutil.Eventually(t, 5*time.Second, "dispatch refused a direct get on the live stream", func() bool { return v.has(subj) })
}

// BenchmarkDirectTail: reading the last 20 messages of one of 1,000
// equally busy subjects (a quiet room in a stream of 64,000 messages) and
// of the one subject of a stream (a busy room), in-process: the server's
// scan plus the client's requests.
func BenchmarkDirectTail(b *testing.B) {
	e, _, js := testutil.StartBackbone(b)
	gnc, err := nats.Connect(testutil.NATSURL(b, e, bus.RoleGateway, ""))
	if err != nil {
		b.Fatal(err)
	}
	defer gnc.Close()
	d, err := bus.NewDirect(gnc)
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	ctx := context.Background()
	var last uint64
	for i := range 64000 {
		ack, err := js.Publish(ctx, bus.LiveSubject(protocol.Room("r"+strconv.Itoa(i%1000))), []byte(`{"id":"x","type":"danmaku","text":"a comment of a usual length, say sixty bytes"}`))
		if err != nil {
			b.Fatal(err)
		}
		last = ack.Sequence
	}
	for _, span := range []uint64{1 << 13, 1 << 16} {
		b.Run("quiet/span="+strconv.FormatUint(span, 10), func(b *testing.B) {
			reqs, got := 0, 0
			for i := range b.N {
				msgs, n, err := d.Tail(ctx, bus.LiveStream, bus.LiveSubject(protocol.Room("r"+strconv.Itoa(i%1000))), last, 20, 80, span)
				if err != nil {
					b.Fatal(err)
				}
				reqs += n
				got += len(msgs)
			}
			b.ReportMetric(float64(reqs)/float64(b.N), "requests/op")
			b.ReportMetric(float64(got)/float64(b.N), "msgs/op")
		})
	}
}
