package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/liveroom/liveroom/internal/autoscale"
	"github.com/liveroom/liveroom/internal/bus"
	"github.com/liveroom/liveroom/internal/role"
)

// policyFlags are the autoscaling policy flags, shared by `autoscale` and
// `serve --autoscale` (where the policy flags carry an "autoscale-"
// prefix). A capacity limit or target given as a flag or LIVEROOM_*
// variable wins over the capacity file, which wins over the defaults.
type policyFlags struct {
	fs     *flag.FlagSet
	prefix string
	// pt names the policy flags' variables (AUTOSCALE_…), t the capacity
	// flags' (GATEWAY_MAX_…, CAPACITY_FILE).
	pt, t   flagTable
	p       autoscale.Policy
	c       autoscale.Capacity
	capFile string
}

func (pf *policyFlags) register(t flagTable, prefix string) {
	pf.fs, pf.prefix, pf.t, pf.pt = t.fs, prefix, t, t
	if prefix == "" {
		pf.pt = t.prefixed("AUTOSCALE_") // autoscale --min is $LIVEROOM_AUTOSCALE_MIN
	}
	pf.p = autoscale.DefaultPolicy()
	pf.c.Target = pf.p.Capacity.Target
	pt := pf.pt
	pt.Int(&pf.p.Min, prefix+"min", "fewest gateways")
	pt.Int(&pf.p.Max, prefix+"max", "most gateways")
	pt.Int(&pf.p.Spare, prefix+"spare", "gateways of capacity kept beyond the need, ready for a step of viewers before any new gateway could start")
	pt.Duration(&pf.p.ReadyTime, prefix+"ready-time", "time a new gateway needs to be ready, until the autoscaler has measured it; the joins expected meanwhile are added to the demand")
	pt.Duration(&pf.p.Stabilization, prefix+"stabilization", "scale in only after fewer gateways were enough for this long")
	pt.Float(&pf.c.Target, prefix+"target", "planned utilisation of each gateway's capacity, in (0,1]")
	t.String(&pf.capFile, "capacity-file", "capacity file written by liveroom bench capacity --out ({\"conns\",\"cpu\",\"bytes_out\",\"msgs_out\",\"target\"}); flags override it")
	t.Int(&pf.c.Conns, "gateway-max-conns", "capacity: connections per gateway (default 19000 when no capacity is given)")
	t.Float(&pf.c.CPU, "gateway-max-cpu", "capacity: CPU cores per gateway; 0 = not a limit")
	t.Float(&pf.c.BytesOut, "gateway-max-bytes-out", "capacity: bytes/s to viewers per gateway; 0 = not a limit")
	t.Float(&pf.c.MsgsOut, "gateway-max-msgs-out", "capacity: messages/s to viewers per gateway; 0 = not a limit")
}

// given reports whether flag name (of table t) was set on the command line
// or through its environment variable.
func (pf *policyFlags) given(t flagTable, name string) bool {
	set := false
	pf.fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set || env(t.envName(name), "") != ""
}

// policy builds the policy once the flags are parsed, on top of base (the
// capacity to assume when neither the file nor the flags give one).
func (pf *policyFlags) policy(base autoscale.Capacity) (autoscale.Policy, error) {
	p := pf.p
	c := base
	if pf.capFile != "" {
		fc, err := autoscale.LoadCapacity(pf.capFile)
		if err != nil {
			return p, err
		}
		c = fc
	}
	if pf.given(pf.t, "gateway-max-conns") {
		c.Conns = pf.c.Conns
	}
	if pf.given(pf.t, "gateway-max-cpu") {
		c.CPU = pf.c.CPU
	}
	if pf.given(pf.t, "gateway-max-bytes-out") {
		c.BytesOut = pf.c.BytesOut
	}
	if pf.given(pf.t, "gateway-max-msgs-out") {
		c.MsgsOut = pf.c.MsgsOut
	}
	if c.Target == 0 || pf.given(pf.pt, pf.prefix+"target") {
		if !(pf.c.Target > 0 && pf.c.Target <= 1) {
			return p, fmt.Errorf("--%starget %v: want a utilisation in (0,1]", pf.prefix, pf.c.Target)
		}
		c.Target = pf.c.Target
	}
	p.Capacity = c.WithDefaults()
	if err := p.Capacity.Validate(); err != nil {
		return p, err
	}
	if p.Min < 1 || p.Max < p.Min {
		return p, fmt.Errorf("--%smin and --%smax: want 1 ≤ min ≤ max, got %d and %d", pf.prefix, pf.prefix, p.Min, p.Max)
	}
	if p.Spare < 0 {
		return p, fmt.Errorf("--%sspare %d: want 0 or more", pf.prefix, p.Spare)
	}
	return p.WithDefaults(), nil
}

