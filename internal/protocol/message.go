package protocol

import (
	"encoding/json"
	"strconv"
)

// Message types carried inside batch frames.
const (
	TypeDanmaku = "danmaku" // live: a bullet comment
	TypeGift    = "gift"    // reliable: a paid gift
	TypeLike    = "like"    // aggregate: likes summed over a window
	TypeCount   = "count"   // aggregate: online viewers of the room, across all gateways
	TypeNotice  = "notice"  // reliable: system or moderation notice
)

// MaxCount is the largest gift or like count of one send; a count is 1 to
// MaxCount. The uplink refuses anything else (400 invalid_field "count"),
// and the Go client refuses it before sending.
const MaxCount = 999

// Frame types sent by a gateway to a viewer.
const (
	FrameWelcome   = "welcome"
	FrameBatch     = "batch"
	FrameReconnect = "reconnect"
	FrameError     = "error"
	// FrameHeartbeat ({"type":"hb"}) is sent to a connection that got
	// nothing else for a moment, so that a client can tell a quiet room
	// from a gateway that hangs (Welcome.HeartbeatMS).
	FrameHeartbeat = "hb"
	// FrameHistory ({"type":"history","room":R,"msgs":[...]}) follows the
	// welcome of a first join (no since=): the room's recent danmaku and
	// gifts, oldest first, for a viewer who arrives late (History).
	FrameHistory = "history"
)

// Roles carried in tokens.
const (
	RoleViewer = "viewer"
	RoleAnchor = "anchor"
	RoleAdmin  = "admin"
)

// ValidRole reports whether r is one of the known roles.
func ValidRole(r string) bool {
	return r == RoleViewer || r == RoleAnchor || r == RoleAdmin
}

// Message is one room message as it travels on NATS and appears in a batch
// frame. Fields that do not apply to a type are omitted from JSON. Seq is set
// only for reliable messages, by the gateway, from the JetStream stream
// sequence (so it is not part of the stored payload).
type Message struct {
	ID     string `json:"id"`
	Type   string `json:"type"`
	Seq    uint64 `json:"seq,omitempty"`
	Room   string `json:"room,omitempty"`
	User   string `json:"user,omitempty"`
	Name   string `json:"name,omitempty"`
	Role   string `json:"role,omitempty"`
	TS     int64  `json:"ts"` // server time in Unix milliseconds
	Text   string `json:"text,omitempty"`
	Gift   string `json:"gift,omitempty"`
	Count  int64  `json:"count,omitempty"`  // gift count, or like delta
	Total  int64  `json:"total,omitempty"`  // like running total
	Online int64  `json:"online,omitempty"` // count messages
	// Action names what a notice is about (mute, ban, kick, announce,
	// close, ...); UntilMS is when a mute or ban ends (Unix ms).
	Action  string `json:"action,omitempty"`
	UntilMS int64  `json:"until_ms,omitempty"`
	// Target is the user a moderation record is about (its User is who
	// acted).
	Target string `json:"target,omitempty"`
	// Session is the live session of the room the message was sent in, and
	// OffsetMS its time since the session started (TS minus the start), set
	// by the uplink while the room is live; a replay shows the message at
	// OffsetMS. Both are empty outside a live session.
	Session  string `json:"session,omitempty"`
	OffsetMS int64  `json:"offset_ms,omitempty"`
	// OrderID, Amount and Currency are set on a paid gift sent by the
	// platform's backend through the server API (POST
	// /v1/server/rooms/{room}/gifts): the platform's order id (also the
	// gift's idempotency key), its price in minor units (cents) and its ISO
	// 4217 currency. They travel unchanged to viewers, the archive and
	// webhooks. A gift without OrderID was sent with a user's token.
	OrderID  string `json:"order_id,omitempty"`
	Amount   int64  `json:"amount,omitempty"`
	Currency string `json:"currency,omitempty"`
}

// Reliable reports whether messages of type t are persisted and sequenced.
func Reliable(t string) bool { return t == TypeGift || t == TypeNotice }

// Welcome is the first frame on every connection.
type Welcome struct {
	Type    string `json:"type"` // "welcome"
	Room    string `json:"room"`
	Seq     uint64 `json:"seq"`    // last reliable sequence of the room at join
	Online  int64  `json:"online"` // viewers across all gateways
	Likes   int64  `json:"likes"`  // likes total
	Gateway string `json:"gateway"`
	User    string `json:"user"`
	// Replayed is how many reliable messages follow because the client asked
	// for since=; they arrive in batch frames before any live traffic.
	Replayed int `json:"replayed,omitempty"`
	// HeartbeatMS, when set, promises that this connection gets a frame
	// (a heartbeat when nothing else) at least every HeartbeatMS; a client
	// that hears nothing for LivenessFactor × HeartbeatMS should leave the
	// gateway and resume elsewhere with since=. Zero: no promise (a gateway
	// without heartbeats).
	HeartbeatMS int64 `json:"hb_ms,omitempty"`
	// History is how many messages the history frame right after this
	// welcome carries (a first join into a room with recent traffic);
	// zero (omitted): no history frame follows.
	History int `json:"history,omitempty"`
}

