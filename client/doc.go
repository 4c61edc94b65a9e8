// Package client is the public Go client of liveroom.
//
// A viewer calls Connect: it asks dispatch for gateways, opens a WebSocket to
// the best one that accepts, and delivers the room's traffic as Events. The
// Conn survives gateway drains and network drops on its own: it reconnects
// through dispatch with since=<last reliable sequence>, so gifts and notices
// sent while it was away are replayed, and it never delivers a reliable
// message twice.
//
// A sender uses Sender to post danmaku, gifts and likes. Gifts carry an
// idempotency key and are retried with the same key, so a retried gift is
// stored once.
//
// The platform's backend uses Server, with an API key (never a user's
// token): paid gifts after payment, with the order id as the idempotency key
// (retried with it, so an order is shown once), announcements to many rooms,
// notices to one user, batches of up to 100 with a result each, a room's
// fleet-wide online count, like total and live session, and the live rooms.
//
// Connections offer permessage-deflate (no context takeover): a gateway
// that accepts it sends its larger room frames compressed, about a third of
// the bytes or less, and the client decompresses them. Dialer.NoCompression
// turns the offer off.
//
// DialGateway and GatewayConn are the low-level building blocks: one
// WebSocket connection to one gateway, read frame by frame, without dispatch,
// reconnects or de-duplication. Tests use them to check exact frame contents.
package client

import "github.com/liveroom/liveroom/internal/protocol"

// Message is one room message (danmaku, gift, like, count, notice, ...), as
// defined by the wire protocol. Seq is set only on reliable messages.
type Message = protocol.Message

// Welcome is the first frame a gateway sends on every connection.
type Welcome = protocol.Welcome

// Batch is a frame carrying the messages of one merge window of a room.
type Batch = protocol.Batch

// History follows the welcome of a first connection (no since=) to a room
// with recent traffic: its last danmaku and gifts, oldest first.
type History = protocol.History

// ReconnectFrame is sent by a draining gateway: reconnect through dispatch
// after AfterMS milliseconds.
type ReconnectFrame = protocol.Reconnect

// ErrorFrame is sent by a gateway just before it closes the connection.
type ErrorFrame = protocol.ErrorFrame

// ErrorBody is the JSON error object every endpoint answers with: a stable
// Code, a Message for people and, for validation errors, the Field at fault.
type ErrorBody = protocol.ErrorBody
