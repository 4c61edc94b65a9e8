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
	fs      *flag.FlagSet
	prefix  string
	p       autoscale.Policy
	c       autoscale.Capacity
	capFile string
}

// capEnv maps the capacity flags onto their environment variables.
var capEnv = map[string]string{
	"gateway-max-conns":     "GATEWAY_MAX_CONNS",
	"gateway-max-cpu":       "GATEWAY_MAX_CPU",
	"gateway-max-bytes-out": "GATEWAY_MAX_BYTES_OUT",
	"gateway-max-msgs-out":  "GATEWAY_MAX_MSGS_OUT",
}

func (pf *policyFlags) register(fs *flag.FlagSet, prefix string, ev *envs) {
	pf.fs, pf.prefix = fs, prefix
	fs.IntVar(&pf.p.Min, prefix+"min", ev.int("AUTOSCALE_MIN", 1), "fewest gateways ($LIVEROOM_AUTOSCALE_MIN)")
	fs.IntVar(&pf.p.Max, prefix+"max", ev.int("AUTOSCALE_MAX", 10), "most gateways ($LIVEROOM_AUTOSCALE_MAX)")
	fs.IntVar(&pf.p.Spare, prefix+"spare", ev.int("AUTOSCALE_SPARE", 1),
		"gateways of capacity kept beyond the need, ready for a step of viewers before any new gateway could start ($LIVEROOM_AUTOSCALE_SPARE)")
	fs.DurationVar(&pf.p.ReadyTime, prefix+"ready-time", ev.dur("AUTOSCALE_READY_TIME", 10*time.Second),
		"time a new gateway needs to be ready, until the autoscaler has measured it; the joins expected meanwhile are added to the demand ($LIVEROOM_AUTOSCALE_READY_TIME)")
	fs.DurationVar(&pf.p.Stabilization, prefix+"stabilization", ev.dur("AUTOSCALE_STABILIZATION", 5*time.Minute),
		"scale in only after fewer gateways were enough for this long ($LIVEROOM_AUTOSCALE_STABILIZATION)")
	fs.Float64Var(&pf.c.Target, prefix+"target", ev.float("AUTOSCALE_TARGET", autoscale.DefaultTarget),
		"planned utilisation of each gateway's capacity, in (0,1] ($LIVEROOM_AUTOSCALE_TARGET)")
	fs.StringVar(&pf.capFile, "capacity-file", env("CAPACITY_FILE", ""),
		"capacity file written by liveroom bench capacity --out ({\"conns\",\"cpu\",\"bytes_out\",\"msgs_out\",\"target\"}); flags override it ($LIVEROOM_CAPACITY_FILE)")
	fs.IntVar(&pf.c.Conns, "gateway-max-conns", ev.int("GATEWAY_MAX_CONNS", 0), "capacity: connections per gateway (default 19000 when no capacity is given) ($LIVEROOM_GATEWAY_MAX_CONNS)")
	fs.Float64Var(&pf.c.CPU, "gateway-max-cpu", ev.float("GATEWAY_MAX_CPU", 0), "capacity: CPU cores per gateway; 0 = not a limit ($LIVEROOM_GATEWAY_MAX_CPU)")
	fs.Float64Var(&pf.c.BytesOut, "gateway-max-bytes-out", ev.float("GATEWAY_MAX_BYTES_OUT", 0), "capacity: bytes/s to viewers per gateway; 0 = not a limit ($LIVEROOM_GATEWAY_MAX_BYTES_OUT)")
	fs.Float64Var(&pf.c.MsgsOut, "gateway-max-msgs-out", ev.float("GATEWAY_MAX_MSGS_OUT", 0), "capacity: messages/s to viewers per gateway; 0 = not a limit ($LIVEROOM_GATEWAY_MAX_MSGS_OUT)")
}

