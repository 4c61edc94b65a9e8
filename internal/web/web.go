// Package web serves liveroom's pages: the room picker at "/", the live room
// at "/room/{room}", the operator dashboard at "/admin" and their CSS and
// JavaScript under "/static/". All of it is embedded in the binary
// (go:embed), written as plain JS and CSS with no build step, and fetches
// nothing from the internet: no CDN, no web fonts.
//
// The pages talk only to the public v1 contract (docs/PROTOCOL.md):
// POST /v1/dev/token, GET /v1/dispatch, the gateway WebSocket and
// POST /v1/rooms/{room}/messages; the index GET /v1/rooms (the live rooms
// with their counts, refreshed every 5 s by index.js); the room page also GET
// /v1/rooms/{room}/sessions ("Recent streams", and the live control an
// anchor's or admin's token brings) and POST /v1/rooms/{room}/live/start
// and …/stop; the replay page …/sessions/{session}/replay; the dashboard
// also GET /v1/admin/stats,
// POST /v1/admin/gateways/{id}/drain, GET /v1/autoscale/decisions and
// /v1/rooms/{room}/moderation. They are mounted by internal/app (serve) next to
// those endpoints, on the same origin. The pages are ES modules that import
// the JavaScript SDK (sdk/js, served at /static/liveroom.js) for all of
// this: the room page follows the room through its connect, the dashboard
// and the replay page use its request helpers.
package web

import (
	"bytes"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"

	"github.com/liveroom/liveroom/internal/protocol"
	"github.com/liveroom/liveroom/internal/session"
	sdk "github.com/liveroom/liveroom/sdk/js"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// SuggestedRoom is a room the index page offers with a link.
type SuggestedRoom struct {
	ID    string
	Title string
	About string
}

// Suggested lists the rooms the index page links to. The ids are valid room
// ids (checked by the tests).
var Suggested = []SuggestedRoom{
	{ID: "lobby", Title: "Lobby", About: "Say hi — everyone lands here first."},
	{ID: "music-night", Title: "Music night", About: "Live sets and requests."},
	{ID: "speedrun", Title: "Speedrun", About: "Any% attempts, chat counts the splits."},
	{ID: "cooking", Title: "Cooking", About: "Dinner, live, with questionable timing."},
	{ID: "test-room", Title: "Test room", About: "Send gifts and likes without an audience."},
}

// sdkAsset is the name under static/ of the JavaScript SDK: the module of
// the npm package sdk/js, embedded there (go:embed cannot reach outside its
// package's directory) and served byte for byte, so the pages run the same
// code a web app installs.
const sdkAsset = "liveroom.js"

// asset is one embedded static file, with the content hash used both as its
// ETag and as the cache-busting ?v= in page links.
type asset struct {
	body        []byte
	contentType string
	hash        string
}

// contentTypes is explicit rather than mime.TypeByExtension so the answer
// does not depend on the host's /etc/mime.types.
var contentTypes = map[string]string{
	".css": "text/css; charset=utf-8",
	".js":  "text/javascript; charset=utf-8",
	".svg": "image/svg+xml",
}

// contentSecurityPolicy lets the pages load only their own scripts and
// styles. connect-src allows any ws:/wss: origin because dispatch may send a
// viewer to a gateway on another host.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self' ws: wss:; base-uri 'none'; form-action 'self'; frame-ancestors 'self'"

type handler struct {
	cfg    Config
	mux    *http.ServeMux
	pages  *template.Template
	assets map[string]*asset // by path under static/, e.g. "room.js"
}

// Config configures the pages. The zero value serves every page.
type Config struct {
	// Sessions, when set, lets the replay page answer a real 404 (with the
	// room's recent sessions) for a session the room does not have. Nil: the
	// page is served for any valid id, and says so itself once it loaded.
	Sessions Sessions
	// LiveRooms, when set, lists the rooms the index page shows under
	// "Live now" (most viewers first); the page then refreshes the list
	// from GET /v1/rooms. Nil: no room is shown as live.
	LiveRooms func() []LiveRoom
}

// LiveRoom is a room with viewers or a live session, for the index page.
type LiveRoom struct {
	ID     string
	Online int64
	// Live is true while the room has a live session.
	Live bool
	// Thumb picks the card's colour; set by the page.
	Thumb int
}

// MaxLiveRooms is the most rooms the index page shows as live.
const MaxLiveRooms = 24

// Sessions reads a room's live sessions (session.Registry).
type Sessions interface {
	// Get returns one session, or an error matching session.ErrNotFound.
	Get(ctx context.Context, room protocol.Room, id string) (session.Session, error)
	// List returns the room's sessions, newest first.
	List(ctx context.Context, room protocol.Room) ([]session.Session, error)
}

var _ Sessions = (*session.Registry)(nil)

// Handler returns the pages with the zero Config (see NewHandler).
func Handler() http.Handler { return NewHandler(Config{}) }

// NewHandler returns the http.Handler for the pages: GET / (room picker),
// GET /room/{room} (the live room), GET /replay/{room}/{session}, GET /admin
// (operator dashboard), GET /static/... (CSS, JS, icons). Invalid room ids
// answer 400 and unknown paths 404, both with a page a person can read. It
// is safe for concurrent use; each call builds a fresh handler.
func NewHandler(cfg Config) http.Handler {
	h := &handler{cfg: cfg, mux: http.NewServeMux(), assets: map[string]*asset{}}
	add := func(name string, b []byte) {
		sum := sha256.Sum256(b)
		ct := contentTypes[path.Ext(name)]
		if ct == "" {
			ct = "application/octet-stream"
		}
		h.assets[name] = &asset{body: b, contentType: ct, hash: hex.EncodeToString(sum[:6])}
	}
	add(sdkAsset, sdk.Module)
	err := fs.WalkDir(staticFS, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := staticFS.ReadFile(p)
		if err != nil {
			return err
		}
		add(strings.TrimPrefix(p, "static/"), b)
		return nil
	})
	if err != nil {
		panic("web: cannot read embedded assets: " + err.Error()) // the embed is fixed at build time
	}
	h.pages = template.Must(template.New("").Funcs(template.FuncMap{
		"static": h.staticURL,
	}).ParseFS(templateFS, "templates/*.html"))

	h.mux.HandleFunc("GET /{$}", h.index)
	h.mux.HandleFunc("GET /room/{$}", h.badRoom)
	h.mux.HandleFunc("GET /room/{room}", h.room)
	h.mux.HandleFunc("GET /replay/{room}/{session}", h.replay) // replay.go
	h.mux.HandleFunc("GET /admin", h.admin)
	h.mux.HandleFunc("GET /static/{file...}", h.static)
	h.mux.HandleFunc("/", h.notFound)
	return h
}

