package uplink

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/liveroom/liveroom/internal/auth"
	"github.com/liveroom/liveroom/internal/bus"
	"github.com/liveroom/liveroom/internal/protocol"
)

// ServerResult is the answer to one server API message: the body of a
// single call, or one entry of a batch's or an announcement's results.
type ServerResult struct {
	// Status is the HTTP status this message alone would have had.
	Status int    `json:"status"`
	Room   string `json:"room,omitempty"`
	ID     string `json:"id,omitempty"`
	// Seq is the stream sequence of a stored (reliable) message.
	Seq uint64 `json:"seq,omitempty"`
	// Duplicate is true when the message had been stored before (a retried
	// order id or announcement key): nothing was stored again.
	Duplicate bool                `json:"duplicate,omitempty"`
	Error     *protocol.ErrorBody `json:"error,omitempty"`
}

// ServerResults is the body of an announcement and of a batch: a result
// per room or per message, in the order sent. The call answers 200 when
// every one succeeded and 207 (Multi-Status) otherwise.
type ServerResults struct {
	Results []ServerResult `json:"results"`
}

// serverGift is a paid gift's body (and a batch item's with op "gift").
type serverGift struct {
	User     string `json:"user"`
	Name     string `json:"name"`
	Gift     string `json:"gift"`
	Count    *int64 `json:"count"`
	OrderID  string `json:"order_id"`
	Amount   int64  `json:"amount"`
	Currency string `json:"currency"`
}

var giftKeys = []string{"user", "name", "gift", "count", "order_id", "amount", "currency"}

// serverText is an announcement's or a notice's body.
type serverText struct {
	Rooms []string `json:"rooms"`
	Text  string   `json:"text"`
	// From is the display name shown as the sender; default none.
	From string `json:"from"`
	// Key makes an announcement idempotent per room.
	Key string `json:"key"`
}

var announceKeys = []string{"rooms", "text", "from", "key"}
var noticeKeys = []string{"text", "from"}

// decodeStrict decodes body into v, refusing unknown fields, duplicate or
// wrongly cased keys and trailing data.
func decodeStrict(body []byte, v any, keys ...string) *protocol.Error {
	if err := protocol.CheckKeys(body, keys...); err != nil {
		return badRequest(protocol.CodeInvalidJSON, "", err.Error())
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return badRequest(protocol.CodeInvalidJSON, "", "body must be one JSON object: "+protocol.JSONProblem(err))
	}
	if dec.More() {
		return badRequest(protocol.CodeInvalidJSON, "", "body must be one JSON object")
	}
	return nil
}

// readServerBody reads a bounded body.
func readServerBody(w http.ResponseWriter, r *http.Request) ([]byte, *protocol.Error) {
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(bodyReadTimeout))
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxServerBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, protocol.Errorf(http.StatusRequestEntityTooLarge, protocol.CodeTooLarge, "", "body is larger than "+strconv.Itoa(MaxServerBody)+" bytes")
		}
		return nil, badRequest(protocol.CodeBadRequest, "", "cannot read body")
	}
	return body, nil
}

// decodeBody reads r's body into v (see decodeStrict); on failure it
// answers and returns false.
func (a *serverAPI) decodeBody(w http.ResponseWriter, r *http.Request, v any, keys ...string) bool {
	body, perr := readServerBody(w, r)
	if perr == nil {
		perr = decodeStrict(body, v, keys...)
	}
	if perr != nil {
		a.s.fail(w, r, perr)
		return false
	}
	return true
}

// answer writes one result with its status.
func (a *serverAPI) answer(w http.ResponseWriter, r *http.Request, res ServerResult, perr *protocol.Error) {
	if perr != nil {
		a.s.fail(w, r, perr)
		return
	}
	protocol.WriteJSON(w, res.Status, res)
}

// answerAll writes results: 200 when all succeeded, else 207.
func answerAll(w http.ResponseWriter, results []ServerResult) {
	status := http.StatusOK
	for _, res := range results {
		if res.Status >= 300 {
			status = http.StatusMultiStatus
		}
	}
	protocol.WriteJSON(w, status, ServerResults{Results: results})
}

// failed turns an error into a result.
func failed(room string, perr *protocol.Error) ServerResult {
	b := perr.Body
	return ServerResult{Status: perr.Status, Room: room, Error: &b}
}

