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
