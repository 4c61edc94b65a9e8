// Package protocol defines liveroom's public wire contract: room and user
// identifiers, the messages carried in rooms, the frames a gateway sends to a
// viewer and the JSON errors every HTTP endpoint answers with. It is shared by
// the server roles and the public Go client; it does no I/O.
package protocol

import (
	"errors"
	"fmt"
)

// MaxRoomLen is the longest room id accepted.
const MaxRoomLen = 64

// ErrInvalidRoom is returned by ParseRoom for an id outside [A-Za-z0-9_-]{1,64}.
var ErrInvalidRoom = errors.New("room id must be 1-64 characters of A-Z a-z 0-9 _ -")

// Room is a validated room id. The only way to obtain a non-empty Room from
// untrusted input is ParseRoom, so any code that builds a NATS subject from a
// Room knows the id cannot contain '.', '*', '>' or whitespace.
type Room string

// ParseRoom validates s as a room id.
func ParseRoom(s string) (Room, error) {
	if !validToken(s, MaxRoomLen) {
		return "", fmt.Errorf("%w: %q", ErrInvalidRoom, truncate(s, 80))
	}
	return Room(s), nil
}

// MaxUserLen is the longest user id (JWT sub) accepted.
const MaxUserLen = 64

// ErrInvalidUser is returned by ParseUser for an id outside [A-Za-z0-9_-]{1,64}.
var ErrInvalidUser = errors.New("user id must be 1-64 characters of A-Z a-z 0-9 _ -")

// User is a validated user id, safe to use as a NATS subject token.
type User string

// ParseUser validates s as a user id.
func ParseUser(s string) (User, error) {
	if !validToken(s, MaxUserLen) {
		return "", fmt.Errorf("%w: %q", ErrInvalidUser, truncate(s, 80))
	}
	return User(s), nil
}

// ValidID reports whether s is 1-64 characters of A-Z a-z 0-9 _ -, the
// alphabet of every id that becomes a NATS subject token (rooms, users,
// gateways).
func ValidID(s string) bool { return validToken(s, MaxRoomLen) }

func validToken(s string, max int) bool {
	if len(s) == 0 || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