// ServeHTTP answers 405 for anything but GET and HEAD: every page is
// read-only, and without this check the catch-all would turn POST / into 404.
func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		h.render(w, http.StatusMethodNotAllowed, "error.html", errorPage{
			Title:   "Method not allowed",
			Message: "These pages can only be read (GET).",
		})
		return
	}
	h.mux.ServeHTTP(w, r)
}

// staticURL is the link to an embedded asset, versioned by content so the
// browser may cache it forever.
func (h *handler) staticURL(name string) (string, error) {
	a, ok := h.assets[name]
	if !ok {
		return "", &missingAssetError{name}
	}
	return "/static/" + name + "?v=" + a.hash, nil
}

type missingAssetError struct{ name string }

func (e *missingAssetError) Error() string { return "web: no embedded asset " + e.name }

type indexPage struct {
	Live  []LiveRoom
	Rooms []SuggestedRoom
	Room  string // what the user typed, echoed back on error
	Name  string
	Error string
}

type roomPage struct {
	Room  string
	Gifts []gift
}

type gift struct {
	ID    string
	Label string
}

// gifts are the buttons on the room page, in order: the default catalogue,
// the ids the uplink accepts, labelled with a capital.
var gifts = func() []gift {
	out := make([]gift, len(protocol.DefaultGifts))
	for i, id := range protocol.DefaultGifts {
		out[i] = gift{ID: id, Label: strings.ToUpper(id[:1]) + id[1:]}
	}
	return out
}()

