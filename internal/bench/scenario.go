package bench

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"time"

	"github.com/liveroom/liveroom/internal/cliflag"
	"github.com/liveroom/liveroom/internal/protocol"
)

// MaxPerChild is the most viewer connections one child process opens: the
// per-process file limit here is 20,000, and each child also needs a few
// descriptors for HTTP and pipes.
const MaxPerChild = 18000

// Duration is a time.Duration that reads and writes JSON as a Go duration
// string ("30s"); a JSON number is taken as seconds.
type Duration time.Duration

// MarshalJSON implements json.Marshaler.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON implements json.Unmarshaler.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		v, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("cannot parse duration %q: %w", s, err)
		}
		*d = Duration(v)
		return nil
	}
	var f float64
	if err := json.Unmarshal(b, &f); err != nil {
		return fmt.Errorf("duration must be a string such as \"30s\" or a number of seconds")
	}
	*d = Duration(f * float64(time.Second))
	return nil
}

// Scenario describes one bench run. Flags and a JSON scenario file (the same
// field names) fill it; Validate checks it and fills derived defaults. The
// zero value is not runnable: use DefaultScenario.
type Scenario struct {
	// URL is the base URL serving /v1/dispatch and /v1/rooms/… (a `liveroom
	// serve`); DispatchURL and UplinkURL override it per role.
	URL         string `json:"url,omitempty"`
	DispatchURL string `json:"dispatch_url,omitempty"`
	UplinkURL   string `json:"uplink_url,omitempty"`
	// NATSURL, when set, is where gateway beats are read (lr.gw.beat.*);
	// it may carry a credential (nats://user:password@host:port), or
	// NATSKeyFile mints the monitor role's one.
	// otherwise GET /v1/gateways on the dispatch URL is polled.
	NATSURL     string `json:"nats_url,omitempty"`
	NATSKeyFile string `json:"nats_key_file,omitempty"`
	// Gateways restricts viewers to these gateway ids (taken from dispatch's
	// candidates) and the CPU/RSS figures to their beats. Empty: any.
	Gateways []string `json:"gateways,omitempty"`

	// Viewers is the number of viewer connections; HotShare of them join
	// the hot room, the rest spread uniformly over Rooms-1 tail rooms.
	Viewers    int     `json:"viewers"`
	Rooms      int     `json:"rooms"`
	HotShare   float64 `json:"hot_share"`
	RoomPrefix string  `json:"room_prefix,omitempty"`

	// Rates are messages per second in total, sent to the hot room unless
	// Spread (then round-robin over all rooms).
	DanmakuRate float64 `json:"danmaku_rate"`
	GiftRate    float64 `json:"gift_rate"`
	LikeRate    float64 `json:"like_rate"`
	Spread      bool    `json:"spread,omitempty"`
	// Senders is the number of sender users; 0 picks enough for the
	// uplink's default per-user danmaku limit (2/s): DanmakuRate/1.5.
	Senders int `json:"senders"`
	// SendWorkers bounds concurrent send requests; 0 picks one from the rates.
	SendWorkers int `json:"send_workers"`
	// Sender is "client" (the public Go client's Sender, with gift
	// retries) or "raw" (a lean HTTP/1.1 client, one keep-alive connection
	// per worker, no retries: for measuring the uplink, not the bench).
	Sender string `json:"sender,omitempty"`
	// Texts is a file of danmaku texts, one per line, that the senders
	// cycle through; empty: the built-in corpus (testdata/danmaku.txt, a
	// mix of Chinese and English comments of typical lengths).
	Texts string `json:"texts,omitempty"`
	// NoCompress: viewers do not offer permessage-deflate, for the plain
	// figures of the same scenario.
	NoCompress bool `json:"no_compress,omitempty"`

	Duration Duration `json:"duration"`
	// Ramp is the time over which viewers connect; 0 connects as fast as
	// ConnectConcurrency allows (a join storm).
	Ramp Duration `json:"ramp"`
	// Grace is how long viewers keep reading after the senders stopped.
	Grace Duration `json:"grace"`
	// Settle is how long after the last connect the gateways' idle memory
	// is read (the Go runtime returns freed handshake memory gradually).
	Settle Duration `json:"settle"`
	// Procs is the number of child processes holding viewers; 0 keeps them
	// in this process (tests, small runs).
	Procs int `json:"procs"`
	// ConnectConcurrency bounds dials in flight per process.
	ConnectConcurrency int `json:"connect_concurrency"`
	// DispatchBatch is how many viewers share one dispatch answer; 1 asks
	// dispatch once per viewer, like real clients.
	DispatchBatch int `json:"dispatch_batch"`
	// Secret signs tokens locally (HS256); empty asks a dev-mode server for
	// dev tokens.
	Secret string `json:"-"`
	// AdminToken, when set, is the admin token the bench reads the operator
	// views (GET /v1/gateways, GET /v1/autoscale/decisions) and announces
	// with; empty mints one with Secret, or asks a dev-mode server.
	AdminToken string `json:"-"`
	// APIKey, when set, sends the gifts as paid gifts through the server API
	// (POST /v1/server/rooms/{room}/gifts, a new order id each) instead of
	// with the senders' tokens: what a server with a secret and no
	// --client-gifts takes.
	APIKey string `json:"-"`

	// Floor runs only the bare-write floor: Viewers plain TCP connections
	// to a raw server child writing FloorSize-byte frames FloorFPS times a
	// second to each. FloorCompare runs it after the liveroom run with that
	// run's frame size and rate.
	Floor        bool    `json:"floor,omitempty"`
	FloorCompare bool    `json:"floor_compare,omitempty"`
	FloorFPS     float64 `json:"floor_fps,omitempty"`
	FloorSize    int     `json:"floor_size,omitempty"`

	// MergeWindow is the gateways' merge window, used by the objectives
	// (danmaku p99 ≤ MergeWindow + 50 ms).
	MergeWindow Duration `json:"merge_window"`
	// Exe is the binary children run (default: this executable).
	Exe string `json:"-"`
	// JSON asks for the machine report instead of the table.
	JSON bool `json:"-"`
}

