package moderation

import (
	"fmt"
	"net/http"
	"time"

	"github.com/liveroom/liveroom/internal/protocol"
)

// The refusals moderation causes, written once for the gateway (joins, and
// the close frame of a banned viewer) and the uplink (sends). Clients show
// the message as it is, so its wording is part of the contract.

// BannedText is what a user banned until untilMS (Unix milliseconds) is
// told: the end of the ban in UTC, RFC 3339.
func BannedText(untilMS int64) string {
	return "you are banned from this room until " + untilText(untilMS)
}

// BannedError refuses a join or a send of a user under ban b: 403 banned,
// with until_ms.
func BannedError(b Sanction) *protocol.Error {
	return protocol.Errorf(http.StatusForbidden, protocol.CodeBanned, "", BannedText(b.UntilMS)).WithUntil(b.UntilMS)
}

// MutedError refuses a danmaku of a user under mute m: 403 muted, with
// until_ms.
func MutedError(m Sanction) *protocol.Error {
	return protocol.Errorf(http.StatusForbidden, protocol.CodeMuted, "",
		"you are muted in this room until "+untilText(m.UntilMS)).WithUntil(m.UntilMS)
}

// RoomClosedError refuses a join or a send in a closed room: 403
// room_closed.
func RoomClosedError() *protocol.Error {
	return protocol.Errorf(http.StatusForbidden, protocol.CodeRoomClosed, "", "the room is closed")
}

// MutedAllError refuses a danmaku while the whole room is muted: 403
// muted_all.
func MutedAllError() *protocol.Error {
	return protocol.Errorf(http.StatusForbidden, protocol.CodeMutedAll, "", "only the anchor may speak in this room now")
}

// SlowModeError refuses a danmaku sent within intervalS seconds of the
// user's last one: 429 slow_mode, to retry after wait.
func SlowModeError(intervalS int, wait time.Duration) *protocol.Error {
	return protocol.Errorf(http.StatusTooManyRequests, protocol.CodeSlowMode, "",
		fmt.Sprintf("slow mode: one comment every %d s", intervalS)).WithRetry(wait.Milliseconds())
}

func untilText(ms int64) string { return time.UnixMilli(ms).UTC().Format(time.RFC3339) }