type errorPage struct {
	Title   string
	Message string
	// Links, when set, are offered under the message (the replay 404
	// lists the room's recent sessions).
	Links []pageLink
}

type pageLink struct {
	Href, Text string
}

// index serves the room picker. The picker's form submits here with ?room=
// so that it works without JavaScript: a valid id redirects to the room.
func (h *handler) index(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	p := indexPage{Rooms: Suggested, Room: q.Get("room"), Name: q.Get("name")}
	if h.cfg.LiveRooms != nil {
		p.Live = h.cfg.LiveRooms()
		if len(p.Live) > MaxLiveRooms {
			p.Live = p.Live[:MaxLiveRooms]
		}
		for i := range p.Live {
			p.Live[i].Thumb = i % 5
		}
	}
	if !q.Has("room") {
		h.render(w, http.StatusOK, "index.html", p)
		return
	}
	room, err := protocol.ParseRoom(strings.TrimSpace(p.Room))
	if err != nil {
		p.Error = "Room ids are 1–64 characters: letters, digits, “_” and “-”."
		h.render(w, http.StatusBadRequest, "index.html", p)
		return
	}
	target := "/room/" + string(room)
	if name := strings.TrimSpace(p.Name); name != "" {
		target += "?" + url.Values{"name": {name}}.Encode()
	}
	http.Redirect(w, r, target, http.StatusSeeOther)
}

func (h *handler) room(w http.ResponseWriter, r *http.Request) {
	room, err := protocol.ParseRoom(r.PathValue("room"))
	if err != nil {
		h.badRoom(w, r)
		return
	}
	h.render(w, http.StatusOK, "room.html", roomPage{Room: string(room), Gifts: gifts})
}

// admin serves the operator dashboard. The page itself holds no data: it
// reads everything through the admin API with a token the operator gives it.
func (h *handler) admin(w http.ResponseWriter, r *http.Request) {
	h.render(w, http.StatusOK, "admin.html", nil)
}

func (h *handler) badRoom(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("room")
	msg := "A room id is 1–64 characters: letters, digits, “_” and “-”."
	if id != "" {
		if len(id) > 80 {
			id = id[:80] + "…"
		}
		msg = "“" + id + "” is not a room id. " + msg
	}
	h.render(w, http.StatusBadRequest, "error.html", errorPage{Title: "Not a room", Message: msg})
}

func (h *handler) notFound(w http.ResponseWriter, r *http.Request) {
	h.render(w, http.StatusNotFound, "error.html", errorPage{
		Title:   "Page not found",
		Message: "There is nothing at " + r.URL.Path + ".",
	})
}

// static serves an embedded asset. A link carrying the asset's current hash
// (?v=, as the pages write it) is immutable; any other request revalidates
// with the ETag so an old link never pins stale code.
func (h *handler) static(w http.ResponseWriter, r *http.Request) {
	a, ok := h.assets[r.PathValue("file")]
	if !ok {
		h.notFound(w, r)
		return
	}
	hd := w.Header()
	hd.Set("Content-Type", a.contentType)
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("ETag", `"`+a.hash+`"`)
	if r.URL.Query().Get("v") == a.hash {
		hd.Set("Cache-Control", "public, max-age=31536000, immutable")
	} else {
		hd.Set("Cache-Control", "no-cache")
	}
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(a.body))
}

// render executes a page into memory first so a template error becomes a
// clean 500 rather than half a page.
func (h *handler) render(w http.ResponseWriter, status int, name string, data any) {
	var buf bytes.Buffer
	if err := h.pages.ExecuteTemplate(&buf, name, data); err != nil {
		http.Error(w, "cannot render page", http.StatusInternalServerError)
		return
	}
	hd := w.Header()
	hd.Set("Content-Type", "text/html; charset=utf-8")
	hd.Set("Cache-Control", "no-cache")
	hd.Set("Content-Security-Policy", contentSecurityPolicy)
	hd.Set("X-Content-Type-Options", "nosniff")
	// Pages may carry ?token= in their URL; never leak it to other origins.
	hd.Set("Referrer-Policy", "no-referrer")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}