// given reports whether flag name was set on the command line or through
// its environment variable.
func (pf *policyFlags) given(name, envName string) bool {
	set := false
	pf.fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set || os.Getenv("LIVEROOM_"+envName) != ""
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
	if pf.given("gateway-max-conns", capEnv["gateway-max-conns"]) {
		c.Conns = pf.c.Conns
	}
	if pf.given("gateway-max-cpu", capEnv["gateway-max-cpu"]) {
		c.CPU = pf.c.CPU
	}
	if pf.given("gateway-max-bytes-out", capEnv["gateway-max-bytes-out"]) {
		c.BytesOut = pf.c.BytesOut
	}
	if pf.given("gateway-max-msgs-out", capEnv["gateway-max-msgs-out"]) {
		c.MsgsOut = pf.c.MsgsOut
	}
	if c.Target == 0 || pf.given(pf.prefix+"target", "AUTOSCALE_TARGET") {
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
	addr := fs.String("addr", env("ADDR", ":8085"), "HTTP listen address: /metrics, GET /v1/autoscale/decisions, /healthz ($LIVEROOM_ADDR)")
	natsURL := fs.String("nats-url", env("NATS_URL", "nats://127.0.0.1:4222"), "NATS server(s), comma separated ($LIVEROOM_NATS_URL)")
	actuator := fs.String("actuator", env("AUTOSCALE_ACTUATOR", "dry-run"), "dry-run (log only), process (local gateway processes) or kubernetes ($LIVEROOM_AUTOSCALE_ACTUATOR)")
	interval := fs.Duration("interval", ev.dur("AUTOSCALE_INTERVAL", time.Second), "time between decisions ($LIVEROOM_AUTOSCALE_INTERVAL)")
	drainTimeout := fs.Duration("drain-timeout", ev.dur("AUTOSCALE_DRAIN_TIMEOUT", 5*time.Minute), "remove a drained gateway that still beats after this long ($LIVEROOM_AUTOSCALE_DRAIN_TIMEOUT)")
	startDelay := fs.Duration("start-delay", ev.dur("AUTOSCALE_START_DELAY", 0), "process: hold each new gateway this long before starting it, as a pod waits to be scheduled (tests, benchmarks) ($LIVEROOM_AUTOSCALE_START_DELAY)")
	ports := fs.String("ports", env("AUTOSCALE_PORTS", ""), "process: port range of the gateways, LOW-HIGH (default any free port) ($LIVEROOM_AUTOSCALE_PORTS)")
	gwHost := fs.String("gateway-host", env("AUTOSCALE_GATEWAY_HOST", "127.0.0.1"), "process: address the gateways listen on ($LIVEROOM_AUTOSCALE_GATEWAY_HOST)")
	publicHost := fs.String("public-host", env("AUTOSCALE_PUBLIC_HOST", ""), "process: host in the gateways' WebSocket URLs (default --gateway-host) ($LIVEROOM_AUTOSCALE_PUBLIC_HOST)")
	var secret secretValue
	fs.Var(&secret, "jwt-secret", "process: the secret the gateways verify tokens with; prefer $LIVEROOM_JWT_SECRET")
	namespace := fs.String("namespace", env("K8S_NAMESPACE", ""), "kubernetes: namespace of the gateway Deployment (default: this pod's) ($LIVEROOM_K8S_NAMESPACE)")
	deployment := fs.String("deployment", env("K8S_DEPLOYMENT", "liveroom-gateway"), "kubernetes: the gateway Deployment ($LIVEROOM_K8S_DEPLOYMENT)")
	kubeconfig := fs.String("kubeconfig", env("KUBECONFIG", ""), "kubernetes: kubeconfig file; empty: in-cluster service account ($LIVEROOM_KUBECONFIG)")
	pf.register(fs, "", &ev)
	lf.register(fs)
	var naf natsAuthFlags
	naf.register(fs)
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
	if !slices.Contains([]string{"dry-run", "process", "kubernetes"}, *actuator) {
		return fmt.Errorf("--actuator %q: want dry-run, process or kubernetes", *actuator)
	}
	if len(fs.Args()) > 0 && *actuator != "process" {
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
	ln, err := role.ListenHTTP(*addr)
	if err != nil {
		return err
	}
	deps, err := role.Connect(ctx, role.ConnectConfig{URL: *natsURL, Name: "liveroom-autoscale", Role: bus.RoleAutoscale, Options: opts, Logger: log})
	if err != nil {
		ln.Close()
		return err
	}
	defer deps.NC.Close()

	var act autoscale.Actuator
	var closeAct func()
	switch *actuator {
	case "dry-run":
		act = &autoscale.DryRun{Log: log}
	case "process":
		lo, hi, err := parsePorts(*ports)
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
			return []string{envNATSUser + "=" + c.User, envNATSPassword + "=" + c.Password}, err
		}
		drop := []string{"LIVEROOM_JWT_SECRET", "LIVEROOM_ADDR", "LIVEROOM_METRICS_ADDR", "LIVEROOM_DEBUG_ADDR", "LIVEROOM_GATEWAY_ID",
			"LIVEROOM_PUBLIC_URL", "LIVEROOM_NATS_KEY_FILE", envNATSUser, envNATSPassword}
		envv := []string{"LIVEROOM_JWT_SECRET=" + s}
		for _, kv := range os.Environ() {
			if name, _, _ := strings.Cut(kv, "="); !slices.Contains(drop, name) {
				envv = append(envv, kv)
			}
		}
		// The capacity first: flags after -- may override it.
		gwArgs := append(append([]string{"--nats-url", *natsURL}, policy.WithDefaults().Capacity.GatewayArgs()...), fs.Args()...)
		p, err := autoscale.NewProcess(autoscale.ProcessConfig{Args: gwArgs, Env: envv, ChildEnv: childEnv, Host: *gwHost, PublicHost: *publicHost,
			PortMin: lo, PortMax: hi, Stdout: stderr, Stderr: stderr, Logger: log, StartDelay: *startDelay})
		if err != nil {
			return err
		}
		act, closeAct = p, func() { _ = p.Close(10 * time.Second) }
	case "kubernetes":
		client, err := autoscale.KubernetesClient(*kubeconfig)
		if err != nil {
			return err
		}
		ns := *namespace
		if ns == "" {
			b, err := os.ReadFile("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
			if err != nil {
				return errors.New("--namespace is required outside a pod")
			}
			ns = strings.TrimSpace(string(b))
		}
		act, err = autoscale.NewKubernetes(autoscale.KubernetesConfig{Client: client, Namespace: ns, Deployment: *deployment, Logger: log})
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
	a, err := role.NewAutoscale(deps, autoscale.Config{Actuator: act, Policy: policy, Interval: *interval, DrainTimeout: *drainTimeout,
		Announcements: ann.List}, closeAct)
	if err != nil {
		return err
	}
	// Its address is an operator's: /metrics, the decisions and /healthz.
	h, err := role.StartHost(ctx, role.HostConfig{Listener: ln, OperatorOnly: true, Logger: log}, a)
	if err != nil {
		return err
	}
	log.Info("autoscaler running", "actuator", *actuator)
	select {
	case <-ctx.Done():
	case <-h.Failed():
	}
	return errors.Join(h.Close(), h.Err())
}
