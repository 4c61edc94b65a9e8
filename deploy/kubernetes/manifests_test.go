package kubernetes

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/yaml"

	"github.com/liveroom/liveroom/internal/autoscale"
)

// object is one decoded manifest document.
type object struct {
	file string
	obj  runtime.Object
}

// decodeAll reads every YAML file under the folder and decodes each document
// strictly (unknown or duplicate fields are errors) into the Go type of its
// apiVersion and kind, from client-go's scheme of the built-in types.
func decodeAll(t *testing.T) []object {
	t.Helper()
	var out []object
	err := filepath.WalkDir(".", func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || (!strings.HasSuffix(path, ".yaml") && !strings.HasSuffix(path, ".yml")) {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for i, doc := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(b), -1) {
			if strings.TrimSpace(stripComments(doc)) == "" {
				continue
			}
			var tm metav1.TypeMeta
			if err := yaml.Unmarshal([]byte(doc), &tm); err != nil {
				t.Errorf("%s document %d: %v", path, i, err)
				continue
			}
			obj, err := scheme.Scheme.New(tm.GroupVersionKind())
			if err != nil {
				t.Errorf("%s document %d: %s %s is no known API type: %v", path, i, tm.APIVersion, tm.Kind, err)
				continue
			}
			if err := yaml.UnmarshalStrict([]byte(doc), obj); err != nil {
				t.Errorf("%s document %d (%s): %v", path, i, tm.Kind, err)
				continue
			}
			out = append(out, object{file: path, obj: obj})
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func stripComments(doc string) string {
	var b bytes.Buffer
	for _, l := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

func find[T runtime.Object](objs []object, name string) (T, bool) {
	var zero T
	for _, o := range objs {
		if v, ok := o.obj.(T); ok && o.obj.(metav1.Object).GetName() == name {
			return v, true
		}
	}
	return zero, false
}

// flagValue returns --name=value or --name value from args.
func flagValue(args []string, name string) (string, bool) {
	for i, a := range args {
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v, true
		}
		if a == "--"+name && i+1 < len(args) {
			return args[i+1], true
		}
	}
	return "", false
}

func TestManifestsDecodeStrictly(t *testing.T) {
	objs := decodeAll(t)
	kinds := map[string]int{}
	for _, o := range objs {
		kinds[fmt.Sprintf("%T", o.obj)]++
		m := o.obj.(metav1.Object)
		if _, ns := o.obj.(*corev1.Namespace); !ns && m.GetNamespace() != "liveroom" {
			t.Errorf("%s: %s is in namespace %q, want liveroom", o.file, m.GetName(), m.GetNamespace())
		}
	}
	t.Logf("decoded %d objects: %v", len(objs), kinds)
	for _, want := range []string{"*v1.Deployment", "*v1.StatefulSet", "*v1.Service", "*v1.Role", "*v1.RoleBinding",
		"*v1.ServiceAccount", "*v2.HorizontalPodAutoscaler", "*v1.ConfigMap", "*v1.Secret", "*v1.Namespace"} {
		if kinds[want] == 0 {
			t.Errorf("no %s in the manifests", want)
		}
	}
	// Strictness is real: an unknown field is refused.
	bad := "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: x\nspec:\n  replica: 2\n"
	if err := yaml.UnmarshalStrict([]byte(bad), &appsv1.Deployment{}); err == nil {
		t.Error("a misspelt field decoded without error")
	}
}

func TestWorkloadsSelectTheirPods(t *testing.T) {
	for _, o := range decodeAll(t) {
		var sel *metav1.LabelSelector
		var tmpl map[string]string
		switch w := o.obj.(type) {
		case *appsv1.Deployment:
			sel, tmpl = w.Spec.Selector, w.Spec.Template.Labels
		case *appsv1.StatefulSet:
			sel, tmpl = w.Spec.Selector, w.Spec.Template.Labels
		case *corev1.Service:
			if !labels.SelectorFromSet(w.Spec.Selector).Empty() && !matchesSomePod(t, w.Spec.Selector) {
				t.Errorf("%s: service %s selects no pod template (%v)", o.file, w.Name, w.Spec.Selector)
			}
			continue
		default:
			continue
		}
		s, err := metav1.LabelSelectorAsSelector(sel)
		if err != nil || !s.Matches(labels.Set(tmpl)) {
			t.Errorf("%s: %s's selector %v does not match its pods' labels %v", o.file, o.obj.(metav1.Object).GetName(), sel, tmpl)
		}
	}
}

func matchesSomePod(t *testing.T, sel map[string]string) bool {
	for _, o := range decodeAll(t) {
		var l map[string]string
		switch w := o.obj.(type) {
		case *appsv1.Deployment:
			l = w.Spec.Template.Labels
		case *appsv1.StatefulSet:
			l = w.Spec.Template.Labels
		}
		if l != nil && labels.SelectorFromSet(sel).Matches(labels.Set(l)) {
			return true
		}
	}
	return false
}

// TestGatewayDrainsWithinItsGracePeriod: the pod is killed after
// terminationGracePeriodSeconds; the gateway's drain budget (delay + window
// + grace + 10 s, what `liveroom gateway` waits on SIGTERM) must fit in it,
// and nothing in the pod may rely on sending control commands (its NATS
// credential may not): SIGTERM is what drains it.
func TestGatewayDrainsWithinItsGracePeriod(t *testing.T) {
	objs := decodeAll(t)
	d, ok := find[*appsv1.Deployment](objs, "liveroom-gateway")
	if !ok {
		t.Fatal("no liveroom-gateway Deployment")
	}
	c := d.Spec.Template.Spec.Containers[0]
	budget := 10 * time.Second
	for _, f := range []struct {
		name string
		def  time.Duration
	}{{"drain-delay", 2 * time.Second}, {"drain-window", 30 * time.Second}, {"drain-grace", 3 * time.Second}} {
		v := f.def
		if s, ok := flagValue(c.Args, f.name); ok {
			var err error
			if v, err = time.ParseDuration(s); err != nil {
				t.Fatalf("--%s=%s: %v", f.name, s, err)
			}
		}
		budget += v
	}
	grace := time.Duration(*d.Spec.Template.Spec.TerminationGracePeriodSeconds) * time.Second
	if grace <= budget {
		t.Errorf("terminationGracePeriodSeconds %v ≤ drain budget %v: the kubelet would kill gateways mid-drain", grace, budget)
	}
	t.Logf("gateway drain budget %v, grace period %v", budget, grace)
	if c.Lifecycle != nil && c.Lifecycle.PreStop != nil && c.Lifecycle.PreStop.Exec != nil &&
		strings.Contains(strings.Join(c.Lifecycle.PreStop.Exec.Command, " "), "liveroom drain") {
		t.Errorf("gateway preStop runs liveroom drain, which its NATS credential may not: %+v", c.Lifecycle)
	}
	// Every liveroom workload authenticates to NATS with its own role's
	// secret, and the NATS pods get the key.
	for name, secret := range map[string]string{"liveroom-gateway": "liveroom-nats-gateway", "liveroom-uplink": "liveroom-nats-uplink",
		"liveroom-dispatch": "liveroom-nats-dispatch", "liveroom-autoscale": "liveroom-nats-autoscale"} {
		w, ok := find[*appsv1.Deployment](objs, name)
		if !ok {
			t.Errorf("no %s Deployment", name)
			continue
		}
		has := false
		for _, ef := range w.Spec.Template.Spec.Containers[0].EnvFrom {
			has = has || (ef.SecretRef != nil && ef.SecretRef.Name == secret)
		}
		if _, ok := find[*corev1.Secret](objs, secret); !ok || !has {
			t.Errorf("%s does not read its NATS credential from Secret %s", name, secret)
		}
	}
	ss, ok := find[*appsv1.StatefulSet](objs, "liveroom-nats")
	if !ok {
		t.Fatal("no liveroom-nats StatefulSet")
	}
	if v, _ := flagValue(ss.Spec.Template.Spec.Containers[0].Args, "key-file"); v == "" {
		t.Error("the NATS nodes run without --key-file")
	}
	// The Kubernetes actuator finds a gateway's pod by its id.
	idFromPodName := false
	for _, e := range c.Env {
		if e.Name == "LIVEROOM_GATEWAY_ID" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.name" {
			idFromPodName = true
		}
	}
	if !idFromPodName {
		t.Error("LIVEROOM_GATEWAY_ID is not the pod name")
	}
	if c.Args[0] != "gateway" {
		t.Errorf("gateway container runs %q", c.Args[0])
	}
}

// TestAutoscalerMayDoWhatItDoes: the autoscaler's flags name the gateway
// Deployment, and its Role grants exactly what the Kubernetes actuator
// calls: get and update (and patch) on deployments/scale, get, list and
// patch on pods.
func TestAutoscalerMayDoWhatItDoes(t *testing.T) {
	objs := decodeAll(t)
	d, ok := find[*appsv1.Deployment](objs, "liveroom-autoscale")
	if !ok {
		t.Fatal("no liveroom-autoscale Deployment")
	}
	spec := d.Spec.Template.Spec
	args := spec.Containers[0].Args
	if args[0] != "autoscale" {
		t.Fatalf("autoscale container runs %q", args[0])
	}
	if v, _ := flagValue(args, "actuator"); v != "kubernetes" {
		t.Errorf("--actuator %q", v)
	}
	target, _ := flagValue(args, "deployment")
	if _, ok := find[*appsv1.Deployment](objs, target); !ok {
		t.Errorf("--deployment %q names no Deployment", target)
	}
	if *d.Spec.Replicas != 1 || d.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType {
		t.Error("the autoscaler must run alone: one replica, Recreate")
	}
	// The capacity file it is given parses.
	cm, ok := find[*corev1.ConfigMap](objs, "liveroom-capacity")
	if !ok {
		t.Fatal("no liveroom-capacity ConfigMap")
	}
	f := filepath.Join(t.TempDir(), "capacity.json")
	if err := os.WriteFile(f, []byte(cm.Data["capacity.json"]), 0o644); err != nil {
		t.Fatal(err)
	}
	if c, err := autoscale.LoadCapacity(f); err != nil || c.Validate() != nil {
		t.Errorf("capacity.json: %+v, %v", c, err)
	}

	var binding *rbacv1.RoleBinding
	for _, o := range objs {
		if rb, ok := o.obj.(*rbacv1.RoleBinding); ok {
			for _, s := range rb.Subjects {
				if s.Kind == "ServiceAccount" && s.Name == spec.ServiceAccountName {
					binding = rb
				}
			}
		}
	}
	if binding == nil {
		t.Fatalf("no RoleBinding for service account %q", spec.ServiceAccountName)
	}
	if _, ok := find[*corev1.ServiceAccount](objs, spec.ServiceAccountName); !ok {
		t.Errorf("no ServiceAccount %q", spec.ServiceAccountName)
	}
	role, ok := find[*rbacv1.Role](objs, binding.RoleRef.Name)
	if !ok {
		t.Fatalf("RoleBinding refers to missing Role %q", binding.RoleRef.Name)
	}
	allowed := func(group, resource, name, verb string) bool {
		for _, r := range role.Rules {
			if slices.Contains(r.APIGroups, group) && slices.Contains(r.Resources, resource) && slices.Contains(r.Verbs, verb) &&
				(len(r.ResourceNames) == 0 || slices.Contains(r.ResourceNames, name)) {
				return true
			}
		}
		return false
	}
	for _, need := range []struct{ group, resource, name, verb string }{
		{"apps", "deployments/scale", target, "get"}, {"apps", "deployments/scale", target, "update"}, {"apps", "deployments/scale", target, "patch"},
		{"", "pods", "", "get"}, {"", "pods", "", "list"}, {"", "pods", "", "patch"},
	} {
		if !allowed(need.group, need.resource, need.name, need.verb) {
			t.Errorf("role %s does not allow %s on %s/%s", role.Name, need.verb, need.group, need.resource)
		}
	}
}

// TestHPAScalesOnAnExportedMetric: the alternative HPA targets the gateway
// Deployment on a per-pod metric that gateways really export.
func TestHPAScalesOnAnExportedMetric(t *testing.T) {
	objs := decodeAll(t)
	h, ok := find[*autoscalingv2.HorizontalPodAutoscaler](objs, "liveroom-gateway")
	if !ok {
		t.Fatal("no HPA")
	}
	if h.Spec.ScaleTargetRef.Kind != "Deployment" || h.Spec.ScaleTargetRef.Name != "liveroom-gateway" {
		t.Errorf("HPA scales %+v", h.Spec.ScaleTargetRef)
	}
	if len(h.Spec.Metrics) != 1 || h.Spec.Metrics[0].Type != autoscalingv2.PodsMetricSourceType {
		t.Fatalf("HPA metrics %+v, want one Pods metric", h.Spec.Metrics)
	}
	name := h.Spec.Metrics[0].Pods.Metric.Name
	if h.Spec.Behavior == nil || h.Spec.Behavior.ScaleDown == nil || *h.Spec.Behavior.ScaleDown.StabilizationWindowSeconds < 60 {
		t.Error("HPA scale-down has no stabilisation window")
	}

	if names := exportedMetrics(t); !names[name] {
		t.Errorf("the HPA scales on %q, which gateways do not export", name)
	}
	cm, ok := find[*corev1.ConfigMap](objs, "liveroom-prometheus-adapter-rules")
	if !ok || !strings.Contains(cm.Data["config.yaml"], name) {
		t.Errorf("prometheus-adapter rules do not serve %q", name)
	}
}

// TestScrapedOnTheInternalAddress: /metrics is an operator view; on --addr
// it answers admin tokens only, so every scraped Deployment serves it on
// --internal-addr and Prometheus scrapes that port.
func TestScrapedOnTheInternalAddress(t *testing.T) {
	n := 0
	for _, o := range decodeAll(t) {
		d, ok := o.obj.(*appsv1.Deployment)
		if !ok || d.Spec.Template.Annotations["prometheus.io/scrape"] != "true" {
			continue
		}
		n++
		c := d.Spec.Template.Spec.Containers[0]
		if c.Args[0] == "autoscale" {
			continue // serves operator views only: its --addr is internal
		}
		addr, ok := flagValue(c.Args, "internal-addr")
		if !ok {
			t.Errorf("%s: scraped but has no --internal-addr: /metrics on --addr wants an admin token", d.Name)
			continue
		}
		if port := d.Spec.Template.Annotations["prometheus.io/port"]; !strings.HasSuffix(addr, ":"+port) {
			t.Errorf("%s: prometheus.io/port %q is not the --internal-addr %q", d.Name, port, addr)
		}
	}
	if n < 3 {
		t.Fatalf("%d scraped Deployments, want at least gateway, uplink and dispatch", n)
	}
}
