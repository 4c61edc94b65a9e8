package bus

import (
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Permissions returns what a connection of role may publish and subscribe
// to; id binds a gateway to its own beat and control subjects (empty: any
// gateway id). This table is the whole authorization of the backbone:
// a subject a role uses and this table does not list is refused by the
// server ("Permissions Violation"), which the multi-process tests catch.
//
// Every role may subscribe to _INBOX.> (request replies) and ask for
// JetStream account info. Beyond that:
//
//	role       publishes                                     subscribes
//	gateway    presence, its own beat, Direct Get reads          its rooms' subjects, user notices, its own control
//	uplink     room live, reliable stores, moderation records, presence (room counts
//	           user notices, like/moderation/paid-order KV    for the server API),
//	           writes, stream management, lr.uplink.>         lr.uplink.> (usage reports,
//	                                                         slow-mode claims)
//	dispatch   control commands (admin API), door reports,   beats
//	           announcement KV writes (admin API)
//	archive    reliable notices (live start/stop), session   –
//	           and moderation KV writes, durable consumers,
//	           the webhook dead-letter stream
//	autoscale  control commands, announcement KV reads       beats, door reports
//	control    control commands                              –
//	monitor    –                                             beats
//	all        everything                                    everything
//
// Gateways answer control requests, and uplinks slow-mode claims, through
// the response permission (one reply per request received), not through a
// publish grant on _INBOX.
func Permissions(role Role, id string) *server.Permissions {
	if role == RoleAll {
		return nil // nil permissions: everything
	}
	pub, sub := []string{jsAPI + "INFO"}, []string{"_INBOX.>"}
	var resp *server.ResponsePermission
	switch role {
	case RoleGateway:
		beat, ctl := BeatWildcard, ControlWildcard
		if id != "" {
			beat, ctl = BeatSubject(id), ControlSubject(id)
		}
		// Reads only, by Direct Get: a gateway creates no consumer on the
		// reliable stream (its credential may not), whatever its rooms.
		pub = append(pub, PresenceWildcard, beat)
		pub = append(pub, readStream(ReliableStream)...)
		// The live buffer too: a room's last danmaku when the gateway
		// starts it, for the history frame (no consumer either).
		pub = append(pub, readStream(LiveStream)...)
		pub = append(pub, readStream("KV_"+RoomStateKV)...)
		pub = append(pub, readKV(ModerationKV)...)
		sub = append(sub, RoomsWildcard, UserWildcard, ctl, ReliableLeaderElected)
		resp = &server.ResponsePermission{MaxMsgs: 1, Expires: time.Minute}
	case RoleUplink:
		pub = append(pub, LiveWildcard, StoreWildcard, ModerationWildcard, UserWildcard)
		pub = append(pub, manageStreams()...)
		pub = append(pub, readStream(ReliableStream)...)
		pub = append(pub, writeKV(RoomStateKV)...)
		pub = append(pub, writeKV(ModerationKV)...)
		pub = append(pub, readKV(SessionsKV)...)
		pub = append(pub, writeKV(OrdersKV)...)
		// The server API's online counts (internal/presence).
		sub = append(sub, PresenceWildcard)
		// Fleet-wide limits: usage reports and slow-mode claims, among
		// uplinks only (internal/uplink fleet.go).
		pub = append(pub, UplinkWildcard)
		sub = append(sub, UplinkWildcard)
		resp = &server.ResponsePermission{MaxMsgs: 1, Expires: time.Minute}
	case RoleArchive:
		pub = append(pub, StoreWildcard, ModerationWildcard, UserWildcard, webhookDLQSubjects)
		for _, s := range []string{ReliableStream, LiveStream} {
			pub = append(pub, readStream(s)...)
			pub = append(pub, consumeStream(s)...)
		}
		pub = append(pub, readStream(webhookDLQStream)...)
		pub = append(pub, jsAPI+"STREAM.CREATE."+webhookDLQStream, jsAPI+"STREAM.UPDATE."+webhookDLQStream)
		pub = append(pub, writeKV(SessionsKV)...)
		pub = append(pub, writeKV(ModerationKV)...)
	case RoleDispatch:
		// The admin API lives beside dispatch: drains, and the announced
		// audiences it writes for the autoscaler.
		pub = append(pub, ControlWildcard, DoorSubject)
		pub = append(pub, writeKV(AnnouncementsKV)...)
		sub = append(sub, BeatWildcard)
	case RoleAutoscale:
		pub = append(pub, ControlWildcard)
		pub = append(pub, readKV(AnnouncementsKV)...)
		sub = append(sub, BeatWildcard, DoorSubject)
	case RoleControl:
		pub = append(pub, ControlWildcard)
	case RoleMonitor:
		sub = append(sub, BeatWildcard)
	default:
		return &server.Permissions{Publish: &server.SubjectPermission{Deny: []string{">"}}, Subscribe: &server.SubjectPermission{Deny: []string{">"}}}
	}
	return &server.Permissions{
		Publish:   &server.SubjectPermission{Allow: pub},
		Subscribe: &server.SubjectPermission{Allow: sub},
		Response:  resp,
	}
}

// The webhook dead-letter stream (internal/webhook) is the archive's own.
const (
	webhookDLQStream   = "LR_WEBHOOK_DLQ"
	webhookDLQSubjects = "lr.webhook.dlq.>"
)

const jsAPI = "$JS.API."

// readStream: stream info, and single messages by sequence or last by
// subject, directly from any replica or through the leader.
func readStream(stream string) []string {
	return []string{
		jsAPI + "STREAM.INFO." + stream,
		jsAPI + "STREAM.MSG.GET." + stream,
		jsAPI + "DIRECT.GET." + stream,
		jsAPI + "DIRECT.GET." + stream + ".>",
	}
}

// consumeStream: create, look up, pull from, acknowledge and delete
// consumers of stream, and answer its flow control.
func consumeStream(stream string) []string {
	return []string{
		jsAPI + "CONSUMER.CREATE." + stream,
		jsAPI + "CONSUMER.CREATE." + stream + ".>",
		jsAPI + "CONSUMER.DURABLE.CREATE." + stream + ".>",
		jsAPI + "CONSUMER.INFO." + stream + ".>",
		jsAPI + "CONSUMER.DELETE." + stream + ".>",
		jsAPI + "CONSUMER.MSG.NEXT." + stream + ".>",
		"$JS.ACK." + stream + ".>",
		"$JS.FC." + stream + ".>",
	}
}

// readKV: get keys and watch a bucket (a watch is an ordered consumer).
func readKV(bucket string) []string {
	s := "KV_" + bucket
	return append(readStream(s), consumeStream(s)...)
}

// writeKV: readKV plus puts, creates, updates and deletes of its keys.
func writeKV(bucket string) []string {
	return append(readKV(bucket), "$KV."+bucket+".>")
}

// manageStreams: create and update liveroom's streams and buckets
// (EnsureStreams).
func manageStreams() []string {
	var out []string
	for _, s := range []string{ReliableStream, LiveStream, "KV_" + RoomStateKV, "KV_" + ModerationKV, "KV_" + SessionsKV, "KV_" + AnnouncementsKV, "KV_" + OrdersKV} {
		out = append(out, jsAPI+"STREAM.CREATE."+s, jsAPI+"STREAM.UPDATE."+s, jsAPI+"STREAM.INFO."+s)
	}
	return out
}