// parsePorts reads "" or "LOW-HIGH".
func parsePorts(s string) (int, int, error) {
	if s == "" {
		return 0, 0, nil
	}
	lo, hi, ok := strings.Cut(s, "-")
	a, err1 := strconv.Atoi(lo)
	b, err2 := strconv.Atoi(hi)
	if !ok || err1 != nil || err2 != nil || a < 1 || b < a || b > 65535 {
		return 0, 0, fmt.Errorf("ports %q: want LOW-HIGH, e.g. 9100-9199", s)
	}
	return a, b, nil
}

// runAutoscale implements `liveroom autoscale`.
func runAutoscale(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("autoscale", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var ev envs
	var pf policyFlags
	var lf logFlags
	t := newFlagTable(fs, &ev)
	at, kt := t.prefixed("AUTOSCALE_"), t.prefixed("K8S_")
	addr, natsURL, actuator := ":8085", "nats://127.0.0.1:4222", "dry-run"
	t.String(&addr, "addr", "HTTP listen address: /metrics, GET /v1/autoscale/decisions, /healthz")
	t.String(&natsURL, "nats-url", "NATS server(s), comma separated")
	at.String(&actuator, "actuator", "dry-run (log only), process (local gateway processes) or kubernetes")
	interval, drainTimeout, startDelay := time.Second, 5*time.Minute, time.Duration(0)
	at.Duration(&interval, "interval", "time between decisions")
	at.Duration(&drainTimeout, "drain-timeout", "remove a drained gateway that still beats after this long")
	at.Duration(&startDelay, "start-delay", "process: hold each new gateway this long before starting it, as a pod waits to be scheduled (tests, benchmarks)")
	var ports, publicHost string
	gwHost := "127.0.0.1"
	at.String(&ports, "ports", "process: port range of the gateways, LOW-HIGH (default any free port)")
	at.String(&gwHost, "gateway-host", "process: address the gateways listen on")
	at.String(&publicHost, "public-host", "process: host in the gateways' WebSocket URLs (default --gateway-host)")
	var secret secretValue
	fs.Var(&secret, "jwt-secret", "process: the secret the gateways verify tokens with; prefer $LIVEROOM_JWT_SECRET")
	var namespace, kubeconfig string
	deployment := "liveroom-gateway"
	kt.String(&namespace, "namespace", "kubernetes: namespace of the gateway Deployment (default: this pod's)")
	kt.String(&deployment, "deployment", "kubernetes: the gateway Deployment")
	t.String(&kubeconfig, "kubeconfig", "kubernetes: kubeconfig file; empty: in-cluster service account")
	pf.register(t, "")
	lf.register(t)
	var naf natsAuthFlags
	naf.register(t)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), `usage: liveroom autoscale [flags] [-- gateway flags]

Reads the gateways' load beats on NATS and decides the gateway count: for
each capacity dimension (connections, CPU, bytes/s, messages/s out), the
fleet's demand plus the joins expected while a new gateway starts, divided
by capacity × target; the largest wins, within --min and --max. It scales
out at once, and scales in one gateway at a time after --stabilization,
always the least loaded one, always drained first. Decisions are logged and
exported on /metrics and GET /v1/autoscale/decisions.

Actuators: dry-run logs only. process runs gateways as child processes of
this binary on this machine (flags after -- go to every gateway; they need
$LIVEROOM_JWT_SECRET). kubernetes scales the Deployment --deployment through
its scale subresource and marks the drained pod with a low
pod-deletion-cost first (deploy/kubernetes has the manifests and RBAC).

examples:
  liveroom autoscale --nats-url nats://127.0.0.1:4222 --gateway-max-conns 3000 --min 1 --max 4
  liveroom autoscale --actuator process --capacity-file capacity.json -- --drain-window 10s
  liveroom autoscale --actuator kubernetes --deployment liveroom-gateway --capacity-file /etc/liveroom/capacity.json

flags:`)
		fs.PrintDefaults()
	}
	if stop, err := parseAll(fs, args, &ev); stop {
		return err
	}
	policy, err := pf.policy(autoscale.Capacity{})
	if err != nil {
		return err
	}
	if !slices.Contains([]string{"dry-run", "process", "kubernetes"}, actuator) {
		return fmt.Errorf("--actuator %q: want dry-run, process or kubernetes", actuator)
	}
	if len(fs.Args()) > 0 && actuator != "process" {
		return fmt.Errorf("arguments %q: only --actuator process takes gateway flags after --", fs.Args())
	}
	log, err := newLogger(stderr, lf.level, lf.format)
	if err != nil {
		return err
	}
	opts, err := naf.options(bus.RoleAutoscale, "")
	if err != nil {
		return err
	}
	ln, err := role.ListenHTTP(addr)
	if err != nil {
		return err
	}
	deps, err := role.Connect(ctx, role.ConnectConfig{URL: natsURL, Name: "liveroom-autoscale", Role: bus.RoleAutoscale, Options: opts, Logger: log})
	if err != nil {
		ln.Close()
		return err
	}
	defer deps.NC.Close()

	var act autoscale.Actuator
	var closeAct func()
	switch actuator {
	case "dry-run":
		act = &autoscale.DryRun{Log: log}
	case "process":
		lo, hi, err := parsePorts(ports)
		if err != nil {
			return err
		}
		s, err := secret.get()
		if err != nil {
			return err
		}
		// A platform that verifies with public keys gives them through the
		// environment, which the gateways inherit.
		if s == "" && env("JWT_PUBLIC_KEY", "") == "" && os.Getenv(envPublicKeyPEM) == "" {
			return errors.New("--actuator process: the gateways need the JWT secret ($LIVEROOM_JWT_SECRET or --jwt-secret) or $LIVEROOM_JWT_PUBLIC_KEY")
		}
		// Each gateway gets a NATS credential bound to its id, minted from
		// the key file; none of them sees the key itself.
		if naf.keyFile == "" {
			return errors.New("--actuator process: give --nats-key-file ($LIVEROOM_NATS_KEY_FILE), from which each gateway process gets its own NATS credential")
		}
		keys, err := bus.LoadKeys(naf.keyFile)
		if err != nil {
			return err
		}
		childEnv := func(id string) ([]string, error) {
			c, err := keys.Credential(bus.RoleGateway, id)
			return c.Env(), err
		}
		envv := autoscale.GatewayEnv("LIVEROOM_JWT_SECRET=" + s)
		// The capacity first: flags after -- may override it.
		gwArgs := append(append([]string{"--nats-url", natsURL}, policy.WithDefaults().Capacity.GatewayArgs()...), fs.Args()...)
		p, err := autoscale.NewProcess(autoscale.ProcessConfig{Args: gwArgs, Env: envv, ChildEnv: childEnv, Host: gwHost, PublicHost: publicHost,
			PortMin: lo, PortMax: hi, Stdout: stderr, Stderr: stderr, Logger: log, StartDelay: startDelay})
		if err != nil {
			return err
		}
		act, closeAct = p, func() { _ = p.Close(10 * time.Second) }
	case "kubernetes":
		client, err := autoscale.KubernetesClient(kubeconfig)
		if err != nil {
			return err
		}
		ns := namespace
		if ns == "" {
			b, err := os.ReadFile("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
			if err != nil {
				return errors.New("--namespace is required outside a pod")
			}
			ns = strings.TrimSpace(string(b))
		}
		act, err = autoscale.NewKubernetes(autoscale.KubernetesConfig{Client: client, Namespace: ns, Deployment: deployment, Logger: log})
		if err != nil {
			return err
		}
	}
	ann, err := role.OpenAnnouncements(ctx, deps)
	if err != nil {
		if closeAct != nil {
			closeAct()
		}
		return err
	}
	defer ann.Close()
	a, err := role.NewAutoscale(deps, autoscale.Config{Actuator: act, Policy: policy, Interval: interval, DrainTimeout: drainTimeout,
		Announcements: ann.List}, closeAct)
	if err != nil {
		return err
	}
	// Its address is an operator's: /metrics, the decisions and /healthz.
	h, err := role.StartHost(ctx, role.HostConfig{Listener: ln, OperatorOnly: true, Logger: log}, a)
	if err != nil {
		return err
	}
	log.Info("autoscaler running", "actuator", actuator)
	select {
	case <-ctx.Done():
	case <-h.Failed():
	}
	return errors.Join(h.Close(), h.Err())
}
