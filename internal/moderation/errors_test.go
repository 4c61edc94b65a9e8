package moderation

import (
	"net/http"
	"testing"
	"time"

	"github.com/liveroom/liveroom/internal/protocol"
)

// TestRefusalTexts pins the refusals' wire form: clients show the message
// as it is, and the gateway and the uplink both send these.
func TestRefusalTexts(t *testing.T) {
	until := time.Date(2026, 12, 4, 15, 5, 0, 0, time.FixedZone("CET", 3600)).UnixMilli()
	for _, tc := range []struct {
		name   string
		err    *protocol.Error
		status int
		code   string
		msg    string
		until  int64
		retry  int64
	}{
		{"banned", BannedError(Sanction{UntilMS: until}), http.StatusForbidden, protocol.CodeBanned,
			"you are banned from this room until 2026-12-04T14:05:00Z", until, 0},
		{"muted", MutedError(Sanction{UntilMS: until}), http.StatusForbidden, protocol.CodeMuted,
			"you are muted in this room until 2026-12-04T14:05:00Z", until, 0},
		{"room closed", RoomClosedError(), http.StatusForbidden, protocol.CodeRoomClosed, "the room is closed", 0, 0},
		{"muted all", MutedAllError(), http.StatusForbidden, protocol.CodeMutedAll, "only the anchor may speak in this room now", 0, 0},
		{"slow mode", SlowModeError(30, 12500*time.Millisecond), http.StatusTooManyRequests, protocol.CodeSlowMode,
			"slow mode: one comment every 30 s", 0, 12500},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := tc.err
			if e.Status != tc.status || e.Body.Code != tc.code || e.Body.Message != tc.msg ||
				e.Body.UntilMS != tc.until || e.Body.RetryAfterMS != tc.retry || e.Body.Field != "" {
				t.Fatalf("got %d %+v, want %d %s %q until %d retry %d", e.Status, e.Body, tc.status, tc.code, tc.msg, tc.until, tc.retry)
			}
		})
	}
	if got := BannedText(until); got != "you are banned from this room until 2026-12-04T14:05:00Z" {
		t.Fatalf("BannedText = %q", got)
	}
}
