// Package router is the outermost HTTP handler of every liveroom process:
// exact routes, the send path, room routes, the admin and server APIs and
// the pages, with JSON 404 and 405 and no path cleaning or redirects.
package router

import (
	"fmt"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strings"

	"github.com/liveroom/liveroom/internal/protocol"
)

// Route is one endpoint of a Router: an exact path, the methods it answers
// and its handler.
type Route struct {
	// Path is matched exactly against the request's decoded path, with no
	// cleaning and no trailing-slash subtree.
	Path string
	// Methods are the methods served; GET implies HEAD. Empty means every
	// method reaches Handler, which then answers wrong ones itself.
	Methods []string
	// Handler serves the path.
	Handler http.Handler
}

// Config lists what a Router serves.
type Config struct {
	// Routes are the exact paths served. GET /healthz is always added.
	Routes []Route
	// Send, when set, gets every send path /v1/rooms/{room}/messages,
	// including those with an empty, dotted or doubled room segment that a
	// ServeMux would redirect (/v1/rooms//messages, /v1/rooms/a/../b/messages):
	// it must answer them itself (the uplink answers 400 invalid_room).
	Send http.Handler
	// Pages, when set, gets every path outside /v1/ that no route serves (the
	// web pages, with their own HTML 404). Nil answers them with JSON 404.
	Pages http.Handler
	// Admin, when set, gets every path under /v1/admin/ (it answers its own
	// 404 and 405 as JSON).
	Admin http.Handler
	// Server, when set, gets every path under /v1/server/: the server API
	// for the platform's backend (uplink.ServerRoutes), which authenticates
	// its API key first and answers its own 404 and 405 as JSON.
	Server http.Handler
	// RoomRoutes are the endpoints under /v1/rooms/{room}/ other than the
	// send path. The router validates the room id (400 invalid_room) before
	// any of them runs.
	RoomRoutes []RoomRoute
}

// RoomRoute is an endpoint under /v1/rooms/{room}/. Pattern is the rest of
// the path after the room, segments separated by "/", where a segment
// "{name}" matches any one non-empty segment and is set as r.PathValue(name)
// ("live/start", "sessions/{session}/replay"). The room id is validated and
// set as r.PathValue("room") before Handler runs; other wildcard segments
// are the handler's to validate.
type RoomRoute struct {
	Pattern string
	Methods []string
	Handler http.Handler
}

// Router is the outermost HTTP handler of every liveroom process. Unlike
// http.ServeMux it never cleans a path and never redirects: a client follows a
// redirect of a POST as a GET, and a send path with `//` or `..` in it only
// ever holds a bad room id. Every error it answers itself is JSON: 404
// not_found for a path it does not know, 405 method_not_allowed with an Allow
// header for a known path and a wrong method. It is immutable once built and
// safe for concurrent use.
type Router struct {
	routes map[string]Route
	rooms  []RoomRoute
	send   http.Handler
	pages  http.Handler
	admin  http.Handler
	server http.Handler
}

var _ http.Handler = (*Router)(nil)

// sendPrefix and sendSuffix frame uplink.SendPath.
const (
	sendPrefix = "/v1/rooms/"
	sendSuffix = "/messages"
)

// NewRouter builds a Router. It panics on a route without a path or a
// handler, or on a path listed twice, as http.ServeMux does on a bad pattern:
// routes are fixed in the code.
func New(cfg Config) *Router {
	rt := &Router{routes: map[string]Route{}, send: cfg.Send, pages: cfg.Pages, admin: cfg.Admin, server: cfg.Server}
	routes := append([]Route{{Path: "/healthz", Methods: []string{http.MethodGet}, Handler: http.HandlerFunc(healthz)}}, cfg.Routes...)
	for _, r := range routes {
		if r.Path == "" || r.Handler == nil {
			panic(fmt.Sprintf("router: route %q without a path or handler", r.Path))
		}
		if _, dup := rt.routes[r.Path]; dup && r.Path != "/healthz" {
			panic(fmt.Sprintf("router: route %q listed twice", r.Path))
		}
		rt.routes[r.Path] = r
	}
	for _, r := range cfg.RoomRoutes {
		if r.Pattern == "" || r.Handler == nil || strings.HasPrefix(r.Pattern, "/") || strings.HasSuffix(r.Pattern, "/") {
			panic(fmt.Sprintf("router: room route %q without a pattern or handler", r.Pattern))
		}
		for _, o := range rt.rooms {
			if o.Pattern == r.Pattern {
				panic(fmt.Sprintf("router: room route %q listed twice", r.Pattern))
			}
		}
		rt.rooms = append(rt.rooms, r)
	}
	return rt
}

func healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain")
	_, _ = w.Write([]byte("ok\n"))
}

// ServeHTTP implements http.Handler.
func (rt *Router) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	if rt.send != nil && isSendPath(r) {
		rt.send.ServeHTTP(w, r)
		return
	}
	if rt.admin != nil && strings.HasPrefix(p, "/v1/admin/") {
		rt.admin.ServeHTTP(w, r)
		return
	}
	if rt.server != nil && strings.HasPrefix(p, "/v1/server/") {
		rt.server.ServeHTTP(w, r)
		return
	}
	if route, ok := rt.routes[p]; ok {
		serveRoute(w, r, route.Methods, route.Handler)
		return
	}
	if len(rt.rooms) > 0 && strings.HasPrefix(p, sendPrefix) && rt.serveRoom(w, r) {
		return
	}
	if rt.pages != nil && p != "/v1" && !strings.HasPrefix(p, "/v1/") {
		rt.pages.ServeHTTP(w, r)
		return
	}
	shown := p
	if rs := []rune(p); len(rs) > 100 {
		shown = string(rs[:100]) + "…"
	}
	protocol.WriteError(w, protocol.Errorf(http.StatusNotFound, protocol.CodeNotFound, "",
		fmt.Sprintf("no endpoint at %q; docs/PROTOCOL.md lists the API", shown)))
}

// serveRoute runs h when it serves r's method, else answers 405.
func serveRoute(w http.ResponseWriter, r *http.Request, methods []string, h http.Handler) {
	if allow, ok := (Route{Methods: methods}).allows(r.Method); !ok {
		w.Header().Set("Allow", allow)
		protocol.WriteError(w, protocol.Errorf(http.StatusMethodNotAllowed, protocol.CodeMethodNotAllowed, "",
			fmt.Sprintf("method %s is not allowed here; use %s", r.Method, allow)))
		return
	}
	h.ServeHTTP(w, r)
}

// serveRoom serves r when its path is /v1/rooms/{room}/<pattern> of a room
// route, and reports whether it did. Segments are split on the escaped path,
// so an escaped slash stays inside its segment (and fails validation).
func (rt *Router) serveRoom(w http.ResponseWriter, r *http.Request) bool {
	rest, ok := strings.CutPrefix(r.URL.EscapedPath(), sendPrefix)
	if !ok {
		return false
	}
	segs := strings.Split(rest, "/")
	if len(segs) < 2 {
		return false
	}
	for _, route := range rt.rooms {
		pat := strings.Split(route.Pattern, "/")
		if len(pat) != len(segs)-1 {
			continue
		}
		vals := map[string]string{}
		match := true
		for i, ps := range pat {
			seg, err := url.PathUnescape(segs[i+1])
			if err != nil {
				match = false
				break
			}
			if name, ok := strings.CutPrefix(ps, "{"); ok && strings.HasSuffix(name, "}") {
				if seg == "" {
					match = false
					break
				}
				vals[strings.TrimSuffix(name, "}")] = seg
			} else if seg != ps {
				match = false
				break
			}
		}
		if !match {
			continue
		}
		raw, err := url.PathUnescape(segs[0])
		if err != nil {
			raw = segs[0]
		}
		room, err := protocol.ParseRoom(raw)
		if err != nil {
			protocol.WriteError(w, protocol.Errorf(http.StatusBadRequest, protocol.CodeInvalidRoom, "room", err.Error()))
			return true
		}
		r.SetPathValue("room", string(room))
		for k, v := range vals {
			r.SetPathValue(k, v)
		}
		serveRoute(w, r, route.Methods, route.Handler)
		return true
	}
	return false
}