// DefaultScenario returns the defaults the flags start from.
func DefaultScenario() Scenario {
	return Scenario{
		Viewers: 100, Rooms: 1, HotShare: 1,
		Duration: Duration(10 * time.Second), Ramp: Duration(0), Grace: Duration(2 * time.Second), Settle: Duration(time.Second),
		Procs: -1, ConnectConcurrency: 64, DispatchBatch: 1,
		MergeWindow: Duration(50 * time.Millisecond),
	}
}

// ParseScenario builds a scenario from command-line args: the file named by
// --scenario (if any) first, then the flags over it. It returns flag.ErrHelp
// after printing the usage for -h.
func ParseScenario(args []string, stderr io.Writer) (Scenario, error) {
	return parseScenario(args, stderr, nil, benchUsage)
}

// parseScenario is ParseScenario with extra flags and another usage text.
func parseScenario(args []string, stderr io.Writer, extra func(*flag.FlagSet), usage string) (Scenario, error) {
	s := DefaultScenario()
	if path := scenarioPath(args); path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return s, fmt.Errorf("cannot read scenario: %w", err)
		}
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&s); err != nil {
			return s, fmt.Errorf("cannot parse scenario %s: %w", path, err)
		}
	}
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	s.register(fs)
	if extra != nil {
		extra(fs)
	}
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), usage)
		fs.PrintDefaults()
	}
	if err := cliflag.Parse(fs, args); err != nil {
		return s, err
	}
	if fs.NArg() > 0 {
		return s, fmt.Errorf("unexpected argument %q (flags only; see liveroom bench -h)", fs.Arg(0))
	}
	if s.Secret == "" {
		s.Secret = os.Getenv("LIVEROOM_JWT_SECRET")
	}
	if s.AdminToken == "" {
		s.AdminToken = os.Getenv("LIVEROOM_ADMIN_TOKEN")
	}
	if s.APIKey == "" {
		s.APIKey = os.Getenv("LIVEROOM_API_KEY")
	}
	return s, s.Validate()
}

const benchUsage = `usage: liveroom bench [flags]            load a liveroom system and report its costs
       liveroom bench capacity [flags]   ramp one gateway until an objective breaks
       liveroom bench flash [flags]      a flash crowd against an autoscaled fleet, second by second

Viewers connect through dispatch (GET /v1/dispatch) like real clients and
read every frame; senders post through the uplink. The gateways' own beats
give CPU and memory. --floor-compare adds a bare TCP write floor measured
with the same connections, frame size and frame rate. Run the server with
--user-rate/--room-rate (danmaku), --gift-rate/--gift-burst and --like-rate
raised for high send rates.

flags:`

