package uplink

import (
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/liveroom/liveroom/internal/protocol"
)

// Batch operations (the "op" of a batch message).
const (
	OpGift     = "gift"
	OpAnnounce = "announce"
	OpNotice   = "notice"
)

// serverBatch is the body of POST /v1/server/batch.
type serverBatch struct {
	Messages []json.RawMessage `json:"messages"`
}

// batchItem is one message of a batch: "op", the room (and user of a
// notice), and the fields of the single call of that op.
type batchItem struct {
	Op   string `json:"op"`
	Room string `json:"room"`
	User string `json:"user"`
	serverGift
	Text string `json:"text"`
	From string `json:"from"`
	Key  string `json:"key"`
}

var batchKeys = map[string][]string{
	OpGift:     append([]string{"op", "room"}, giftKeys...),
	OpAnnounce: {"op", "room", "text", "from", "key"},
	OpNotice:   {"op", "room", "user", "text", "from"},
}

// serveBatch runs up to MaxBatch messages in order and answers a result per
// message: one bad message fails alone, the others go through. Gifts are
// idempotent by order id and announcements by key, so a batch retried after
// a timeout stores nothing twice.
func (a *serverAPI) serveBatch(w http.ResponseWriter, r *http.Request) {
	var b serverBatch
	if !a.decodeBody(w, r, &b, "messages") {
		return
	}
	if len(b.Messages) == 0 || len(b.Messages) > MaxBatch {
		a.s.fail(w, r, badRequest(protocol.CodeInvalidField, "messages", "messages holds 1-"+strconv.Itoa(MaxBatch)+" messages"))
		return
	}
	results := make([]ServerResult, len(b.Messages))
	for i, raw := range b.Messages {
		res, perr := a.batchItem(r, raw)
		if perr != nil {
			res = failed(res.Room, perr)
			a.s.stats.reject(perr.Body.Code)
		}
		results[i] = res
	}
	answerAll(w, results)
}

func (a *serverAPI) batchItem(r *http.Request, raw json.RawMessage) (ServerResult, *protocol.Error) {
	var op struct {
		Op string `json:"op"`
	}
	if err := json.Unmarshal(raw, &op); err != nil {
		return ServerResult{}, badRequest(protocol.CodeInvalidJSON, "", "a message must be a JSON object with an op")
	}
	keys, ok := batchKeys[op.Op]
	if !ok {
		return ServerResult{}, badRequest(protocol.CodeUnknownType, "op", `op must be "gift", "announce" or "notice"`)
	}
	var it batchItem
	if perr := decodeStrict(raw, &it, keys...); perr != nil {
		return ServerResult{}, perr
	}
	room, err := protocol.ParseRoom(it.Room)
	if err != nil {
		return ServerResult{}, badRequest(protocol.CodeInvalidRoom, "room", err.Error())
	}
	t := serverText{Rooms: []string{string(room)}, Text: it.Text, From: it.From, Key: it.Key}
	switch op.Op {
	case OpGift:
		it.serverGift.User = it.User
		res, perr := a.gift(r.Context(), room, it.serverGift)
		res.Room = string(room)
		return res, perr
	case OpAnnounce:
		if perr := checkAnnouncement(t); perr != nil {
			return ServerResult{Room: string(room)}, perr
		}
		res := a.announce(r.Context(), t)[0]
		if res.Error != nil {
			return res, &protocol.Error{Status: res.Status, Body: *res.Error}
		}
		return res, nil
	default: // OpNotice
		user, err := protocol.ParseUser(it.User)
		if err != nil {
			return ServerResult{Room: string(room)}, badRequest(protocol.CodeInvalidField, "user", "user must be a user id: 1-64 characters of A-Z a-z 0-9 _ -")
		}
		return a.notice(room, user, t)
	}
}
