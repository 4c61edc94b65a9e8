package gateway

import "sync/atomic"

// Stats are the gateway's counters. Every field is safe for concurrent use;
// message counts are per delivered message, frame counts per written frame.
type Stats struct {
	Conns            atomic.Int64 // open connections
	ConnsTotal       atomic.Int64 // connections accepted since start
	Rejected         atomic.Int64 // upgrades refused (auth, capacity, draining)
	AcceptErrors     atomic.Int64 // accept failures (EMFILE and the like), each followed by a backoff
	LiveIn           atomic.Int64 // live messages received from NATS
	ReliableIn       atomic.Int64 // reliable messages received as the stream republished them
	PresenceIn       atomic.Int64 // presence updates received from other gateways
	FramesEncoded    atomic.Int64 // batch frames encoded (once per room window)
	FramesOut        atomic.Int64 // frames written or queued to connections
	MsgsOut          atomic.Int64 // messages in those frames
	BytesOut         atomic.Int64 // bytes of those frames, as written (compressed or not)
	FramesCompressed atomic.Int64 // of FramesOut, written in their compressed form
	FramesDeflated   atomic.Int64 // frames compressed (once per room window, when worth it)
	DroppedSampled   atomic.Int64 // live messages sampled away by the viewer budget
	DroppedQueueFull atomic.Int64 // live messages dropped at a full connection queue
	ClosedSlow       atomic.Int64 // connections closed: could not take a reliable message
	ClosedIdle       atomic.Int64 // connections closed: no pong within the idle timeout
	ClosedStalled    atomic.Int64 // connections closed: queued frames made no progress
	ClosedBadFrame   atomic.Int64 // connections closed: oversized or malformed client frame
	Replayed         atomic.Int64 // reliable messages sent to reconnecting clients to catch up (since=)
	ReplayedFromJS   atomic.Int64 // of which read from JetStream (not the memory window)
	ReliableGaps     atomic.Int64 // rooms found behind the stream (a gap in the sequence, or a check)
	ReliableRepaired atomic.Int64 // reliable messages read by repairs (Direct Get)
	RepairRequests   atomic.Int64 // Direct Get requests of repairs
	RepairErrors     atomic.Int64 // of which failed (retried)
	Checks           atomic.Int64 // checks of the hosted rooms against the stream
	CheckRequests    atomic.Int64 // multi-last Direct Get requests of checks
	StartBatches     atomic.Int64 // batches of rooms started together
	StartRequests    atomic.Int64 // Direct Get requests of room starts
	HistoryRequests  atomic.Int64 // Direct Get requests reading started rooms' recent messages
	HistoryFrames    atomic.Int64 // history frames sent to first joins
	HistorySkipped   atomic.Int64 // history reads of started rooms skipped: past the read rate
	DrainNotified    atomic.Int64 // viewers sent a reconnect notice by a drain
	DrainClosed      atomic.Int64 // viewers a drain closed because they had not left
	RoomsStarted     atomic.Int64 // room subscriptions started
	RoomsStopped     atomic.Int64 // room subscriptions stopped
	Heartbeats       atomic.Int64 // heartbeat frames written to viewers of quiet rooms
}