func scenarioPath(args []string) string {
	for i, a := range args {
		for _, p := range []string{"-scenario", "--scenario"} {
			if a == p && i+1 < len(args) {
				return args[i+1]
			}
			if strings.HasPrefix(a, p+"=") {
				return strings.TrimPrefix(a, p+"=")
			}
		}
	}
	return ""
}

type durFlag struct{ d *Duration }

func (f durFlag) String() string {
	if f.d == nil {
		return ""
	}
	return time.Duration(*f.d).String()
}
func (f durFlag) Set(v string) error {
	d, err := time.ParseDuration(v)
	if err != nil {
		return errors.New("want a duration with a unit, such as 30s")
	}
	*f.d = Duration(d)
	return nil
}

type listFlag struct{ l *[]string }

func (f listFlag) String() string {
	if f.l == nil {
		return ""
	}
	return strings.Join(*f.l, ",")
}
func (f listFlag) Set(v string) error {
	*f.l = nil
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*f.l = append(*f.l, p)
		}
	}
	return nil
}

func (s *Scenario) register(fs *flag.FlagSet) {
	fs.String("scenario", "", "JSON scenario file with the same fields as the flags; flags given override it")
	fs.StringVar(&s.URL, "url", s.URL, "base URL serving /v1/dispatch and /v1/rooms/… (e.g. a liveroom serve)")
	fs.StringVar(&s.DispatchURL, "dispatch-url", s.DispatchURL, "dispatch base URL (default --url)")
	fs.StringVar(&s.UplinkURL, "uplink-url", s.UplinkURL, "uplink base URL (default --url)")
	fs.StringVar(&s.NATSURL, "nats-url", s.NATSURL, "read gateway beats from this NATS (default: poll GET /v1/gateways); it may carry a credential, nats://monitor:PASSWORD@host:port")
	fs.StringVar(&s.NATSKeyFile, "nats-key-file", s.NATSKeyFile, "mint the monitor role's NATS credential from this key file (e.g. serve's DATA-DIR/nats.key)")
	fs.Var(listFlag{&s.Gateways}, "gateway", "only use these gateway ids (comma separated) for viewers and figures")
	fs.IntVar(&s.Viewers, "viewers", s.Viewers, "viewer connections")
	fs.IntVar(&s.Rooms, "rooms", s.Rooms, "rooms: one hot room plus rooms-1 tail rooms")
	fs.Float64Var(&s.HotShare, "hot-share", s.HotShare, "fraction of viewers in the hot room; the rest spread uniformly over the tail")
	fs.StringVar(&s.RoomPrefix, "room-prefix", s.RoomPrefix, "room id prefix (default bench-<random>)")
	fs.Float64Var(&s.DanmakuRate, "danmaku-rate", s.DanmakuRate, "danmaku per second, total")
	fs.Float64Var(&s.GiftRate, "gift-rate", s.GiftRate, "gifts per second, total")
	fs.Float64Var(&s.LikeRate, "like-rate", s.LikeRate, "like requests per second, total")
	fs.BoolVar(&s.Spread, "spread", s.Spread, "send to every room in turn instead of the hot room")
	fs.IntVar(&s.Senders, "senders", s.Senders, "sender users (default: enough for the uplink's default per-user limits of 2 danmaku/s, 1 gift/s and 50 likes/s)")
	fs.IntVar(&s.SendWorkers, "send-workers", s.SendWorkers, "concurrent send requests (default from the rates)")
	fs.StringVar(&s.Sender, "sender", s.Sender, "client: the Go client's Sender (gift retries); raw: a lean HTTP/1.1 client that leaves the CPU to the uplink")
	fs.StringVar(&s.Texts, "texts", s.Texts, "file of danmaku texts, one per line (default: the built-in corpus of Chinese and English comments)")
	fs.BoolVar(&s.NoCompress, "no-compress", s.NoCompress, "viewers do not offer permessage-deflate (the plain figures of the same scenario)")
	fs.Var(durFlag{&s.Duration}, "duration", "how long the senders send (measurement window)")
	fs.Var(durFlag{&s.Ramp}, "ramp", "connection ramp-up time (0: as fast as possible)")
	fs.Var(durFlag{&s.Grace}, "grace", "how long viewers keep reading after the senders stop")
	fs.Var(durFlag{&s.Settle}, "settle", "wait this long after the last connect before reading the gateways' idle RSS")
	fs.IntVar(&s.Procs, "procs", s.Procs, "child processes for viewers (default: enough for 18,000 each; 0: in this process)")
	fs.IntVar(&s.ConnectConcurrency, "connect-concurrency", s.ConnectConcurrency, "dials in flight per process")
	fs.IntVar(&s.DispatchBatch, "dispatch-batch", s.DispatchBatch, "viewers per dispatch call (1: each viewer asks dispatch, like a real client)")
	fs.StringVar(&s.Secret, "secret", s.Secret, "HS256 secret to mint tokens locally (default $LIVEROOM_JWT_SECRET; empty: dev tokens from the server)")
	fs.StringVar(&s.AdminToken, "admin-token", s.AdminToken, "admin token for the operator views on --url (GET /v1/gateways, /v1/autoscale/decisions) and announcements (default $LIVEROOM_ADMIN_TOKEN; empty: minted with --secret, or a dev token)")
	fs.StringVar(&s.APIKey, "api-key", s.APIKey, "server API key (lrk_…): send gifts as paid gifts through /v1/server/… with order ids, as a server with a secret and no --client-gifts requires (default $LIVEROOM_API_KEY)")
	fs.BoolVar(&s.Floor, "floor", s.Floor, "run only the bare TCP write floor (--viewers connections, --floor-fps, --floor-size)")
	fs.BoolVar(&s.FloorCompare, "floor-compare", s.FloorCompare, "after the run, measure the bare write floor with the same connections, frame size and rate")
	fs.Float64Var(&s.FloorFPS, "floor-fps", s.FloorFPS, "floor mode: frames per second per connection")
	fs.IntVar(&s.FloorSize, "floor-size", s.FloorSize, "floor mode: bytes per frame")
	fs.Var(durFlag{&s.MergeWindow}, "merge-window", "the gateways' merge window, for the danmaku objective")
	fs.BoolVar(&s.JSON, "json", s.JSON, "print the report as JSON")
}