// Endpointer is a handler that lists its routes (the admin API does).
type Endpointer interface {
	Endpoints() []protocol.Endpoint
}

// PagesPattern stands for the web pages (Config.Pages) in Endpoints:
// every path outside /v1/ that no route serves.
const PagesPattern = "/{page...}"

// Endpoints lists every route the router serves, sorted: its exact routes,
// GET /healthz included; the send path; the room routes; the admin API's
// routes (when its handler is an Endpointer, else "/v1/admin/{...}" with
// "*"); the pages (PagesPattern). A route with no Methods lists "*". The
// authorization matrix test walks this list, so that a route cannot be
// added without an entry there.
func (rt *Router) Endpoints() []protocol.Endpoint {
	methods := func(m []string) []string {
		if len(m) == 0 {
			return []string{"*"}
		}
		return slices.Clone(m)
	}
	var out []protocol.Endpoint
	for _, r := range rt.routes {
		out = append(out, protocol.Endpoint{Pattern: r.Path, Methods: methods(r.Methods)})
	}
	if rt.send != nil {
		out = append(out, protocol.Endpoint{Pattern: sendPrefix + "{room}" + sendSuffix, Methods: []string{http.MethodPost}})
	}
	for _, r := range rt.rooms {
		out = append(out, protocol.Endpoint{Pattern: sendPrefix + "{room}/" + r.Pattern, Methods: methods(r.Methods)})
	}
	if rt.admin != nil {
		if ep, ok := rt.admin.(Endpointer); ok {
			out = append(out, ep.Endpoints()...)
		} else {
			out = append(out, protocol.Endpoint{Pattern: "/v1/admin/{...}", Methods: []string{"*"}})
		}
	}
	if rt.pages != nil {
		out = append(out, protocol.Endpoint{Pattern: PagesPattern, Methods: []string{http.MethodGet}})
	}
	slices.SortFunc(out, func(a, b protocol.Endpoint) int { return strings.Compare(a.Pattern, b.Pattern) })
	return out
}

// allows reports whether the route serves method, and else what to put in
// the Allow header.
func (r Route) allows(method string) (string, bool) {
	if len(r.Methods) == 0 {
		return "", true
	}
	allow := make([]string, 0, len(r.Methods)+1)
	for _, m := range r.Methods {
		if m == method || (m == http.MethodGet && method == http.MethodHead) {
			return "", true
		}
		allow = append(allow, m)
		if m == http.MethodGet && !slices.Contains(r.Methods, http.MethodHead) {
			allow = append(allow, http.MethodHead)
		}
	}
	return strings.Join(allow, ", "), false
}

// isSendPath reports whether r is for the send handler: /v1/rooms/{room}/messages
// with one room segment, or any such path that cleaning would change (which
// the send handler rejects as a bad room). A clean path with more segments,
// /v1/rooms/a/b/messages, is no endpoint; an escaped slash, /v1/rooms/a%2Fb/messages,
// is one segment and a bad room id.
func isSendPath(r *http.Request) bool {
	p := r.URL.Path
	if !strings.HasPrefix(p, sendPrefix) || !strings.HasSuffix(p, sendSuffix) || len(p) < len(sendPrefix)+len(sendSuffix) {
		return false
	}
	if path.Clean(p) != p {
		return true
	}
	ep := r.URL.EscapedPath()
	mid, ok := strings.CutPrefix(ep, sendPrefix)
	if !ok {
		return false
	}
	mid, ok = strings.CutSuffix(mid, sendSuffix)
	return ok && mid != "" && !strings.Contains(mid, "/")
}
