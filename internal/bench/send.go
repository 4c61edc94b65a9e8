package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/liveroom/liveroom/client"
	"github.com/liveroom/liveroom/internal/auth"
	"github.com/liveroom/liveroom/internal/protocol"
)

// senders post danmaku, gifts and likes through the uplink at fixed rates
// (open loop: a send is due at its scheduled time whatever the answers
// before it did). Latency runs from the scheduled time to the answer, so a
// slow uplink shows as latency and is not hidden by the bench waiting.
type senders struct {
	s     *Scenario
	users []*client.Sender
	// names are the senders' user ids, and server the server API client
	// for their gifts when Scenario.APIKey is set (nil otherwise).
	names  []string
	server *client.Server
	texts  *danmakuTexts
	hc     *http.Client
	rooms  []string
	// roomsPath is the uplink URL's path + "/v1/rooms/", for the raw
	// sender's request line; serverPath the same for the server API
	// (path + "/v1/server/rooms/").
	roomsPath  string
	serverPath string
	mu         sync.Mutex
	lat        Hists
	status     map[string]map[string]int // class → status → count
	acked      []AckedGift
	sent       [3]atomic.Int64
	ok         [3]atomic.Int64
	skipped    [3]atomic.Int64
	n429       atomic.Int64
	// nClientGifts counts 403 client_gifts_disabled answers.
	nClientGifts atomic.Int64
}

var sendClasses = [3]string{"danmaku", "gift", "like"}

type sendJob struct {
	class int
	room  string
	at    time.Time
	n     int64
}

// newSenders mints (or fetches) one token per sender user.
func newSenders(ctx context.Context, s *Scenario, rooms []string) (*senders, error) {
	x := &senders{s: s, rooms: rooms, lat: Hists{}, status: map[string]map[string]int{}}
	var err error
	if x.texts, err = loadTexts(s.Texts); err != nil {
		return nil, err
	}
	x.hc = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		MaxIdleConns: s.SendWorkers, MaxIdleConnsPerHost: s.SendWorkers, IdleConnTimeout: 60 * time.Second,
	}}
	if u, err := url.Parse(s.UplinkURL); err == nil {
		x.roomsPath = strings.TrimSuffix(u.Path, "/") + "/v1/rooms/"
		x.serverPath = strings.TrimSuffix(u.Path, "/") + "/v1/server/rooms/"
	}
	prefix := "bs" + randHex(3) + "-"
	var signer *auth.Signer
	if s.Secret != "" {
		var err error
		if signer, err = auth.NewSigner([]byte(s.Secret)); err != nil {
			return nil, fmt.Errorf("cannot mint tokens: %w", err)
		}
	}
	x.users = make([]*client.Sender, s.Senders)
	x.names = make([]string, s.Senders)
	if s.APIKey != "" {
		x.server = &client.Server{BaseURL: s.UplinkURL, APIKey: s.APIKey, HTTP: x.hc}
	}
	var wg sync.WaitGroup
	var firstErr error
	var errMu sync.Mutex
	sem := make(chan struct{}, 16)
	for i := range x.users {
		user := prefix + strconv.Itoa(i)
		x.names[i] = user
		var tok string
		if signer != nil {
			var err error
			if tok, err = signer.Mint(protocol.User(user), user, protocol.RoleViewer, 24*time.Hour); err != nil {
				return nil, fmt.Errorf("cannot mint a token for sender %s: %w", user, err)
			}
			x.users[i] = &client.Sender{BaseURL: s.UplinkURL, Token: tok, HTTP: x.hc}
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			tok, err := client.DevToken(ctx, s.UplinkURL, user, "", protocol.RoleViewer)
			if err != nil {
				errMu.Lock()
				firstErr = errors.Join(firstErr, err)
				errMu.Unlock()
				return
			}
			x.users[i] = &client.Sender{BaseURL: s.UplinkURL, Token: tok, HTTP: x.hc}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return nil, fmt.Errorf("cannot get dev tokens for senders (give --secret for a server with a JWT secret): %w", firstErr)
	}
	return x, nil
}

