package bus

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
	// RoomConns holds the local viewer count of the gateway's largest rooms
	// (at most 16), for room affinity in dispatch.
	RoomConns map[string]int `json:"room_conns,omitempty"`
}