func (a *serverAPI) serveGift(w http.ResponseWriter, r *http.Request) {
	room, err := protocol.ParseRoom(r.PathValue("room"))
	if err != nil {
		a.s.fail(w, r, badRequest(protocol.CodeInvalidRoom, "room", err.Error()))
		return
	}
	var g serverGift
	if !a.decodeBody(w, r, &g, giftKeys...) {
		return
	}
	res, perr := a.gift(r.Context(), room, g)
	a.answer(w, r, res, perr)
}

// gift validates and stores a paid gift. The order id is the idempotency
// key: the message id is derived from it alone, so a retry after a timeout
// is recognised by the stream's de-duplication (within its window,
// bus.StreamConfig.DedupeWindow) and answered with the first one's id and
// seq and duplicate:true.
func (a *serverAPI) gift(ctx context.Context, room protocol.Room, g serverGift) (ServerResult, *protocol.Error) {
	s := a.s
	user, count, perr := s.gifts.checkPaidGift(g)
	if perr != nil {
		return ServerResult{}, perr
	}
	id := auth.Identity{User: user, Name: protocol.CleanName(g.Name, auth.MaxNameLen), Role: protocol.RoleViewer}
	req := sendRequest{Type: protocol.TypeGift, Gift: g.Gift, Count: count}
	// A closed room or a banned user refuses the gift, so that the
	// platform can refund it; a mute does not (it silences chat only).
	if perr := s.moderate(time.Now(), room, id, &req); perr != nil {
		return ServerResult{}, perr
	}
	m := protocol.Message{
		ID: orderGiftID(g.OrderID), Type: protocol.TypeGift, Room: string(room), User: string(user), Name: id.Name,
		TS: time.Now().UnixMilli(), Gift: g.Gift, Count: count, OrderID: g.OrderID, Amount: g.Amount, Currency: g.Currency,
	}
	s.stampSession(&m)
	ctx, cancel := context.WithTimeout(ctx, s.cfg.PublishTimeout)
	defer cancel()
	unavail := protocol.Errorf(http.StatusServiceUnavailable, protocol.CodeUnavailable, "",
		"the message store is unavailable; retry with the same order_id").WithRetry(unavailableRetryMS)
	done, perr := a.claimOrder(ctx, room, m.ID)
	switch {
	case perr != nil:
		return ServerResult{}, perr
	case done.Seq > 0:
		s.stats.giftDuplicates.Add(1)
		s.stats.gifts.Add(1)
		return ServerResult{Status: http.StatusAccepted, Room: string(room), ID: m.ID, Seq: done.Seq, Duplicate: true}, nil
	}
	ack, err := s.storeGift(ctx, bus.StoreSubject(room), m.ID, protocol.Encode(m))
	if err != nil {
		s.log.Warn("cannot store paid gift", "room", room, "order", g.OrderID, "err", err)
		return ServerResult{}, unavail
	}
	a.orderStored(ctx, room, m.ID, ack.Sequence)
	if ack.Duplicate {
		s.stats.giftDuplicates.Add(1)
	}
	s.stats.gifts.Add(1)
	return ServerResult{Status: http.StatusAccepted, Room: string(room), ID: m.ID, Seq: ack.Sequence, Duplicate: ack.Duplicate}, nil
}

// checkPaidGift validates a paid gift's fields (not its room) and returns
// its user and count (1 when absent). It does no I/O.
func (c catalogue) checkPaidGift(g serverGift) (protocol.User, int64, *protocol.Error) {
	user, err := protocol.ParseUser(g.User)
	if err != nil {
		return "", 0, badRequest(protocol.CodeInvalidField, "user", "user must be a user id: 1-64 characters of A-Z a-z 0-9 _ -")
	}
	if _, ok := c[g.Gift]; !ok {
		if g.Gift == "" {
			return "", 0, badRequest(protocol.CodeUnknownGift, "gift", "gift is required")
		}
		return "", 0, c.unknownGift()
	}
	count := int64(1)
	if g.Count != nil {
		count = *g.Count
	}
	if perr := checkCount(count); perr != nil {
		return "", 0, perr
	}
	if perr := checkPrintable(g.OrderID, "order_id", MaxOrderIDLen); perr != nil {
		return "", 0, perr
	}
	if g.Amount < 0 || g.Amount > MaxAmount {
		return "", 0, badRequest(protocol.CodeInvalidField, "amount", "amount is the price in minor units (cents): an integer 0-"+strconv.Itoa(MaxAmount))
	}
	if g.Currency != "" && !isCurrency(g.Currency) {
		return "", 0, badRequest(protocol.CodeInvalidField, "currency", "currency is an ISO 4217 code of three capital letters, e.g. USD")
	}
	if g.Amount > 0 && g.Currency == "" {
		return "", 0, badRequest(protocol.CodeInvalidField, "currency", "an amount needs its currency")
	}
	return user, count, nil
}