// run sends for d and returns when every request has been answered.
func (x *senders) run(ctx context.Context, d time.Duration) {
	rates := [3]float64{x.s.DanmakuRate, x.s.GiftRate, x.s.LikeRate}
	jobs := make(chan sendJob, x.s.SendWorkers*4)
	var wg sync.WaitGroup
	for range x.s.SendWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var rc *rawConn
			if x.s.Sender == "raw" {
				rc, _ = newRawConn(x.s.UplinkURL) // validated with the scenario
				defer rc.close()
			}
			for j := range jobs {
				x.do(ctx, j, rc)
			}
		}()
	}
	start := time.Now()
	var issued [3]int64
	var rr int64
	t := time.NewTicker(time.Millisecond)
	defer t.Stop()
	end := start.Add(d)
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case now := <-t.C:
			if now.After(end) {
				now = end
			}
			el := now.Sub(start).Seconds()
			for c := range rates {
				due := int64(rates[c] * el)
				for issued[c] < due {
					issued[c]++
					room := x.rooms[0]
					if x.s.Spread {
						room = x.rooms[rr%int64(len(x.rooms))]
						rr++
					}
					at := start.Add(time.Duration(float64(issued[c]) / rates[c] * float64(time.Second)))
					select {
					case jobs <- sendJob{class: c, room: room, at: at, n: issued[c]}:
					default:
						x.skipped[c].Add(1) // every worker busy: the bench cannot keep the rate
					}
				}
			}
			if !now.Before(end) {
				break loop
			}
		}
	}
	close(jobs)
	wg.Wait()
}

func (x *senders) do(ctx context.Context, j sendJob, rc *rawConn) {
	i := j.n % int64(len(x.users))
	u := x.users[i]
	if d := time.Until(j.at); d > 0 {
		time.Sleep(d)
	}
	x.sent[j.class].Add(1)
	var res client.SendResult
	var err error
	switch {
	case j.class == 1 && x.server != nil && rc != nil:
		res, err = x.rawPaidGift(rc, j, x.names[i])
	case j.class == 1 && x.server != nil:
		res, err = x.paidGift(ctx, j, x.names[i])
	case rc != nil:
		res, err = x.rawSend(rc, j, u.Token)
	default:
		res, err = x.clientSend(ctx, u, j)
	}
	x.record(j, res, err)
}

// paidGift sends a gift as the platform's backend would after payment:
// through the server API, with a new order id.
func (x *senders) paidGift(ctx context.Context, j sendJob, user string) (client.SendResult, error) {
	order := client.NewIdempotencyKey()
	r, err := x.server.SendGift(ctx, client.PaidGift{Room: j.room, User: user, Gift: "rose", Count: 1, OrderID: order})
	return client.SendResult{ID: r.ID, Seq: r.Seq, Status: r.Status, Attempts: 1, Key: order}, err
}

// rawPaidGift is paidGift over the lean HTTP client: no retries.
func (x *senders) rawPaidGift(rc *rawConn, j sendJob, user string) (client.SendResult, error) {
	order := client.NewIdempotencyKey()
	body := []byte(`{"user":"` + user + `","gift":"rose","count":1,"order_id":"` + order + `"}`) // both [A-Za-z0-9-]
	return x.rawPost(rc, x.serverPath+j.room+"/gifts", x.s.APIKey, "", body, order)
}

func (x *senders) clientSend(ctx context.Context, u *client.Sender, j sendJob) (res client.SendResult, err error) {
	switch j.class {
	case 0:
		text, _ := x.texts.text(j.n)
		res, err = u.Danmaku(ctx, j.room, text)
	case 1:
		res, err = u.Gift(ctx, j.room, "rose", 1, "")
	case 2:
		res, err = u.Like(ctx, j.room, 1)
	}
	return res, err
}