// Validate checks the scenario and fills derived defaults (room prefix,
// senders, workers, procs). Errors name the flag at fault.
func (s *Scenario) Validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	atLeast := func(flag string, v, min int) {
		if v < min {
			bad("%s must be ≥ %d, not %d", flag, min, v)
		}
	}
	atLeast("--viewers", s.Viewers, 0)
	atLeast("--rooms", s.Rooms, 1)
	if s.HotShare < 0 || s.HotShare > 1 || math.IsNaN(s.HotShare) {
		bad("--hot-share must be in [0,1], not %g", s.HotShare)
	}
	if s.Rooms == 1 {
		s.HotShare = 1
	}
	for name, r := range map[string]float64{"--danmaku-rate": s.DanmakuRate, "--gift-rate": s.GiftRate, "--like-rate": s.LikeRate} {
		if r < 0 || math.IsNaN(r) || math.IsInf(r, 0) {
			bad("%s must be ≥ 0, not %g", name, r)
		}
	}
	atLeast("--senders", s.Senders, 0)
	atLeast("--send-workers", s.SendWorkers, 0)
	if s.Duration <= 0 {
		bad("--duration must be > 0")
	}
	if s.Ramp < 0 || s.Grace < 0 || s.Settle < 0 {
		bad("--ramp, --grace and --settle must be ≥ 0")
	}
	atLeast("--connect-concurrency", s.ConnectConcurrency, 1)
	atLeast("--dispatch-batch", s.DispatchBatch, 1)
	if s.RoomPrefix == "" {
		s.RoomPrefix = "bench-" + randHex(3)
	}
	if !protocol.ValidID(s.RoomPrefix) || len(s.RoomPrefix) > 48 {
		bad("--room-prefix must be 1-48 characters of A-Z a-z 0-9 _ -, not %q", s.RoomPrefix)
	}
	if s.Floor && s.FloorCompare {
		bad("--floor and --floor-compare exclude each other")
	}
	if s.Floor {
		if s.FloorFPS <= 0 || s.FloorSize <= 0 {
			bad("--floor needs --floor-fps > 0 and --floor-size > 0")
		}
		if s.Viewers < 1 {
			bad("--floor needs --viewers ≥ 1")
		}
	} else {
		if s.DispatchURL == "" {
			s.DispatchURL = s.URL
		}
		if s.UplinkURL == "" {
			s.UplinkURL = s.URL
		}
		if s.Viewers > 0 && s.DispatchURL == "" {
			bad("--url (or --dispatch-url) is required to connect viewers")
		}
		if s.sends() && s.UplinkURL == "" {
			bad("--url (or --uplink-url) is required to send")
		}
		if s.Viewers == 0 && !s.sends() {
			bad("nothing to do: give --viewers or a send rate")
		}
		for _, u := range []string{s.DispatchURL, s.UplinkURL} {
			if u != "" && !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
				bad("URL %q must start with http:// or https://", u)
			}
		}
	}
	if s.Procs < 0 {
		s.Procs = (s.Viewers + MaxPerChild - 1) / MaxPerChild
		if s.Procs < 1 {
			s.Procs = 1
		}
	}
	if s.Procs == 0 && s.Viewers > MaxPerChild {
		bad("--procs 0 holds every viewer in this process: at most %d, not %d", MaxPerChild, s.Viewers)
	}
	if s.Procs > 0 && (s.Viewers+s.Procs-1)/s.Procs > MaxPerChild {
		bad("--procs %d puts more than %d viewers in one child: use --procs %d or more", s.Procs, MaxPerChild, (s.Viewers+MaxPerChild-1)/MaxPerChild)
	}
	if s.sends() {
		if s.Senders == 0 {
			// Enough users for the uplink's default per-user limits:
			// 2 danmaku/s, 1 gift/s, 50 likes/s (a little under each).
			s.Senders = max(1, int(math.Ceil(s.DanmakuRate/1.5)), int(math.Ceil(s.GiftRate/0.8)), int(math.Ceil(s.LikeRate/40)))
		}
		if s.SendWorkers == 0 {
			// Enough that a 20 ms answer does not hold the rate back.
			s.SendWorkers = min(512, max(4, int((s.DanmakuRate+s.GiftRate+s.LikeRate)/40)))
		}
	}
	switch s.Sender {
	case "":
		s.Sender = "client"
	case "client":
	case "raw":
		if _, err := newRawConn(s.UplinkURL); err != nil && s.sends() {
			bad("%v", err)
		}
	default:
		bad("--sender must be client or raw, not %q", s.Sender)
	}
	if s.MergeWindow <= 0 {
		s.MergeWindow = Duration(50 * time.Millisecond)
	}
	return errors.Join(errs...)
}

