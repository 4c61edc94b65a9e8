package main

import (
	"bytes"
	"context"
	"flag"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/liveroom/liveroom/internal/auth"
	"github.com/liveroom/liveroom/internal/testutil"
)

func TestRunToken(t *testing.T) {
	unsetEnv(t, envSecret)
	v := testutil.Verifier(t)
	tests := []struct {
		name     string
		args     []string
		env      string
		wantUser string
		wantName string
		wantRole string
		wantErr  string
	}{
		{name: "flags", args: []string{"--secret", testutil.Secret, "--user", "alice", "--name", "Alice", "--role", "anchor"}, wantUser: "alice", wantName: "Alice", wantRole: "anchor"},
		{name: "secret from env, defaults", args: []string{"--user", "bob"}, env: testutil.Secret, wantUser: "bob", wantName: "bob", wantRole: "viewer"},
		{name: "no secret", args: []string{"--user", "bob"}, wantErr: "secret is required"},
		{name: "no user", args: []string{"--secret", testutil.Secret}, wantErr: "--user"},
		{name: "bad user", args: []string{"--secret", testutil.Secret, "--user", "a.b"}, wantErr: "--user"},
		{name: "bad role", args: []string{"--secret", testutil.Secret, "--user", "a", "--role", "god"}, wantErr: "unknown role"},
		{name: "short secret", args: []string{"--secret", "short", "--user", "a"}, wantErr: "at least"},
		{name: "bad ttl", args: []string{"--secret", testutil.Secret, "--user", "a", "--ttl", "-1h"}, wantErr: "--ttl"},
		{name: "stray argument", args: []string{"--secret", testutil.Secret, "--user", "a", "extra"}, wantErr: "unexpected argument"},
		{name: "unknown flag", args: []string{"--nope"}, wantErr: "unknown flag --nope"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(envSecret, tt.env)
			var out, errOut bytes.Buffer
			err := runToken(context.Background(), tt.args, &out, &errOut)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to mention %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			id, err := v.Verify(strings.TrimSpace(out.String()))
			if err != nil {
				t.Fatal(err)
			}
			if string(id.User) != tt.wantUser || id.Name != tt.wantName || id.Role != tt.wantRole {
				t.Errorf("identity %+v", id)
			}
		})
	}
}

func TestRunTokenTTL(t *testing.T) {
	var out bytes.Buffer
	if err := runToken(context.Background(), []string{"--secret", testutil.Secret, "--user", "a", "--ttl", "1ms"}, &out, &out); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond) // exp has one-second resolution
	v, err := auth.NewHS256([]byte(testutil.Secret), 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(strings.TrimSpace(out.String())); err == nil {
		t.Error("token outlived its ttl")
	}
}

func TestRunTokenHelp(t *testing.T) {
	t.Setenv(envSecret, testutil.Secret)
	var out, errOut bytes.Buffer
	if err := runToken(context.Background(), []string{"-help"}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	if out.Len() != 0 || !strings.Contains(errOut.String(), "usage: liveroom token") {
		t.Errorf("stdout %q stderr %q", out.String(), errOut.String())
	}
	if strings.Contains(errOut.String(), testutil.Secret) {
		t.Error("help printed the secret")
	}
}

func newTestFlagSet() *flag.FlagSet {
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}