// rawSend is clientSend over the lean HTTP client: no retries.
func (x *senders) rawSend(rc *rawConn, j sendJob, token string) (client.SendResult, error) {
	var body []byte
	key := ""
	switch j.class {
	case 0:
		_, body = x.texts.text(j.n)
	case 1:
		body = []byte(`{"type":"gift","gift":"rose","count":1}`)
		key = client.NewIdempotencyKey()
	case 2:
		body = []byte(`{"type":"like","count":1}`)
	}
	return x.rawPost(rc, x.path(j.room), token, key, body, key)
}

// rawPost posts body to path and reads the answer's id and seq.
func (x *senders) rawPost(rc *rawConn, path, token, idemKey string, body []byte, key string) (client.SendResult, error) {
	res := client.SendResult{Key: key, Attempts: 1}
	status, resp, err := rc.post(path, token, idemKey, body)
	res.Status = status
	if err != nil {
		return res, fmt.Errorf("cannot post message: %w", err)
	}
	var ok struct {
		ID    string           `json:"id"`
		Seq   uint64           `json:"seq"`
		Error client.ErrorBody `json:"error"`
	}
	_ = json.Unmarshal(resp, &ok)
	if status/100 != 2 {
		return res, &client.APIError{Status: status, Body: ok.Error}
	}
	res.ID, res.Seq = ok.ID, ok.Seq
	return res, nil
}

func (x *senders) path(room string) string {
	return x.roomsPath + room + "/messages"
}

func (x *senders) record(j sendJob, res client.SendResult, err error) {
	lat := time.Since(j.at).Microseconds()
	var status string
	var ae *client.APIError
	switch {
	case err == nil:
		status = strconv.Itoa(res.Status)
		x.ok[j.class].Add(1)
	case errors.As(err, &ae):
		status = strconv.Itoa(ae.Status)
		if ae.Status == http.StatusTooManyRequests {
			x.n429.Add(1)
		}
		if ae.Body.Code == protocol.CodeClientGiftsOff {
			x.nClientGifts.Add(1)
		}
	default:
		status = errClass("send", err)
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	cls := sendClasses[j.class]
	if err == nil {
		x.lat.Get(cls).Record(lat)
		if j.class == 1 {
			x.acked = append(x.acked, AckedGift{Room: j.room, ID: res.ID, Seq: res.Seq})
		}
	}
	m := x.status[cls]
	if m == nil {
		m = map[string]int{}
		x.status[cls] = m
	}
	m[status]++
}

// SendFigures are one class's send results.
type SendFigures struct {
	Sent     int64          `json:"sent"`
	Accepted int64          `json:"accepted"`
	PerSec   float64        `json:"accepted_per_s"`
	Skipped  int64          `json:"skipped"` // not sent: every worker was busy
	Status   map[string]int `json:"status"`
	Latency  Summary        `json:"latency"`
}

func (x *senders) figures(secs float64) map[string]SendFigures {
	x.mu.Lock()
	defer x.mu.Unlock()
	out := map[string]SendFigures{}
	rates := [3]float64{x.s.DanmakuRate, x.s.GiftRate, x.s.LikeRate}
	for c, name := range sendClasses {
		if rates[c] == 0 {
			continue
		}
		f := SendFigures{Sent: x.sent[c].Load(), Accepted: x.ok[c].Load(), Skipped: x.skipped[c].Load(), Status: x.status[name]}
		if secs > 0 {
			f.PerSec = float64(f.Accepted) / secs
		}
		if h := x.lat[name]; h != nil {
			f.Latency = h.Summary()
		}
		out[name] = f
	}
	return out
}

func (x *senders) ackedGifts() []AckedGift {
	x.mu.Lock()
	defer x.mu.Unlock()
	return append([]AckedGift(nil), x.acked...)
}

func (x *senders) reset() {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.lat = Hists{}
	x.status = map[string]map[string]int{}
	x.acked = nil
	for c := range x.sent {
		x.sent[c].Store(0)
		x.ok[c].Store(0)
		x.skipped[c].Store(0)
	}
}

func (x *senders) close() { x.hc.CloseIdleConnections() }
