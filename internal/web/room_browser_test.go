package web_test

import (
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/liveroom/liveroom/internal/gateway"
	"github.com/liveroom/liveroom/internal/protocol"
	"github.com/liveroom/liveroom/internal/testutil"
)

// sendControlsJS lists the state of everything on the room page that
// sends: the comment box, its button, the gift and like buttons.
const sendControlsJS = `[document.getElementById('text'), document.querySelector('#send button[type="submit"]'),
  ...document.querySelectorAll('button[data-gift]'), document.getElementById('like')]`

// TestRoomPageNeedsToken opens a room on a server with a secret and no
// ?token: the status says so in two words and fits the header, a bar under
// it says what to do, and nothing that sends looks usable. With a token the
// page goes live and sending comes back.
func TestRoomPageNeedsToken(t *testing.T) {
	browser := newBrowser(t)
	n := startNode(t, testutil.Secret, gateway.Config{})
	for _, vp := range []struct {
		name string
		w, h int64
	}{{"desktop", 1280, 800}, {"phone", 390, 844}} {
		t.Run(vp.name, func(t *testing.T) {
			b := newTab(t, browser, "no-token-"+vp.name)
			b.do(chromedp.EmulateViewport(vp.w, vp.h))
			b.do(chromedp.Navigate(n.URL() + "/room/demo"))
			b.waitJS(15*time.Second, `window.liveroom.state === 'offline' && !document.getElementById('bar').hidden`, "offline with the bar")
			if got := eval[string](b, `document.getElementById('status-label').textContent`); got != "Offline — token needed" {
				t.Errorf("status %q", got)
			}
			// The header holds the status: nothing overflows it or the page.
			if o := eval[string](b, `(() => { const h = document.querySelector('.topbar'), s = document.getElementById('status').getBoundingClientRect();
				return [h.scrollWidth > h.clientWidth, s.right > window.innerWidth + 0.5, document.documentElement.scrollWidth > window.innerWidth].join(); })()`); o != "false,false,false" {
				t.Errorf("header overflows, status past the edge, page overflows: %s", o)
			}
			bar := eval[string](b, `document.getElementById('bar').textContent`)
			for _, want := range []string{"This server needs a token", "?token=", "liveroom token --user"} {
				if !strings.Contains(bar, want) {
					t.Errorf("bar %q does not say %q", bar, want)
				}
			}
			if got := eval[string](b, sendControlsJS+`.map(e => e.disabled && getComputedStyle(e).opacity < 0.7).join()`); strings.Contains(got, "false") {
				t.Errorf("send controls disabled and dimmed: %s", got)
			}
			if got := eval[string](b, `document.getElementById('text').placeholder`); got != "Sending needs a token" {
				t.Errorf("comment box placeholder %q", got)
			}
			b.screenshot("room-no-token-" + vp.name + ".png")
			b.checkClean()
		})
	}

	b := newTab(t, browser, "with-token")
	b.do(chromedp.EmulateViewport(1280, 800))
	b.do(chromedp.Navigate(n.URL() + "/room/demo?token=" + testutil.Token(t, "vera", protocol.RoleViewer)))
	b.waitJS(15*time.Second, `window.liveroom.state === 'live'`, "live with a token")
	if got := eval[string](b, sendControlsJS+`.map(e => e.disabled).join()`); strings.Contains(got, "true") {
		t.Errorf("send controls with a token: disabled %s", got)
	}
	if !eval[bool](b, `document.getElementById('bar').hidden && document.getElementById('live-ctl').hidden`) {
		t.Error("bar or the anchor's live control shown to a viewer with a token")
	}
	b.checkClean()
}