// orderRecord is an order's entry in bus.OrdersKV: the gift's id and room,
// and its stream sequence once stored (0: claimed, not known to be stored).
type orderRecord struct {
	ID   string `json:"id"`
	Room string `json:"room"`
	Seq  uint64 `json:"seq,omitempty"`
}

// orderKey is the bucket key of the gift id: its base32 characters are valid
// key characters, and the order id itself (any printable ASCII) never
// becomes part of a key.
func orderKey(id string) string { return "o." + id }

// claimOrder records the order before its gift is stored. It returns the
// existing record when the order was seen before: with a Seq, the gift is
// stored and must not be stored again (a retry after the stream's
// de-duplication window); without one, an earlier attempt failed or is in
// flight, and storing again with the same message id is safe within the
// window. An order id used for another room is refused (409).
func (a *serverAPI) claimOrder(ctx context.Context, room protocol.Room, id string) (orderRecord, *protocol.Error) {
	kv, err := a.bucket(ctx, bus.OrdersKV, &a.orders)
	if err == nil {
		_, err = kv.Create(ctx, orderKey(id), protocol.Encode(orderRecord{ID: id, Room: string(room)}))
		if err == nil {
			return orderRecord{}, nil
		}
		if errors.Is(err, jetstream.ErrKeyExists) {
			var e jetstream.KeyValueEntry
			var rec orderRecord
			if e, err = kv.Get(ctx, orderKey(id)); err == nil {
				if err = json.Unmarshal(e.Value(), &rec); err == nil {
					if rec.Room != string(room) {
						return orderRecord{}, protocol.Errorf(http.StatusConflict, protocol.CodeOrderReused, "order_id",
							"this order_id was already used for a gift to another room")
					}
					return rec, nil
				}
			}
		}
	}
	a.s.log.Warn("cannot record a paid order", "room", room, "id", id, "err", err)
	return orderRecord{}, protocol.Errorf(http.StatusServiceUnavailable, protocol.CodeUnavailable, "",
		"the order store is unavailable; retry with the same order_id").WithRetry(unavailableRetryMS)
}

// orderStored marks the order's gift stored at seq. A failure is logged:
// the gift is stored, and a retry within the stream's de-duplication window
// is still recognised by the stream.
func (a *serverAPI) orderStored(ctx context.Context, room protocol.Room, id string, seq uint64) {
	kv, err := a.bucket(ctx, bus.OrdersKV, &a.orders)
	if err == nil {
		_, err = kv.Put(ctx, orderKey(id), protocol.Encode(orderRecord{ID: id, Room: string(room), Seq: seq}))
	}
	if err != nil {
		a.s.log.Warn("cannot mark a paid order stored", "room", room, "id", id, "err", err)
	}
}

func (a *serverAPI) serveAnnounce(w http.ResponseWriter, r *http.Request) {
	var t serverText
	if !a.decodeBody(w, r, &t, announceKeys...) {
		return
	}
	if len(t.Rooms) == 0 || len(t.Rooms) > MaxAnnounceRooms {
		a.s.fail(w, r, badRequest(protocol.CodeInvalidField, "rooms", "rooms lists 1-"+strconv.Itoa(MaxAnnounceRooms)+" room ids"))
		return
	}
	if perr := checkAnnouncement(t); perr != nil {
		a.s.fail(w, r, perr)
		return
	}
	answerAll(w, a.announce(r.Context(), t))
}

// checkAnnouncement checks what an announcement and a notice share.
func checkAnnouncement(t serverText) *protocol.Error {
	if perr := checkText(t.Text); perr != nil {
		return perr
	}
	if t.Key != "" {
		if perr := checkPrintable(t.Key, "key", MaxIdempotencyKeyLen); perr != nil {
			return perr
		}
	}
	if t.From != "" && protocol.CleanName(t.From, auth.MaxNameLen) != t.From {
		return badRequest(protocol.CodeInvalidField, "from", "from is a display name of at most 64 printable characters")
	}
	return nil
}

