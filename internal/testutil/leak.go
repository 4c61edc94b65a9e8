package testutil

import (
	"regexp"
	"testing"
)

// goInternals matches what a client-facing error must never show: Go types
// and package paths ("Go struct field Request.viewers of type int",
// "*errors.errorString", "main.R"), Go's decoders' own prefixes ("json:",
// "strconv.ParseInt:") and panics.
var goInternals = regexp.MustCompile(`Go (struct|value)|of type [a-z*\[]|\*[a-z]+\.[A-Za-z]|\b(json|strconv|runtime|jetstream|nats|reflect)[.:]|goroutine |github\.com/|\.go:[0-9]`)

// NoGoInternals fails the test when body, an answer sent to a client,
// names a Go type, package or decoder.
func NoGoInternals(t testing.TB, what, body string) {
	t.Helper()
	if m := goInternals.FindString(body); m != "" {
		t.Errorf("%s: the answer names Go internals (%q): %s", what, m, body)
	}
}
