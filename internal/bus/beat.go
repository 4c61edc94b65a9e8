package bus

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/url"
	"strings"

	"github.com/liveroom/liveroom/internal/protocol"
)

// Gateway states carried in beats.
const (
	StateActive   = "active"
	StateDraining = "draining"
)

// Beat is a gateway's load report, published on BeatSubject every second.
// Dispatch and autoscale read it; fields are only ever added.
type Beat struct {
	ID      string `json:"id"`
	URL     string `json:"url"` // public WebSocket URL, ws://host:port/v1/ws
	State   string `json:"state"`
	Started int64  `json:"started"` // Unix ms
	TS      int64  `json:"ts"`      // Unix ms when sent
	Conns   int    `json:"conns"`
	Rooms   int    `json:"rooms"`
	// MaxConns is the gateway's configured connection capacity.
	MaxConns int `json:"max_conns"`
	// Load is the highest use of any dimension against capacity, in [0,1].
	Load float64 `json:"load"`
	// FramesOut and MsgsOut are per-second rates over the last beat interval.
	FramesOut float64 `json:"frames_out"`
	MsgsOut   float64 `json:"msgs_out"`
	// BytesOut is bytes written to viewers per second; PacketsOut is frames
	// written per second, each one write system call and at least one
	// packet (the gateway does not see segmentation).
	BytesOut   float64 `json:"bytes_out"`
	PacketsOut float64 `json:"packets_out"`
	// CPU is the process's CPU use in cores over the last interval; RSS its
	// resident memory in bytes.
	CPU float64 `json:"cpu"`
	RSS int64   `json:"rss"`
	// Capacity is what Load is measured against.
	Capacity Capacity `json:"capacity"`
	// IntervalMS is the beat interval; dispatch treats a gateway silent for
	// three intervals as gone.
	IntervalMS int64 `json:"interval_ms"`
	// Dropped is live messages per second not delivered to a viewer
	// (sampled away by the viewer budget or dropped at a full queue);
	// ClosedSlow is connections per second closed because they could not
	// take a reliable message. Both over the last beat interval.
	Dropped    float64 `json:"dropped"`
	ClosedSlow float64 `json:"closed_slow"`
	// DelayP50MS and DelayP99MS are percentiles of the push delay (uplink
	// accept to frame written, all classes, once per message and room) over
	// the last beat interval, in ms; 0 when nothing was pushed.
	DelayP50MS float64 `json:"delay_p50_ms"`
	DelayP99MS float64 `json:"delay_p99_ms"`
	// RoomConns holds the local viewer count of the gateway's largest rooms
	// (at most 16), for room affinity in dispatch.
	RoomConns map[string]int `json:"room_conns,omitempty"`
}

// Capacity is a gateway's configured limits. Zero means "not limited" for
// that dimension.
type Capacity struct {
	Conns    int     `json:"conns"`
	CPU      float64 `json:"cpu"`       // cores
	BytesOut float64 `json:"bytes_out"` // bytes per second
	MsgsOut  float64 `json:"msgs_out"`  // messages per second
}

// MaxBeatRooms is the most room_conns entries a beat may carry.
const MaxBeatRooms = 16

// BeatPolicy says which beats a reader accepts beyond their shape.
type BeatPolicy struct {
	// Hosts, when not empty, lists the hosts a gateway URL may name:
	// "gw1.example.com", or "*.example.com" for every subdomain of it (not
	// the domain itself). Compared case-insensitively.
	Hosts []string
}

// DecodeBeat reads a beat received on subject and checks that it has the
// documented shape, so that nobody who can publish a beat can make dispatch
// offer a foreign or malformed URL: the id is a gateway id and the one of the
// subject; the URL is ws:// or wss://, with a host (one of p.Hosts when they
// are given), no user info, query or fragment, and a path ending in /v1/ws;
// the state is known; every number is finite and not negative; room_conns
// names valid rooms, at most MaxBeatRooms of them.
func DecodeBeat(subject string, data []byte, p BeatPolicy) (Beat, error) {
	var b Beat
	if err := json.Unmarshal(data, &b); err != nil {
		return b, fmt.Errorf("beat is not JSON: %w", err)
	}
	id, ok := GatewayFromBeatSubject(subject)
	if !ok || b.ID != id {
		return b, fmt.Errorf("beat on %q names gateway %q", printableUser(subject), printableUser(b.ID))
	}
	if err := checkBeatURL(b.URL, p.Hosts); err != nil {
		return b, fmt.Errorf("beat of %s: %w", id, err)
	}
	if b.State != StateActive && b.State != StateDraining {
		return b, fmt.Errorf("beat of %s: unknown state %q", id, printableUser(b.State))
	}
	nums := []float64{b.Load, b.FramesOut, b.MsgsOut, b.BytesOut, b.PacketsOut, b.CPU, b.Dropped, b.ClosedSlow,
		b.DelayP50MS, b.DelayP99MS, b.Capacity.CPU, b.Capacity.BytesOut, b.Capacity.MsgsOut,
		float64(b.Conns), float64(b.Rooms), float64(b.MaxConns), float64(b.RSS), float64(b.IntervalMS),
		float64(b.Capacity.Conns), float64(b.Started), float64(b.TS)}
	for _, n := range nums {
		if math.IsNaN(n) || math.IsInf(n, 0) || n < 0 {
			return b, fmt.Errorf("beat of %s: a number is negative or not finite", id)
		}
	}
	if len(b.RoomConns) > MaxBeatRooms {
		return b, fmt.Errorf("beat of %s: %d rooms listed, at most %d", id, len(b.RoomConns), MaxBeatRooms)
	}
	for r, n := range b.RoomConns {
		if !protocol.ValidID(r) || n < 0 {
			return b, fmt.Errorf("beat of %s: bad room_conns entry", id)
		}
	}
	return b, nil
}

func checkBeatURL(raw string, hosts []string) error {
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return errors.New("URL does not parse")
	case u.Scheme != "ws" && u.Scheme != "wss":
		return fmt.Errorf("URL scheme %q is not ws or wss", printableUser(u.Scheme))
	case u.Host == "" || u.Hostname() == "":
		return errors.New("URL has no host")
	case u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "":
		return errors.New("URL has user info, a query or a fragment")
	case !strings.HasSuffix(u.Path, "/v1/ws"):
		return errors.New("URL path does not end in /v1/ws")
	}
	if len(hosts) > 0 && !HostAllowed(u.Hostname(), hosts) {
		return fmt.Errorf("URL host %q is not in the allowed gateway hosts", printableUser(u.Hostname()))
	}
	return nil
}

// HostAllowed reports whether host matches an entry of hosts: equal, or
// under a "*.domain" entry. Case-insensitive.
func HostAllowed(host string, hosts []string) bool {
	host = strings.ToLower(host)
	for _, h := range hosts {
		h = strings.ToLower(strings.TrimSpace(h))
		if suffix, ok := strings.CutPrefix(h, "*."); ok {
			if strings.HasSuffix(host, "."+suffix) && len(host) > len(suffix)+1 {
				return true
			}
		} else if host == h {
			return true
		}
	}
	return false
}
