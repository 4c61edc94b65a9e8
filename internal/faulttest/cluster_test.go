package faulttest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/liveroom/liveroom/internal/bus"
	"github.com/liveroom/liveroom/internal/protocol"
	"github.com/liveroom/liveroom/internal/testutil"
)

// cluster is a liveroom deployment of separate processes.
type cluster struct {
	t        *testing.T
	nats     []*testutil.Proc
	natsURLs string
	uplinks  []string // base URLs
	// uplinkProcs are the uplink processes, in the order of uplinks.
	uplinkProcs []*testutil.Proc
	gateways    []*testutil.Proc
	gwURLs      []string
	dispatch    string // base URL
	env         []string
	common      []string
	// keyFile is the NATS key file: the nodes require credentials minted
	// from it, and every role mints its own ($LIVEROOM_NATS_KEY_FILE).
	keyFile string
	// monitors are the NATS nodes' monitoring addresses (host:port).
	monitors []string
}

const secret = testutil.Secret

// startCluster starts nNATS NATS nodes (a JetStream cluster when 3), the
// given numbers of uplinks and gateways, and one dispatch.
// loadTestEdge lifts the gateways' per-address limits: these tests open
// thousands of viewers from 127.0.0.1, which the limits (loopback included)
// would refuse as one machine flooding a gateway. The limits are tested in
// the gateway package (TestHostileInput, TestForwardedAddressOnlyFromTrustedProxies).
var loadTestEdge = []string{"--max-conns-per-ip", "-1", "--handshake-rate", "-1"}

func startCluster(t *testing.T, nNATS, nUplinks, nGateways int, gwArgs ...string) *cluster {
	t.Helper()
	keyFile := testutil.NATSKeyFile(t)
	c := &cluster{t: t, keyFile: keyFile, env: []string{"LIVEROOM_JWT_SECRET=" + secret, "LIVEROOM_NATS_KEY_FILE=" + keyFile}}
	var clientPorts, routePorts []int
	for range nNATS {
		clientPorts = append(clientPorts, testutil.FreePort(t))
		routePorts = append(routePorts, testutil.FreePort(t))
	}
	var routes, urls []string
	for i := range nNATS {
		routes = append(routes, "nats://"+testutil.Addr(routePorts[i]))
		urls = append(urls, "nats://"+testutil.Addr(clientPorts[i]))
	}
	c.natsURLs = strings.Join(urls, ",")
	data := t.TempDir()
	for i := range nNATS {
		mon := testutil.Addr(testutil.FreePort(t))
		c.monitors = append(c.monitors, mon)
		args := []string{"nats", "--name", "n" + strconv.Itoa(i), "--port", strconv.Itoa(clientPorts[i]),
			"--data-dir", fmt.Sprintf("%s/n%d", data, i), "--log-level", "info", "--key-file", keyFile, "--monitor-addr", mon}
		if nNATS > 1 {
			args = append(args, "--cluster", "lr", "--cluster-port", strconv.Itoa(routePorts[i]), "--routes", strings.Join(routes, ","))
		}
		c.nats = append(c.nats, testutil.StartProc(t, "nats"+strconv.Itoa(i), nil, args...))
	}
	replicas := "1"
	if nNATS >= 3 {
		replicas = "3"
	}
	common := []string{"--nats-url", c.natsURLs, "--replicas", replicas, "--log-level", "info"}
	c.common = common
	dport := testutil.FreePort(t)
	testutil.StartProc(t, "dispatch", c.env, append([]string{"dispatch", "--addr", testutil.Addr(dport)}, common...)...)
	c.dispatch = "http://" + testutil.Addr(dport)
	for i := range nUplinks {
		p := testutil.FreePort(t)
		// One test user sends every gift: lift the per-user gift limit.
		args := append([]string{"uplink", "--addr", testutil.Addr(p), "--gift-rate", "10000", "--gift-burst", "10000"}, common...)
		c.uplinkProcs = append(c.uplinkProcs, testutil.StartProc(t, "uplink"+strconv.Itoa(i), c.env, args...))
		c.uplinks = append(c.uplinks, "http://"+testutil.Addr(p))
	}
	for i := range nGateways {
		p := testutil.FreePort(t)
		args := append([]string{"gateway", "--addr", testutil.Addr(p), "--id", "gw" + strconv.Itoa(i)}, common...)
		args = append(append(args, loadTestEdge...), gwArgs...)
		c.gateways = append(c.gateways, testutil.StartProc(t, "gw"+strconv.Itoa(i), c.env, args...))
		c.gwURLs = append(c.gwURLs, "http://"+testutil.Addr(p))
	}
	for _, u := range append(append([]string{c.dispatch}, c.uplinks...), c.gwURLs...) {
		testutil.WaitHTTP(t, u+"/healthz", 90*time.Second)
	}
	testutil.Eventually(t, 30*time.Second, "dispatch sees every gateway", func() bool { return len(c.activeGateways()) == nGateways })
	return c
}

// addGateway starts one more gateway and waits until dispatch offers it.
func (c *cluster) addGateway(t *testing.T, gwArgs ...string) {
	t.Helper()
	i := len(c.gateways)
	p := testutil.FreePort(t)
	args := append([]string{"gateway", "--addr", testutil.Addr(p), "--id", "gw" + strconv.Itoa(i)}, c.common...)
	args = append(append(args, loadTestEdge...), gwArgs...)
	c.gateways = append(c.gateways, testutil.StartProc(t, "gw"+strconv.Itoa(i), c.env, args...))
	c.gwURLs = append(c.gwURLs, "http://"+testutil.Addr(p))
	testutil.WaitHTTP(t, c.gwURLs[i]+"/healthz", 60*time.Second)
	testutil.Eventually(t, 30*time.Second, "dispatch sees the new gateway", func() bool { return len(c.activeGateways()) == i+1 })
}

