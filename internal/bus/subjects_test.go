package bus

import (
	"testing"

	"github.com/liveroom/liveroom/internal/protocol"
)

func TestRoomFromSubject(t *testing.T) {
	for _, tc := range []struct {
		subj, room, kind string
		ok               bool
	}{
		{LiveSubject("r1"), "r1", "live", true},
		{ReliableSubject("a-b_c"), "a-b_c", "reliable", true},
		{PresenceSubject("x"), "x", "presence", true},
		{"lr.room.a.b.live", "", "", false},
		{"lr.gw.beat", "", "", false},
		{"lr.room.", "", "", false},
	} {
		r, k, ok := RoomFromSubject(tc.subj)
		if ok != tc.ok || r != protocol.Room(tc.room) || k != tc.kind {
			t.Errorf("RoomFromSubject(%q) = %q %q %v", tc.subj, r, k, ok)
		}
	}
}

func TestUserFromSubject(t *testing.T) {
	for _, tc := range []struct {
		subj, user string
		ok         bool
	}{
		{UserSubject("u-1_a"), "u-1_a", true},
		{"lr.user.", "", false},
		{"lr.user.a.b", "", false},
		{"lr.user.*", "", false},
		{"lr.room.u1.live", "", false},
		{"u1", "", false},
	} {
		u, ok := UserFromSubject(tc.subj)
		if ok != tc.ok || u != protocol.User(tc.user) {
			t.Errorf("UserFromSubject(%q) = %q %v", tc.subj, u, ok)
		}
	}
}
