// Package announce holds announced audiences: the platform knows that a
// star goes live at 20:00 and that a push notification will bring 50,000
// viewers, and says so ahead of time, so that the autoscaler has the
// gateways ready before the first viewer arrives instead of reacting to the
// storm.
//
// An Announcement says that a room expects Viewers viewers from At until
// Until. Announcements live in the JetStream key-value bucket
// bus.AnnouncementsKV, one key per announcement (its id), so that every
// process that serves the admin API or runs an autoscaler sees the same
// ones, survives restarts, and needs no other server. Every Store keeps a
// copy in memory through one watch of the bucket (one ordered consumer per
// process, whatever the number of announcements), so that reading them,
// once a second by the autoscaler and on every dashboard poll, asks NATS
// nothing. Their number is bounded (MaxActive live ones, 1 KiB each), and an
// expired one is deleted by the next write.
package announce

import (
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/liveroom/liveroom/internal/protocol"
)

// Bounds of an announcement.
const (
	// MaxActive is the most announcements not yet expired: a platform
	// announces its few big shows, not every room.
	MaxActive = 64
	// MaxViewers bounds Viewers.
	MaxViewers = 10_000_000
	// MaxLead is how far ahead a show may be announced.
	MaxLead = 7 * 24 * time.Hour
	// MaxLength bounds Until − At; DefaultLength is used when no until is
	// given.
	MaxLength     = 24 * time.Hour
	DefaultLength = time.Hour
	// MaxNote bounds the free-text note, in characters.
	MaxNote = 200
)

// Announcement is one announced audience. The zero value is not valid.
type Announcement struct {
	// ID names it: "an-" and 12 hex digits, given by the Store.
	ID string `json:"id"`
	// Room expects Viewers viewers from At until Until.
	Room    protocol.Room `json:"room"`
	Viewers int           `json:"viewers"`
	At      time.Time     `json:"at"`
	Until   time.Time     `json:"until"`
	// Note is the announcer's free text ("final of the cup, push at 19:58").
	Note string `json:"note,omitempty"`
	// By is the user id of the token that announced it.
	By string `json:"by,omitempty"`
	// Created is when it was stored.
	Created time.Time `json:"created"`
}

// Expired reports whether a has ended at now.
func (a Announcement) Expired(now time.Time) bool { return !now.Before(a.Until) }

// Request is the body of POST /v1/admin/announcements.
type Request struct {
	Room    string    `json:"room"`
	Viewers int       `json:"viewers"`
	At      time.Time `json:"at"`
	// Until is optional: At + DefaultLength when zero.
	Until time.Time `json:"until"`
	Note  string    `json:"note"`
}

// Build validates r at now and returns the announcement it asks for, with a
// new id, By set to by. Errors are 400 invalid_field naming the field, or
// invalid_room.
func (r Request) Build(now time.Time, by string) (Announcement, error) {
	room, err := protocol.ParseRoom(r.Room)
	if err != nil {
		return Announcement{}, protocol.Errorf(http.StatusBadRequest, protocol.CodeInvalidRoom, "room", err.Error())
	}
	bad := func(field, msg string) (Announcement, error) {
		return Announcement{}, protocol.Errorf(http.StatusBadRequest, protocol.CodeInvalidField, field, msg)
	}
	if r.Viewers < 1 || r.Viewers > MaxViewers {
		return bad("viewers", "viewers must be a whole number from 1 to 10000000")
	}
	if r.At.IsZero() {
		return bad("at", "at is required: when the audience arrives, as an RFC 3339 time such as 2030-01-02T20:00:00Z")
	}
	if r.At.After(now.Add(MaxLead)) {
		return bad("at", "at must be at most 7 days ahead")
	}
	until := r.Until
	if until.IsZero() {
		until = r.At.Add(DefaultLength)
	}
	if !until.After(r.At) || until.Sub(r.At) > MaxLength {
		return bad("until", "until must be after at, by at most 24 hours")
	}
	if !until.After(now) {
		return bad("until", "the announcement would already be over")
	}
	note := strings.TrimSpace(r.Note)
	if utf8.RuneCountInString(note) > MaxNote || !utf8.ValidString(note) || strings.ContainsFunc(note, isControl) {
		return bad("note", "note must be at most 200 characters of text, without control characters")
	}
	return Announcement{
		ID: newID(), Room: room, Viewers: r.Viewers, At: r.At.UTC().Truncate(time.Millisecond),
		Until: until.UTC().Truncate(time.Millisecond), Note: note, By: by, Created: now.UTC().Truncate(time.Millisecond),
	}, nil
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) }

func newID() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return "an-" + hex.EncodeToString(b[:])
}

// ValidID reports whether id can name an announcement (and a bucket key).
func ValidID(id string) bool { return protocol.ValidID(id) }

// valid reports whether a, read from the bucket, has the shape Build gives:
// anything else (written by hand, or by a newer version in a way this one
// does not know) is ignored.
func (a Announcement) valid() bool {
	_, err := protocol.ParseRoom(string(a.Room))
	return ValidID(a.ID) && err == nil && a.Viewers >= 1 && a.Viewers <= MaxViewers &&
		!a.At.IsZero() && a.Until.After(a.At) && a.Until.Sub(a.At) <= MaxLength
}