// TestAnchorGoesLiveInBrowser: the room's anchor starts and stops its live
// session from the room page; viewers see the notices and find the replay
// under "Recent streams"; neither a viewer nor another anchor can start or
// stop it, from the page or the API.
func TestAnchorGoesLiveInBrowser(t *testing.T) {
	browser := newBrowser(t)
	n := startNode(t, testutil.Secret, gateway.Config{})
	const room = "show"
	anchorTok := testutil.AnchorToken(t, "dj", room)
	viewerTok := testutil.Token(t, "fan", protocol.RoleViewer)

	anchor := newTab(t, browser, "anchor")
	anchor.do(chromedp.EmulateViewport(1280, 800))
	anchor.do(chromedp.Navigate(n.URL() + "/room/" + room + "?token=" + anchorTok))
	anchor.waitJS(15*time.Second, `window.liveroom.state === 'live' && !document.getElementById('live-ctl').hidden && document.getElementById('live-state').textContent === 'Not live' && !document.getElementById('live-btn').disabled`, "the anchor's control, not live")
	viewer := newTab(t, browser, "viewer")
	viewer.do(chromedp.EmulateViewport(1280, 800))
	viewer.do(chromedp.Navigate(n.URL() + "/room/" + room + "?token=" + viewerTok))
	viewer.waitJS(15*time.Second, `window.liveroom.state === 'live'`, "viewer live")
	if !eval[bool](viewer, `document.getElementById('live-ctl').hidden`) {
		t.Error("a viewer sees the live control")
	}

	// Go live.
	anchor.do(chromedp.Click(chromedp.ID("live-btn")))
	anchor.waitJS(10*time.Second, `window.liveroom.lastLive && window.liveroom.lastLive.action === 'start' && window.liveroom.lastLive.session && document.getElementById('live-state').textContent === 'Live now' && document.getElementById('live-btn').textContent === 'End live'`, "live now")
	id := eval[string](anchor, `window.liveroom.lastLive.session`)
	viewer.waitJS(10*time.Second, `[...document.querySelectorAll('#ticker li.notice')].some(li => li.textContent.includes('started'))`, "the live_start notice at the viewer")

	// Strangers: a viewer's and another anchor's calls are refused, and so
	// is a call without a token.
	base := n.URL() + "/v1/rooms/" + room + "/live/"
	for _, c := range []struct {
		who, tok string
		want     int
	}{{"viewer", viewerTok, http.StatusForbidden}, {"another anchor", testutil.Token(t, "rival", protocol.RoleAnchor), http.StatusForbidden}, {"no token", "", http.StatusUnauthorized}} {
		for _, action := range []string{"start", "stop"} {
			if st := apiCall(t, http.MethodPost, base+action, c.tok, "", nil); st != c.want {
				t.Errorf("%s: live/%s answered %d, want %d", c.who, action, st, c.want)
			}
		}
	}
	// From the page of another anchor: the control is there, the server
	// refuses, the page says so and nothing changes.
	rival := newTab(t, browser, "rival")
	rival.do(chromedp.EmulateViewport(1280, 800))
	rival.do(chromedp.Navigate(n.URL() + "/room/" + room + "?token=" + testutil.Token(t, "rival", protocol.RoleAnchor)))
	rival.waitJS(15*time.Second, `document.getElementById('live-state').textContent === 'Live now' && !document.getElementById('live-btn').disabled`, "the rival's control, live")
	rival.do(chromedp.Click(chromedp.ID("live-btn")))
	rival.waitJS(10*time.Second, `window.liveroom.lastLive && window.liveroom.lastLive.error === 'forbidden' && document.getElementById('toast').textContent.includes('anchor')`, "the refusal shown")

	post(t, n.URL(), room, viewerTok, map[string]any{"type": "danmaku", "text": "on the record"})
	anchor.do(chromedp.Click(chromedp.ID("live-btn")))
	anchor.waitJS(10*time.Second, `window.liveroom.lastLive.action === 'stop' && !window.liveroom.lastLive.error && document.getElementById('live-state').textContent === 'Not live'`, "not live again")
	viewer.waitJS(10*time.Second, `[...document.querySelectorAll('#ticker li.notice')].some(li => li.textContent.includes('ended'))`, "the live_stop notice at the viewer")

	// The viewer opens "Recent streams" and follows the replay link.
	viewer.do(chromedp.Click(chromedp.CSS(`#sessions-box summary`)))
	viewer.waitJS(10*time.Second, `document.querySelector('#sessions li[data-session="`+id+`"] a')`, "the session listed")
	href := eval[string](viewer, `document.querySelector('#sessions li[data-session="`+id+`"] a').getAttribute('href')`)
	if href != "/replay/"+room+"/"+id || !regexp.MustCompile(` · \d+:\d\d$`).MatchString(eval[string](viewer, `document.querySelector('#sessions li[data-session="`+id+`"]').textContent`)) {
		t.Errorf("session listed as %q → %s", eval[string](viewer, `document.querySelector('#sessions li').textContent`), href)
	}
	viewer.do(chromedp.Click(chromedp.CSS(`#sessions li[data-session="` + id + `"] a`)))
	viewer.waitJS(15*time.Second, `location.pathname === `+jsString(href)+` && window.lrReplay && window.lrReplay.loaded`, "the replay page")

	// A session the room does not have: a real 404 page that links the
	// room's streams.
	viewer.do(chromedp.Navigate(n.URL() + "/replay/" + room + "/20200101-000000-none"))
	if got := eval[string](viewer, `document.querySelector('h1').textContent + '|' + [...document.querySelectorAll('.error-links a')].map(a => a.getAttribute('href')).join()`); got != fmt.Sprintf("No such session|/replay/%s/%s,/room/%s", room, id, room) {
		t.Errorf("404 page: %s", got)
	}
	anchor.checkClean()
	viewer.checkClean()
	rival.checkClean()
}
