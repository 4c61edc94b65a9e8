// Package bus is liveroom's only backbone: it starts the embedded NATS server,
// connects roles to NATS, declares the JetStream stream and key-value buckets,
// and owns every subject name. Subjects are built only from validated
// protocol.Room and protocol.User values, so no subject is ever built from
// unchecked input.
package bus

import (
	"strings"

	"github.com/liveroom/liveroom/internal/protocol"
)

// Subject names. See docs/PROTOCOL.md for what each carries.
const (
	// BeatSubject carries gateway load beats.
	BeatSubject = "lr.gw.beat"
	// ControlSubjectPrefix + gateway id carries admin commands to one gateway.
	ControlSubjectPrefix = "lr.gw.ctl."
	// ReliableWildcard is captured by the reliable stream.
	ReliableWildcard = "lr.room.*.reliable"
	// ModerationWildcard carries the record of every moderation action
	// (lr.mod.<room>), also captured by the reliable stream so that
	// webhooks read it; no viewer ever receives it.
	ModerationWildcard = "lr.mod.*"
	// LiveWildcard is captured by the live buffer stream.
	LiveWildcard = "lr.room.*.live"
	// DoorSubject carries every dispatch replica's counts of the join
	// requests it answered (DoorReport), a few times a second while
	// clients ask. Published by dispatch, read by the autoscaler.
	DoorSubject = "lr.dispatch.door"

	// HeaderPrio marks a live message that must not be sampled away (sent by
	// an anchor or admin).
	HeaderPrio = "Lr-Prio"
)

// LiveSubject carries live-class messages and aggregates of room.
func LiveSubject(room protocol.Room) string { return "lr.room." + string(room) + ".live" }

// ReliableSubject carries reliable-class messages of room (stored by JetStream).
func ReliableSubject(room protocol.Room) string { return "lr.room." + string(room) + ".reliable" }

// PresenceSubject carries each gateway's local viewer count of room, summed by
// the other gateways that host the room.
func PresenceSubject(room protocol.Room) string { return "lr.room." + string(room) + ".presence" }

// ModerationSubject carries the records of room's moderation actions.
func ModerationSubject(room protocol.Room) string { return "lr.mod." + string(room) }

// UserWildcard matches every user's notice subject: gateways subscribe to
// it once (notices are rare) rather than once per connected user.
const UserWildcard = userPrefix + "*"

const userPrefix = "lr.user."

// UserSubject carries notices for one user.
func UserSubject(user protocol.User) string { return userPrefix + string(user) }

// UserFromSubject extracts the user of an lr.user.<user> subject. It returns
// false for anything else.
func UserFromSubject(subj string) (protocol.User, bool) {
	rest, ok := strings.CutPrefix(subj, userPrefix)
	if !ok {
		return "", false
	}
	u, err := protocol.ParseUser(rest)
	return u, err == nil
}

// RoomFromSubject extracts the room token of an lr.room.<room>.<kind> subject.
// It returns false for anything else.
func RoomFromSubject(subj string) (protocol.Room, string, bool) {
	const p = "lr.room."
	if len(subj) <= len(p) || subj[:len(p)] != p {
		return "", "", false
	}
	rest := subj[len(p):]
	for i := len(rest) - 1; i >= 0; i-- {
		if rest[i] == '.' {
			r, err := protocol.ParseRoom(rest[:i])
			if err != nil {
				return "", "", false
			}
			return r, rest[i+1:], true
		}
	}
	return "", "", false
}

// LikesKey is the key of a room's likes total in the room-state bucket.
func LikesKey(room protocol.Room) string { return "likes." + string(room) }

// ControlSubject carries admin commands (drain) to one gateway; id must have
// passed ValidGatewayID.
func ControlSubject(id string) string { return ControlSubjectPrefix + id }

// ValidGatewayID reports whether id can name a gateway (and a subject
// token): 1-64 characters of A-Z a-z 0-9 _ -.
func ValidGatewayID(id string) bool { return protocol.ValidID(id) }

// Control is a command sent on a gateway's control subject.
type Control struct {
	Cmd string `json:"cmd"` // "drain"
}

// ControlReply answers a Control request.
type ControlReply struct {
	Gateway string `json:"gateway"`
	State   string `json:"state"`
	Conns   int    `json:"conns"`
	Error   string `json:"error,omitempty"`
}