// activeGateways lists the gateway ids dispatch currently has beats from.
func (c *cluster) activeGateways() []string {
	resp, err := operatorGet(c.t, c.dispatch+"/v1/gateways")
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	var body struct {
		Gateways []struct {
			ID    string `json:"id"`
			State string `json:"state"`
			Conns int    `json:"conns"`
		} `json:"gateways"`
	}
	if json.NewDecoder(resp.Body).Decode(&body) != nil {
		return nil
	}
	var ids []string
	for _, g := range body.Gateways {
		ids = append(ids, g.ID)
	}
	return ids
}

// natsNode returns the index of the NATS node named name ("n1" → 1).
func natsNode(t *testing.T, name string) int {
	t.Helper()
	i, err := strconv.Atoi(strings.TrimPrefix(name, "n"))
	if err != nil || !strings.HasPrefix(name, "n") {
		t.Fatalf("not a node name: %q", name)
	}
	return i
}

// metaLeader asks the running nodes' monitoring endpoints which node leads
// the JetStream metadata (the cluster's own view, /jsz).
func (c *cluster) metaLeader(t *testing.T) int {
	t.Helper()
	var leader string
	testutil.Eventually(t, 30*time.Second, "a JetStream meta leader", func() bool {
		for _, mon := range c.monitors {
			cl := http.Client{Timeout: time.Second}
			resp, err := cl.Get("http://" + mon + "/jsz")
			if err != nil {
				continue
			}
			var jsz struct {
				Meta struct {
					Leader string `json:"leader"`
				} `json:"meta_cluster"`
			}
			err = json.NewDecoder(resp.Body).Decode(&jsz)
			resp.Body.Close()
			if err == nil && jsz.Meta.Leader != "" {
				leader = jsz.Meta.Leader
				return true
			}
		}
		return false
	})
	return natsNode(t, leader)
}

// connect opens a NATS connection with every permission to the cluster.
func (c *cluster) connect(t *testing.T) *nats.Conn {
	t.Helper()
	var urls []string
	for _, u := range strings.Split(c.natsURLs, ",") {
		urls = append(urls, testutil.CredURL(t, u, bus.RoleAll, ""))
	}
	nc, err := nats.Connect(strings.Join(urls, ","))
	if err != nil {
		t.Fatal(err)
	}
	return nc
}

// storedTwice reads every reliable message of the rooms from the stream
// and counts the message ids stored more than once.
func (c *cluster) storedTwice(t *testing.T, rooms []string) int {
	t.Helper()
	nc := c.connect(t)
	defer nc.Close()
	d, err := bus.NewDirect(nc)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	seen := map[string]int{}
	twice := 0
	for _, room := range rooms {
		var from uint64 = 1
		for {
			msgs, more, err := d.After(ctx, bus.ReliableStream, bus.StoreSubject(protocol.Room(room)), from, 500)
			if err != nil {
				t.Fatalf("read the stored gifts: %v", err)
			}
			for _, m := range msgs {
				var msg protocol.Message
				if json.Unmarshal(m.Data, &msg) == nil {
					seen[msg.ID]++
					if seen[msg.ID] == 2 {
						twice++
					}
				}
				from = m.Seq + 1
			}
			if !more || len(msgs) == 0 {
				break
			}
		}
	}
	return twice
}

// streamLeader asks JetStream which node leads the reliable stream.
func (c *cluster) streamLeader(t *testing.T) int {
	t.Helper()
	nc := c.connect(t)
	defer nc.Close()
	js, _ := jetstream.New(nc)
	var leader string
	testutil.Eventually(t, 30*time.Second, "a leader of the reliable stream", func() bool {
		// The nodes' own monitoring first (no JetStream API round trip,
		// which a loaded machine may time out), then the JetStream API.
		if leader = c.streamLeaderFromJSZ(); leader != "" {
			return true
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		st, err := js.Stream(ctx, bus.ReliableStream)
		if err != nil || st.CachedInfo().Cluster == nil {
			return false
		}
		leader = st.CachedInfo().Cluster.Leader
		return leader != ""
	})
	return natsNode(t, leader)
}

// streamLeaderFromJSZ asks the running nodes' /jsz which node leads the
// reliable stream; "" when none says.
func (c *cluster) streamLeaderFromJSZ() string {
	for _, mon := range c.monitors {
		cl := http.Client{Timeout: time.Second}
		resp, err := cl.Get("http://" + mon + "/jsz?accounts=true&streams=true")
		if err != nil {
			continue
		}
		var jsz struct {
			Accounts []struct {
				Streams []struct {
					Name    string `json:"name"`
					Cluster struct {
						Leader string `json:"leader"`
					} `json:"cluster"`
				} `json:"stream_detail"`
			} `json:"account_details"`
		}
		err = json.NewDecoder(resp.Body).Decode(&jsz)
		resp.Body.Close()
		if err != nil {
			continue
		}
		for _, a := range jsz.Accounts {
			for _, st := range a.Streams {
				if st.Name == bus.ReliableStream && st.Cluster.Leader != "" {
					return st.Cluster.Leader
				}
			}
		}
	}
	return ""
}

// operatorGet reads an operator view (GET /v1/gateways, /metrics,
// /v1/autoscale/decisions) with an admin token, as an operator would.
func operatorGet(t testing.TB, url string) (*http.Response, error) {
	return testutil.AuthGet(url, testutil.Token(t, "ops", protocol.RoleAdmin))
}