func (s *Scenario) sends() bool { return s.DanmakuRate > 0 || s.GiftRate > 0 || s.LikeRate > 0 }

// RoomPlan is how many viewers join each room.
type RoomPlan struct {
	Room    string `json:"room"`
	Viewers int    `json:"n"`
}

// HotRoom is the id of the scenario's hot room.
func (s *Scenario) HotRoom() string { return s.RoomPrefix + "-hot" }

// RoomIDs lists every room, the hot one first.
func (s *Scenario) RoomIDs() []string {
	ids := []string{s.HotRoom()}
	for i := 1; i < s.Rooms; i++ {
		ids = append(ids, fmt.Sprintf("%s-t%d", s.RoomPrefix, i))
	}
	return ids
}

// Plan spreads n viewers over the rooms: round(n × HotShare) in the hot room
// and the rest as evenly as possible over the tail.
func (s *Scenario) Plan(n int) []RoomPlan {
	ids := s.RoomIDs()
	hot := n
	if len(ids) > 1 {
		hot = int(math.Round(float64(n) * s.HotShare))
	}
	out := []RoomPlan{{Room: ids[0], Viewers: hot}}
	rest := n - hot
	tail := ids[1:]
	for i, id := range tail {
		k := rest / len(tail)
		if i < rest%len(tail) {
			k++
		}
		out = append(out, RoomPlan{Room: id, Viewers: k})
	}
	return out
}

// splitPlan divides a plan among parts processes, room by room, so that
// each gets an (almost) equal share of the viewers of every room.
func splitPlan(plan []RoomPlan, parts int) [][]RoomPlan {
	out := make([][]RoomPlan, parts)
	next := 0 // rotate remainders so that small rooms do not all land on part 0
	for _, rp := range plan {
		for p := 0; p < parts; p++ {
			k := rp.Viewers / parts
			if (p-next+parts)%parts < rp.Viewers%parts {
				k++
			}
			if k > 0 {
				out[p] = append(out[p], RoomPlan{Room: rp.Room, Viewers: k})
			}
		}
		next = (next + rp.Viewers%parts) % parts
	}
	return out
}
