package uplink

import (
	"context"
	"crypto/sha256"
	"net/http"
	"path"
	"strings"
	"sync"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/liveroom/liveroom/internal/apikey"
	"github.com/liveroom/liveroom/internal/presence"
	"github.com/liveroom/liveroom/internal/protocol"
)

// The server API is how the platform's backend talks to liveroom: paid gifts
// after payment, announcements, notices to one user, batches of those, and
// room state. It is authenticated by API keys (internal/apikey), never by a
// user's token; see docs/PROTOCOL.md "Server API" and docs/SECURITY.md.

// ServerPrefix starts every server API path.
const ServerPrefix = "/v1/server/"

// PublicRoomsPath lists the live rooms with their online counts for
// everyone (the index page); the server API's GET /v1/server/rooms says the
// same to the backend, with more rooms per answer.
const PublicRoomsPath = "/v1/rooms"

// Limits of the server API (docs/PROTOCOL.md).
const (
	// MaxBatch is the most messages of one POST /v1/server/batch.
	MaxBatch = 100
	// MaxAnnounceRooms is the most rooms of one announcement.
	MaxAnnounceRooms = 1000
	// MaxServerBody bounds a server API body: a batch of MaxBatch messages,
	// or an announcement to MaxAnnounceRooms rooms of 64 characters.
	MaxServerBody = 128 << 10
	// MaxOrderIDLen is the longest order id.
	MaxOrderIDLen = 128
	// MaxAmount bounds a paid gift's amount in minor units.
	MaxAmount = 1_000_000_000_000
	// MaxLiveRooms is the most rooms a live-room list returns.
	MaxLiveRooms = 1000
	// publicLiveRooms is the most rooms GET /v1/rooms returns.
	publicLiveRooms = 50
)

// ServerRoute is one route of the server API.
type ServerRoute struct {
	Method string
	// Path is the route in http.ServeMux syntax: {room} and {user} are
	// validated room and user ids.
	Path string
	// About says what it does, for docs and tests.
	About string
}

// ServerRoutes lists every route of the server API, in one place: the
// handler is built from it, and tests walk it (every route refuses a
// caller without a valid API key, and any user token). Every route takes
// Authorization: Bearer <API key>, and nothing else.
var ServerRoutes = []ServerRoute{
	{http.MethodPost, ServerPrefix + "rooms/{room}/gifts", "a paid gift on behalf of a user; order_id is the idempotency key"},
	{http.MethodPost, ServerPrefix + "announcements", "a notice to one or many rooms (up to MaxAnnounceRooms)"},
	{http.MethodPost, ServerPrefix + "rooms/{room}/users/{user}/notices", "a notice to one user's connections in a room"},
	{http.MethodPost, ServerPrefix + "batch", "up to MaxBatch gifts, announcements and notices, a result per message"},
	{http.MethodGet, ServerPrefix + "rooms/{room}", "a room's fleet-wide online count, like total and live session"},
	{http.MethodGet, ServerPrefix + "rooms", "the live rooms with their online counts"},
}

// ServerAPIConfig is what the server API needs besides the uplink.
type ServerAPIConfig struct {
	// Keys authenticate the platform's backend. Required.
	Keys *apikey.Set
	// Presence gives fleet-wide online counts. Required; started by the
	// caller.
	Presence *presence.Tracker
}

// serverAPI serves ServerRoutes. It is safe for concurrent use.
type serverAPI struct {
	s      *Server
	cfg    ServerAPIConfig
	mux    *http.ServeMux
	kvMu   sync.Mutex
	kv     jetstream.KeyValue // room state (likes), opened on first use
	orders jetstream.KeyValue // paid orders, opened on first use
}

// ServerHandler returns the handler of every path under ServerPrefix. It
// authenticates first, so a caller without a valid key learns nothing, not
// even which paths exist (401 before 404 or 405).
func (s *Server) ServerHandler(cfg ServerAPIConfig) http.Handler {
	if cfg.Keys == nil || cfg.Presence == nil {
		panic("uplink: ServerHandler needs Keys and Presence")
	}
	a := &serverAPI{s: s, cfg: cfg, mux: http.NewServeMux()}
	handlers := map[string]http.HandlerFunc{
		ServerRoutes[0].Path: a.serveGift,
		ServerRoutes[1].Path: a.serveAnnounce,
		ServerRoutes[2].Path: a.serveNotice,
		ServerRoutes[3].Path: a.serveBatch,
		ServerRoutes[4].Path: a.serveRoom,
		ServerRoutes[5].Path: a.serveRooms,
	}
	for _, r := range ServerRoutes {
		a.mux.Handle(r.Method+" "+r.Path, handlers[r.Path])
		allow := r.Method
		if r.Method == http.MethodGet {
			allow += ", HEAD"
		}
		a.mux.HandleFunc(r.Path, func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Allow", allow)
			protocol.WriteError(w, protocol.Errorf(http.StatusMethodNotAllowed, protocol.CodeMethodNotAllowed, "", "use "+allow))
		})
	}
	a.mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) { serverNotFound(w) })
	return a
}

func serverNotFound(w http.ResponseWriter) {
	protocol.WriteError(w, protocol.Errorf(http.StatusNotFound, protocol.CodeNotFound, "", "no server API endpoint here; docs/PROTOCOL.md lists them"))
}

// ServeHTTP implements http.Handler.
func (a *serverAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	name, err := a.cfg.Keys.Authenticate(r)
	if err != nil {
		a.s.fail(w, r, err)
		return
	}
	// ServeMux would redirect a path it cleans; a server path with // or
	// .. in it is no endpoint.
	if !strings.HasPrefix(r.URL.Path, ServerPrefix) || path.Clean(r.URL.Path) != r.URL.Path || strings.Contains(r.URL.RawPath, "%2") {
		serverNotFound(w)
		return
	}
	a.s.log.Debug("server api", "key", name, "method", r.Method, "path", r.URL.Path)
	a.mux.ServeHTTP(w, r)
}

// bucket opens the bucket name into *kv on first use (then keeps it).
func (a *serverAPI) bucket(ctx context.Context, name string, kv *jetstream.KeyValue) (jetstream.KeyValue, error) {
	a.kvMu.Lock()
	defer a.kvMu.Unlock()
	if *kv != nil {
		return *kv, nil
	}
	b, err := a.s.cfg.JS.KeyValue(ctx, name)
	if err != nil {
		return nil, err
	}
	*kv = b
	return b, nil
}

// orderGiftID is the id of the paid gift of an order: "p" + 24 base32
// characters of sha256(order id). It depends on the order id alone, so a
// retry of an order (whatever else it carries) is the same message to the
// stream's de-duplication, and it cannot collide with a user gift ("g…") or
// a nuid.
func orderGiftID(orderID string) string {
	h := sha256.Sum256([]byte("order|" + orderID))
	return "p" + giftIDEncoding.EncodeToString(h[:15])
}

// announceID is the id of an announcement to room with the caller's key:
// "a" + 24 base32 characters.
func announceID(room protocol.Room, key string) string {
	h := sha256.Sum256([]byte("announce|" + string(room) + "|" + key))
	return "a" + giftIDEncoding.EncodeToString(h[:15])
}
