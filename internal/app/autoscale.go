package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/liveroom/liveroom/internal/announce"
	"github.com/liveroom/liveroom/internal/autoscale"
	"github.com/liveroom/liveroom/internal/bus"
	"github.com/liveroom/liveroom/internal/protocol"
	"github.com/liveroom/liveroom/internal/role"
)

// AutoscaleConfig makes a node run its gateways as child processes of this
// binary (`liveroom gateway`), started and drained by an autoscale.Scaler
// through the process actuator, instead of one gateway inside the node.
//
// The node's own gateway is replaced, not kept as the first one: every
// gateway is then a child with its own file limit (so one machine can hold
// more viewers than one process can), every gateway can be drained and
// removed, and the autoscaler treats them all alike. The node keeps NATS,
// uplink, dispatch, the pages and the admin API; GET /v1/ws on the node's
// address answers 404 with a pointer to dispatch, which hands out the
// children's URLs: ws://HOST:PORT/v1/ws, HOST being PublicURL's host when
// set, else the node's listen host (localhost when it listens on every
// interface, as the children then do). Start returns once the first child
// beats.
type AutoscaleConfig struct {
	// Enabled turns it on.
	Enabled bool
	// Policy is the scaling policy: Min, Max, the capacity model and the
	// time constants (see autoscale.Policy). The capacity model's limits
	// that are set become every child's --max-conns, --max-cpu,
	// --max-bytes-out and --max-msgs-out, so that the children's load
	// scores (and so dispatch) measure against the same capacity.
	Policy autoscale.Policy
	// GatewayArgs follow "gateway" on every child's command line (the
	// gateway tunables); the node adds --nats-url and the capacity, the
	// actuator --id, --addr and --public-url.
	GatewayArgs []string
	// Binary is the liveroom binary; default this process's executable.
	Binary string
	// PortMin and PortMax bound the children's ports; zero picks free ones.
	PortMin, PortMax int
	// ChildOutput receives the children's logs; nil discards them.
	ChildOutput io.Writer
	// Interval is the time between two decisions; default 1s.
	Interval time.Duration
	// DrainTimeout bounds the wait for a drained child to exit before it is
	// stopped; default 5m (see autoscale.Config).
	DrainTimeout time.Duration
	// StartDelay holds every new child this long before it starts, as a
	// pod waits to be scheduled (autoscale.ProcessConfig.StartDelay): for
	// tests and benchmarks of slow starts. The first child waits too.
	StartDelay time.Duration
}

// newAutoscale builds the process actuator and the autoscaler; its first
// decision starts Policy.Min children.
func (n *Node) newAutoscale(deps role.Deps, natsURL, secret, publicHost string) (*role.Autoscale, error) {
	ac := n.cfg.Autoscale
	p := ac.Policy.WithDefaults()
	if err := p.Capacity.Validate(); err != nil {
		return nil, err
	}
	args := append(append([]string{"--nats-url", natsURL}, ac.GatewayArgs...), p.Capacity.GatewayArgs()...)
	// The token configuration goes to the children through the variables
	// their flags read; none of the node's own addresses does.
	env := autoscale.GatewayEnv(append([]string{"LIVEROOM_JWT_SECRET=" + secret}, authEnv(n.cfg.Auth)...)...)
	listenHost := ""
	if ta, ok := n.ln.Addr().(*net.TCPAddr); ok && !ta.IP.IsUnspecified() {
		listenHost = ta.IP.String()
	}
	if n.cfg.PublicURL != "" {
		if u, err := url.Parse(n.cfg.PublicURL); err == nil && u.Hostname() != "" {
			publicHost = u.Hostname()
		}
	}
	if listenHost == "" {
		listenHost = "0.0.0.0"
	}
	var err error
	if n.keys == nil {
		return nil, errors.New("serve --autoscale with an external NATS needs --nats-key-file, to mint each gateway process its own NATS credential")
	}
	childEnv := func(id string) ([]string, error) {
		c, err := n.keys.Credential(bus.RoleGateway, id)
		return c.Env(), err
	}
	n.procs, err = autoscale.NewProcess(autoscale.ProcessConfig{
		Binary: ac.Binary, Args: args, Env: env, ChildEnv: childEnv, Host: listenHost, PublicHost: publicHost,
		PortMin: ac.PortMin, PortMax: ac.PortMax, Stdout: ac.ChildOutput, Stderr: ac.ChildOutput, Logger: n.log,
		StartDelay: ac.StartDelay,
	})
	if err != nil {
		return nil, err
	}
	procs := n.procs
	// The whole node stops, dispatch with it: there is nowhere to drain the
	// children's viewers to. SIGTERM, SIGKILL after 5 s.
	return role.NewAutoscale(deps, autoscale.Config{Actuator: procs, Policy: p, Interval: ac.Interval, DrainTimeout: ac.DrainTimeout,
		Announcements: n.announced}, func() { _ = procs.Close(5 * time.Second) })
}

// announced are the announced audiences, for the autoscaler.
func (n *Node) announced(now time.Time) []announce.Announcement {
	if a := n.disp.Announcements(); a != nil {
		return a.List(now)
	}
	return nil
}

// waitGateway waits until a gateway beats, so that Start returns a node
// viewers can join.
func (n *Node) waitGateway(ctx context.Context) error {
	// Dispatch already reads the fleet (internal/fleet): wait until it
	// knows a gateway.
	wait := 60*time.Second + n.cfg.Autoscale.StartDelay
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for len(n.disp.Server().Gateways()) == 0 {
		select {
		case <-wctx.Done():
			return fmt.Errorf("no gateway process beat within %v (see the gateway logs): %w", wait, wctx.Err())
		case <-tick.C:
		}
	}
	return nil
}

// childGateways answers GET /v1/ws on a node whose gateways are children.
var childGateways = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
	protocol.WriteError(w, protocol.Errorf(http.StatusNotFound, protocol.CodeNotFound, "",
		"this node runs its gateways as separate processes (serve --autoscale): ask GET /v1/dispatch?room=R which one to use"))
})
