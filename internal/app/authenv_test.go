package app

import (
	"strings"
	"testing"
)

func TestRedactURLs(t *testing.T) {
	got := redactURLs("nats://alice:s3cret@10.0.0.1:4222, nats://tok3n@10.0.0.2:4222,nats://10.0.0.3:4222")
	if strings.Contains(got, "s3cret") || strings.Contains(got, "tok3n") || !strings.Contains(got, "10.0.0.3:4222") {
		t.Fatalf("redactURLs = %q", got)
	}
}
