package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/liveroom/liveroom/internal/bus"
	"github.com/liveroom/liveroom/internal/role"
	"github.com/liveroom/liveroom/internal/webhook"
)

// nonCoreFlags configure the non-core consumers (archive, webhooks) of
// serve and archive.
type nonCoreFlags struct {
	noArchive      bool
	archivePath    string
	retention      time.Duration
	webhooksFile   string
	webhookURL     string
	webhookEvents  string
	webhookSecret  string
	webhookRetries int
}

func (f *nonCoreFlags) register(t flagTable, serve bool) {
	if serve {
		t.Bool(&f.noArchive, "no-archive", "do not run the archive in this process (run liveroom archive elsewhere instead; only one archive may read the stream)")
	}
	t.String(&f.archivePath, "archive-path", "archive file (default <data-dir>/archive/archive.db)")
	f.retention = 7 * 24 * time.Hour
	t.Duration(&f.retention, "archive-retention", "keep an archived session this long after its last message")
	t.String(&f.webhooksFile, "webhooks", `webhook config file (JSON: {"endpoints":[{"url":…,"events":["gift","live_start","live_stop","moderation"],"secret":…}],"max_attempts":10,"backoff":"1s"})`)
	t.String(&f.webhookURL, "webhook-url", "one webhook endpoint, without a config file")
	f.webhookEvents = "gift,live_start,live_stop,moderation"
	t.String(&f.webhookEvents, "webhook-events", "events sent to --webhook-url")
	f.webhookRetries = 10
	t.Int(&f.webhookRetries, "webhook-max-attempts", "attempts before an event is dead-lettered (stream LR_WEBHOOK_DLQ)")
	f.webhookSecret = env("WEBHOOK_SECRET", "")
}

// config builds the app's NonCoreConfig; the signing secret of
// --webhook-url comes only from $LIVEROOM_WEBHOOK_SECRET (flags show in ps).
func (f *nonCoreFlags) config() (role.NonCoreConfig, error) {
	c := role.NonCoreConfig{NoArchive: f.noArchive, ArchivePath: f.archivePath, Retention: f.retention}
	if f.webhooksFile != "" {
		w, err := webhook.LoadFile(f.webhooksFile)
		if err != nil {
			return c, err
		}
		c.Webhooks = w
	}
	if f.webhookURL != "" {
		if f.webhookSecret == "" {
			return c, errors.New("--webhook-url needs $LIVEROOM_WEBHOOK_SECRET: every delivery is signed with it")
		}
		c.Webhooks.Endpoints = append(c.Webhooks.Endpoints, webhook.Endpoint{URL: f.webhookURL, Events: splitList(f.webhookEvents), Secret: f.webhookSecret})
	}
	if c.Webhooks.MaxAttempts == 0 {
		c.Webhooks.MaxAttempts = f.webhookRetries
	}
	return c, nil
}

// runArchive implements `liveroom archive`: the non-core consumers on their
// own, against an external NATS.
func runArchive(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("archive", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var rf roleFlags
	var nf nonCoreFlags
	var ev envs
	t := newFlagTable(fs, &ev)
	rf.register(t, ":8084")
	dataDir := "./data"
	t.String(&dataDir, "data-dir", "directory of the archive file")
	nf.register(t, false)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), `usage: liveroom archive [flags]

Runs the non-core consumers: the archive of live sessions (durable consumers
on the LR_LIVE and LR_RELIABLE streams into a local bbolt file), the replay
and live-session API (POST /v1/rooms/R/live/start|stop, GET /v1/rooms/R/sessions,
GET /v1/rooms/R/sessions/S/replay) and, when configured, webhooks. They read
durable streams, so this process may stop or fall behind without touching the
live path; it catches up when it comes back.

Run one archive process per NATS system (its store is local), and serve with
--no-archive. Webhook dispatchers may run several times: they share their
consumers.

example:
  export LIVEROOM_JWT_SECRET=…   # the same on every role
  export LIVEROOM_WEBHOOK_SECRET=…
  liveroom archive --nats-url nats://127.0.0.1:4222 --webhook-url https://example.com/hook

flags:`)
		fs.PrintDefaults()
	}
	if stop, err := parseAll(fs, args, &ev); stop {
		return err
	}
	ncfg, err := nf.config()
	if err != nil {
		return err
	}
	v, err := rf.verifier()
	if err != nil {
		return err
	}
	p, err := rf.connect(ctx, "liveroom-archive", bus.RoleArchive, "", v, stderr)
	if err != nil {
		return err
	}
	// No uplink here: the role loads its own moderation service for the
	// room anchors.
	err = rf.run(ctx, p, "", nil, role.NewNonCore(p.deps, ncfg, nil, dataDir))
	return withFix(err, "", "", "--data-dir (or --archive-path)")
}
