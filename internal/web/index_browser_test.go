package web_test

import (
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/liveroom/liveroom/internal/web"
)

// TestIndexShowsLiveRooms: the index renders the live rooms it is given
// with their counts and a LIVE badge only on rooms with a live session, then
// follows GET /v1/rooms: new counts and rooms appear, a room id that is not
// one is never rendered, and with no live room the page says so and offers
// rooms to try.
func TestIndexShowsLiveRooms(t *testing.T) {
	var mu sync.Mutex
	answer := `{"rooms":[{"room":"big","online":120,"live":true,"session":"s1"},{"room":"quiet","online":3,"live":false}],"total":2}`
	set := func(s string) { mu.Lock(); answer = s; mu.Unlock() }
	pages := web.NewHandler(web.Config{LiveRooms: func() []web.LiveRoom {
		return []web.LiveRoom{{ID: "big", Online: 120, Live: true}, {ID: "quiet", Online: 3}}
	}})
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/rooms", func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(answer))
	})
	mux.Handle("/", pages)
	srv := httptest.NewServer(mux)
	defer srv.Close()

	b := newTab(t, newBrowser(t), "index")
	b.do(chromedp.Navigate(srv.URL + "/"))
	cards := `Array.from(document.querySelectorAll('#live-rooms .card')).map(a => a.getAttribute('href') + '|' + a.querySelector('.card-count').textContent + '|' + (a.querySelector('.badge-live') ? 'LIVE' : '')).join(',')`
	if got := eval[string](b, cards); got != "/room/big|120 watching|LIVE,/room/quiet|3 watching|" {
		t.Fatalf("first render: %s", got)
	}
	if !eval[bool](b, `document.getElementById('suggested').hidden && document.getElementById('live-empty').hidden`) {
		t.Error("rooms to try or the empty hint shown while rooms are live")
	}
	set(`{"rooms":[{"room":"quiet","online":250,"live":true},{"room":"<img src=x onerror=alert(1)>","online":99},{"room":"new-room","online":1}],"total":3}`)
	b.waitJS(15*time.Second, cards+` === "/room/quiet|250 watching|LIVE,/room/new-room|1 watching|"`, "the refreshed list")
	if eval[int](b, `document.querySelectorAll('img').length`) != 0 {
		t.Error("a room id was rendered as HTML")
	}
	set(`{"rooms":[],"total":0}`)
	b.waitJS(15*time.Second, `document.querySelectorAll('#live-rooms .card').length === 0 && !document.getElementById('live-empty').hidden && !document.getElementById('suggested').hidden`, "the empty state")
	if n := eval[int](b, `document.querySelectorAll('#suggested .card').length`); n != len(web.Suggested) {
		t.Errorf("%d rooms to try", n)
	}
	b.checkClean()
}
