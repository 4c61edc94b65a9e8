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
	// BeatWildcard matches every gateway's beat subject (BeatSubject):
	// dispatch, autoscale and the bench read it.
	BeatWildcard = beatPrefix + "*"
	// ControlSubjectPrefix + gateway id carries admin commands to one gateway.
	ControlSubjectPrefix = "lr.gw.ctl."
	// ControlWildcard matches every gateway's control subject.
	ControlWildcard = ControlSubjectPrefix + "*"
	// PresenceWildcard matches every room's presence subject.
	PresenceWildcard = "lr.room.*.presence"
	// StoreWildcard is captured by the reliable stream: reliable messages
	// are published there (through JetStream, deduplicated by message id)
	// and nowhere else.
	StoreWildcard = "lr.store.*"
	// ReliableWildcard matches the subjects on which the reliable stream
	// republishes what it stored (ReliableSubject). Only the stream
	// publishes there; no role's credential may.
	ReliableWildcard = "lr.room.*.reliable"
	// RoomsWildcard matches every subject a gateway hears for its rooms:
	// a gateway subscribes to RoomWildcard(room) for each room it hosts.
	RoomsWildcard = "lr.room.*.>"
	// ReliableLeaderElected is JetStream's advisory that the reliable stream
	// has a new leader: gateways check their rooms then, since a leader that
	// died may have stored a message without republishing it.
	ReliableLeaderElected = "$JS.EVENT.ADVISORY.STREAM.LEADER_ELECTED." + ReliableStream
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

	// UplinkWildcard matches the subjects uplinks use among themselves for
	// fleet-wide limits (UsageSubject, SlowClaimSubject). Only uplinks may
	// publish or subscribe to them: a report there changes every uplink's
	// share of a user's or a room's rate.
	UplinkWildcard = uplinkPrefix + ">"
	// UsageSubject carries every uplink's usage report (UsageReport) a few
	// times a second: its liveness and the demand of its hot rate-limit
	// keys. Published and read by uplinks only.
	UsageSubject = uplinkPrefix + "usage"

	// HeaderPrio marks a live message that must not be sampled away (sent by
	// an anchor or admin).
	HeaderPrio = "Lr-Prio"
)

// LiveSubject carries live-class messages and aggregates of room.
func LiveSubject(room protocol.Room) string { return "lr.room." + string(room) + ".live" }

// StoreSubject is where reliable-class messages of room are published,
// through JetStream: the reliable stream captures it.
func StoreSubject(room protocol.Room) string { return "lr.store." + string(room) }

// ReliableSubject carries the reliable-class messages of room as the
// reliable stream stored them: republished by the stream (stream RePublish)
// with the headers Nats-Sequence (their stream sequence) and
// Nats-Last-Sequence (the sequence of the room's previous reliable message),
// from which a gateway sees any gap.
func ReliableSubject(room protocol.Room) string { return "lr.room." + string(room) + ".reliable" }

// RoomWildcard matches every subject a gateway hosting room hears: live,
// presence and reliable. One core subscription per hosted room.
func RoomWildcard(room protocol.Room) string { return "lr.room." + string(room) + ".>" }

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

const uplinkPrefix = "lr.uplink."

// SlowClaimSubject carries slow-mode claims (requests) to uplink id, the
// owner of the (room, user) pairs that hash to it; id must have passed
// ValidUplinkID.
func SlowClaimSubject(id string) string { return uplinkPrefix + "slow." + id }

// ValidUplinkID reports whether id can name an uplink (and a subject token):
// 1-64 characters of A-Z a-z 0-9 _ -.
func ValidUplinkID(id string) bool { return protocol.ValidID(id) }

// LikesKey is the key of a room's likes total in the room-state bucket.
func LikesKey(room protocol.Room) string { return "likes." + string(room) }

const beatPrefix = "lr.gw.beat."

// BeatSubject carries the load beats of gateway id (which must have passed
// ValidGatewayID). Each gateway publishes on its own subject, so that NATS
// permissions can bind a gateway's credential to its id.
func BeatSubject(id string) string { return beatPrefix + id }

// GatewayFromBeatSubject returns the gateway id of a beat subject; false
// for anything else.
func GatewayFromBeatSubject(subj string) (string, bool) {
	id, ok := strings.CutPrefix(subj, beatPrefix)
	return id, ok && ValidGatewayID(id)
}

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