// announce stores a notice in every room of t, all publishes in flight at
// once (one round trip for the whole call, not one per room), and returns a
// result per room in t's order. A room id that is not valid fails alone.
func (a *serverAPI) announce(ctx context.Context, t serverText) []ServerResult {
	s := a.s
	ctx, cancel := context.WithTimeout(ctx, s.cfg.PublishTimeout)
	defer cancel()
	results := make([]ServerResult, len(t.Rooms))
	futures := make([]jetstream.PubAckFuture, len(t.Rooms))
	now := time.Now()
	for i, raw := range t.Rooms {
		room, err := protocol.ParseRoom(raw)
		if err != nil {
			results[i] = failed("", badRequest(protocol.CodeInvalidRoom, "rooms", err.Error()))
			continue
		}
		id := nuid.Next()
		if t.Key != "" {
			id = announceID(room, t.Key)
		}
		m := protocol.Message{ID: id, Type: protocol.TypeNotice, Action: "announce", Room: string(room), Name: t.From, TS: now.UnixMilli(), Text: t.Text}
		s.stampSession(&m)
		results[i] = ServerResult{Room: string(room), ID: id}
		f, err := s.cfg.JS.PublishMsgAsync(&nats.Msg{Subject: bus.StoreSubject(room), Data: protocol.Encode(m)},
			jetstream.WithMsgID(id), jetstream.WithExpectStream(bus.ReliableStream))
		if err != nil {
			results[i] = failed(string(room), unavailable())
			continue
		}
		futures[i] = f
	}
	for i, f := range futures {
		if f == nil {
			continue
		}
		select {
		case ack := <-f.Ok():
			results[i].Status, results[i].Seq, results[i].Duplicate = http.StatusAccepted, ack.Sequence, ack.Duplicate
		case err := <-f.Err():
			s.log.Warn("cannot store announcement", "room", results[i].Room, "err", err)
			results[i] = failed(results[i].Room, unavailable())
		case <-ctx.Done():
			results[i] = failed(results[i].Room, unavailable())
		}
	}
	return results
}

func (a *serverAPI) serveNotice(w http.ResponseWriter, r *http.Request) {
	room, err := protocol.ParseRoom(r.PathValue("room"))
	if err != nil {
		a.s.fail(w, r, badRequest(protocol.CodeInvalidRoom, "room", err.Error()))
		return
	}
	user, err := protocol.ParseUser(r.PathValue("user"))
	if err != nil {
		a.s.fail(w, r, badRequest(protocol.CodeInvalidField, "user", "user must be a user id: 1-64 characters of A-Z a-z 0-9 _ -"))
		return
	}
	var t serverText
	if !a.decodeBody(w, r, &t, noticeKeys...) {
		return
	}
	res, perr := a.notice(room, user, t)
	a.answer(w, r, res, perr)
}

// notice publishes a notice to user's connections in room, the way
// moderation tells a user about a mute: on lr.user.<user>, at most once, not
// stored (a user who is not connected never sees it).
func (a *serverAPI) notice(room protocol.Room, user protocol.User, t serverText) (ServerResult, *protocol.Error) {
	if perr := checkAnnouncement(t); perr != nil {
		return ServerResult{}, perr
	}
	m := protocol.Message{ID: nuid.Next(), Type: protocol.TypeNotice, Action: "notice", Room: string(room), Name: t.From,
		Target: string(user), TS: time.Now().UnixMilli(), Text: t.Text}
	if err := a.s.cfg.NC.Publish(bus.UserSubject(user), protocol.Encode(m)); err != nil {
		return ServerResult{}, unavailable()
	}
	return ServerResult{Status: http.StatusAccepted, Room: string(room), ID: m.ID}, nil
}

// checkPrintable checks a key-like field: 1-max printable ASCII characters.
func checkPrintable(v, field string, max int) *protocol.Error {
	ok := len(v) >= 1 && len(v) <= max
	for i := 0; ok && i < len(v); i++ {
		ok = v[i] >= 0x20 && v[i] <= 0x7e
	}
	if !ok {
		return badRequest(protocol.CodeInvalidField, field, field+" must be 1-"+strconv.Itoa(max)+" printable ASCII characters")
	}
	return nil
}

func isCurrency(c string) bool {
	return len(c) == 3 && c[0] >= 'A' && c[0] <= 'Z' && c[1] >= 'A' && c[1] <= 'Z' && c[2] >= 'A' && c[2] <= 'Z'
}