// LivenessFactor × Welcome.HeartbeatMS is how long a client waits without
// any frame before it leaves a gateway as hung (1.75 s for the default
// 1 s). A gateway leaves at most 17/16 of the interval between two frames
// (internal/gateway/heartbeat.go), so 1.75 leaves it about 0.7 s of
// scheduling slack while keeping a hung gateway's viewers, reconnect and
// replay included, within the 3 s gift budget (docs/RELIABILITY.md).
const LivenessFactor = 1.75

// Batch is a frame carrying the messages of one merge window of a room.
type Batch struct {
	Type string `json:"type"` // "batch"
	Room string `json:"room"`
	// WindowMS is the merge window this frame closes; absent on replays
	// and notices.
	WindowMS int64     `json:"window_ms,omitempty"`
	Msgs     []Message `json:"msgs"`
}

// History is the frame sent right after the welcome of a first join (no
// since=): the room's recent danmaku and gifts, merged oldest first by TS,
// so that a late joiner sees the conversation. It is context, not
// delivery: its gifts carry their seq (at most the welcome's) but a client
// must not count them as received reliable messages, nor move its since=
// position by them; nothing in it is sent again as a batch.
type History struct {
	Type string    `json:"type"` // "history"
	Room string    `json:"room"`
	Msgs []Message `json:"msgs"`
}

// AppendHistory appends a history frame for room built from
// already-encoded messages, spliced in verbatim like AppendBatch's.
func AppendHistory(dst []byte, room Room, msgs [][]byte) []byte {
	dst = append(dst, `{"type":"history","room":"`...)
	dst = append(dst, room...) // validated: needs no escaping
	dst = append(dst, `","msgs":[`...)
	return appendMsgs(dst, msgs)
}

// Reconnect asks the client to reconnect through dispatch after AfterMS.
type Reconnect struct {
	Type    string `json:"type"` // "reconnect"
	AfterMS int64  `json:"after_ms"`
	Reason  string `json:"reason,omitempty"`
}

// ErrorFrame is sent before the server closes a connection for a reason the
// client should know (banned, room closed, too slow, ...).
type ErrorFrame struct {
	Type  string    `json:"type"` // "error"
	Error ErrorBody `json:"error"`
}

// AppendBatch appends a batch frame for room built from already-encoded
// messages. The messages are spliced in verbatim: a room's frame is encoded
// once, without decoding what the uplink encoded. windowMS, when positive,
// is the merge window the frame closes (window_ms).
func AppendBatch(dst []byte, room Room, windowMS int64, msgs [][]byte) []byte {
	dst = append(dst, `{"type":"batch","room":"`...)
	dst = append(dst, room...) // validated: needs no escaping
	if windowMS > 0 {
		dst = append(dst, `","window_ms":`...)
		dst = strconv.AppendInt(dst, windowMS, 10)
		dst = append(dst, `,"msgs":[`...)
	} else {
		dst = append(dst, `","msgs":[`...)
	}
	return appendMsgs(dst, msgs)
}

// appendMsgs appends msgs comma-separated and closes the frame's array and
// object.
func appendMsgs(dst []byte, msgs [][]byte) []byte {
	for i, m := range msgs {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, m...)
	}
	return append(dst, "]}"...)
}

// WithSeq returns the encoded message msg (a JSON object) with "seq":seq
// inserted as its first field. It allocates once.
func WithSeq(msg []byte, seq uint64) []byte {
	if len(msg) < 2 || msg[0] != '{' {
		return msg
	}
	out := make([]byte, 0, len(msg)+28)
	out = append(out, `{"seq":`...)
	out = strconv.AppendUint(out, seq, 10)
	if len(msg) > 2 {
		out = append(out, ',')
	}
	return append(out, msg[1:]...)
}

// Encode marshals v; it panics only on types that cannot be marshalled,
// which would be a programming error in this package's own frame types.
func Encode(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic("protocol: cannot encode " + err.Error())
	}
	return b
}

// DefaultGifts is the gift catalogue when none is configured (the uplink's
// --gifts): the names the uplink accepts and the room page's buttons.
var DefaultGifts = []string{"rose", "heart", "rocket", "castle", "car"}

// LiveRoom is one room of a live-room list.
type LiveRoom struct {
	Room   string `json:"room"`
	Online int64  `json:"online"`
	// Live and Session describe the room's live session, when it has one.
	Live    bool   `json:"live"`
	Session string `json:"session,omitempty"`
	// StartedMS is when the live session started (Unix ms).
	StartedMS int64 `json:"started_ms,omitempty"`
}

// LiveRooms is the body of GET /v1/server/rooms and GET /v1/rooms.
type LiveRooms struct {
	// Rooms are the rooms with viewers or a live session, most viewers
	// first, then live sessions by start, at most the limit asked.
	Rooms []LiveRoom `json:"rooms"`
	// Total is how many such rooms there are.
	Total int `json:"total"`
}
