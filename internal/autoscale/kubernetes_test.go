package autoscale

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/liveroom/liveroom/internal/bus"
	"github.com/liveroom/liveroom/internal/testutil"
)

const ns = "liveroom"

// fakeCluster is client-go's fake clientset holding the gateway Deployment
// and its pods. The fake has no scale subresource of its own (it would hand
// back the Deployment), so reactors serve deployments/scale from the
// tracked Deployment as the API server does: spec.replicas, the selector
// as a string, and a conflict when the resourceVersion is stale.
type fakeCluster struct {
	*fake.Clientset
	version int
	// conflicts makes the next N scale updates fail with a conflict, as if
	// someone else had scaled in between.
	conflicts int
}

func newFakeCluster(t *testing.T, replicas int32, pods ...string) *fakeCluster {
	t.Helper()
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "liveroom-gateway", Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "liveroom-gateway"}},
		},
	}
	objs := []runtime.Object{dep}
	for i, name := range pods {
		objs = append(objs, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: ns, Labels: map[string]string{"app": "liveroom-gateway"},
			CreationTimestamp: metav1.NewTime(time.Now().Add(-time.Duration(i+1) * time.Minute)),
		}, Status: corev1.PodStatus{Phase: corev1.PodRunning}})
	}
	// Another app's pod in the namespace must not be listed.
	objs = append(objs, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "uplink-1", Namespace: ns, Labels: map[string]string{"app": "liveroom-uplink"}}})
	fc := &fakeCluster{Clientset: fake.NewClientset(objs...), version: 1}
	deployments := schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}
	getDep := func(name string) (*appsv1.Deployment, error) {
		obj, err := fc.Tracker().Get(deployments, ns, name)
		if err != nil {
			return nil, err
		}
		return obj.(*appsv1.Deployment), nil
	}
	toScale := func(d *appsv1.Deployment) *autoscalingv1.Scale {
		sel, _ := metav1.LabelSelectorAsSelector(d.Spec.Selector)
		return &autoscalingv1.Scale{
			ObjectMeta: metav1.ObjectMeta{Name: d.Name, Namespace: d.Namespace, ResourceVersion: fmt.Sprint(fc.version)},
			Spec:       autoscalingv1.ScaleSpec{Replicas: *d.Spec.Replicas},
			Status:     autoscalingv1.ScaleStatus{Replicas: *d.Spec.Replicas, Selector: sel.String()},
		}
	}
	fc.PrependReactor("get", "deployments", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.GetSubresource() != "scale" {
			return false, nil, nil
		}
		d, err := getDep(a.(k8stesting.GetAction).GetName())
		if err != nil {
			return true, nil, err
		}
		return true, toScale(d), nil
	})
	fc.PrependReactor("update", "deployments", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.GetSubresource() != "scale" {
			return false, nil, nil
		}
		sc := a.(k8stesting.UpdateAction).GetObject().(*autoscalingv1.Scale)
		gr := schema.GroupResource{Group: "apps", Resource: "deployments/scale"}
		if fc.conflicts > 0 {
			fc.conflicts--
			fc.version++ // someone else wrote
			return true, nil, apierrors.NewConflict(gr, sc.Name, fmt.Errorf("the object has been modified"))
		}
		if sc.ResourceVersion != fmt.Sprint(fc.version) {
			return true, nil, apierrors.NewConflict(gr, sc.Name, fmt.Errorf("stale resourceVersion %s", sc.ResourceVersion))
		}
		d, err := getDep(sc.Name)
		if err != nil {
			return true, nil, err
		}
		d = d.DeepCopy()
		d.Spec.Replicas = &sc.Spec.Replicas
		if err := fc.Tracker().Update(deployments, d, ns); err != nil {
			return true, nil, err
		}
		fc.version++
		return true, toScale(d), nil
	})
	return fc
}

func (fc *fakeCluster) replicas(t *testing.T) int32 {
	t.Helper()
	d, err := fc.AppsV1().Deployments(ns).Get(context.Background(), "liveroom-gateway", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return *d.Spec.Replicas
}

func newK8s(t *testing.T, fc *fakeCluster) *Kubernetes {
	t.Helper()
	k, err := NewKubernetes(KubernetesConfig{Client: fc, Namespace: ns, Deployment: "liveroom-gateway", Logger: testutil.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestKubernetesMembers(t *testing.T) {
	ctx := context.Background()
	fc := newFakeCluster(t, 4, "gw-a", "gw-b", "gw-c")
	// A terminating pod is not a member.
	terminating := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "gw-old", Namespace: ns, Labels: map[string]string{"app": "liveroom-gateway"},
		DeletionTimestamp: &metav1.Time{Time: time.Now()}, Finalizers: []string{"x"}}}
	if _, err := fc.CoreV1().Pods(ns).Create(ctx, terminating, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	k := newK8s(t, fc)
	ms, err := k.Members(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Three pods, plus one replica asked for whose pod does not exist yet.
	if len(ms) != 4 || ms[0].ID != "gw-a" || ms[1].ID != "gw-b" || ms[2].ID != "gw-c" || ms[3].ID != "" {
		t.Fatalf("members %+v, want gw-a, gw-b, gw-c and one placeholder", ms)
	}
	first := ms[3].Since
	time.Sleep(5 * time.Millisecond)
	ms, _ = k.Members(ctx)
	if !ms[3].Since.Equal(first) {
		t.Errorf("placeholder's Since moved from %v to %v: a pod that never appears must stop counting", first, ms[3].Since)
	}
}

func TestKubernetesScaleOut(t *testing.T) {
	fc := newFakeCluster(t, 2, "gw-a", "gw-b")
	fc.conflicts = 2
	k := newK8s(t, fc)
	if err := k.Add(context.Background(), 2); err != nil {
		t.Fatal(err)
	}
	if got := fc.replicas(t); got != 4 {
		t.Fatalf("replicas %d after adding 2 to 2 (through two conflicts), want 4", got)
	}
}

func TestKubernetesScaleInMarksTheDrainedPodFirst(t *testing.T) {
	ctx := context.Background()
	fc := newFakeCluster(t, 3, "gw-a", "gw-b", "gw-c")
	k := newK8s(t, fc)
	fc.ClearActions()
	if err := k.Remove(ctx, "gw-b"); err != nil {
		t.Fatal(err)
	}
	if got := fc.replicas(t); got != 2 {
		t.Fatalf("replicas %d, want 2", got)
	}
	pod, err := fc.CoreV1().Pods(ns).Get(ctx, "gw-b", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if c := pod.Annotations[DeletionCostAnnotation]; c != "-1000" {
		t.Errorf("gw-b deletion cost %q, want -1000", c)
	}
	for _, other := range []string{"gw-a", "gw-c"} {
		p, _ := fc.CoreV1().Pods(ns).Get(ctx, other, metav1.GetOptions{})
		if _, ok := p.Annotations[DeletionCostAnnotation]; ok {
			t.Errorf("%s was marked too", other)
		}
	}
	// The order matters: the mark must be in place before the ReplicaSet
	// picks a pod to delete.
	var order []string
	for _, a := range fc.Actions() {
		switch {
		case a.GetVerb() == "patch" && a.GetResource().Resource == "pods":
			order = append(order, "mark "+a.(k8stesting.PatchAction).GetName())
			var body map[string]any
			if err := json.Unmarshal(a.(k8stesting.PatchAction).GetPatch(), &body); err != nil {
				t.Errorf("patch is not JSON: %v", err)
			}
		case a.GetVerb() == "update" && a.GetSubresource() == "scale":
			order = append(order, "scale")
		}
	}
	if fmt.Sprint(order) != "[mark gw-b scale]" {
		t.Errorf("actions %v, want the mark then the scale update", order)
	}
}

func TestKubernetesScaleInOfAVanishedPodKeepsReplicas(t *testing.T) {
	fc := newFakeCluster(t, 3, "gw-a", "gw-c")
	k := newK8s(t, fc)
	if err := k.Remove(context.Background(), "gw-b"); err != nil {
		t.Fatal(err)
	}
	if got := fc.replicas(t); got != 3 {
		t.Errorf("replicas %d, want 3 left alone: another pod would go instead", got)
	}
}

func TestKubernetesErrors(t *testing.T) {
	if _, err := NewKubernetes(KubernetesConfig{Namespace: ns, Deployment: "x"}); err == nil {
		t.Error("no client: want an error")
	}
	fc := newFakeCluster(t, 1, "gw-a")
	k, _ := NewKubernetes(KubernetesConfig{Client: fc, Namespace: ns, Deployment: "missing", Logger: testutil.Logger()})
	if _, err := k.Members(context.Background()); err == nil {
		t.Error("members of a missing deployment: want an error")
	}
	if err := k.Add(context.Background(), 1); err == nil {
		t.Error("scaling a missing deployment: want an error")
	}
}

// TestKubernetesSpareAndReadyTime: on Kubernetes the spare is part of the
// replica count, and the ready time is measured from the pod's creation to
// its first beat. One pod beats with 300 viewers (need 2 at 210 per pod):
// the Deployment goes to 3; the new pod (created now) beats 2 s later.
func TestKubernetesSpareAndReadyTime(t *testing.T) {
	ctx := context.Background()
	fc := newFakeCluster(t, 1, "gw-a")
	k := newK8s(t, fc)
	p := Policy{Min: 1, Max: 10, Spare: 1, Capacity: Capacity{Conns: 300, Target: 0.7}}.WithDefaults()
	f := newView(t)
	rc := readyClock{from: time.Now().Add(-time.Second)}
	now := time.Now()
	f.Observe(bus.Beat{ID: "gw-a", State: bus.StateActive, Conns: 300, IntervalMS: 1000, Started: 1}, now)
	ms, err := k.Members(ctx)
	if err != nil {
		t.Fatal(err)
	}
	d := Decide(State{}, Inputs{Policy: p, Gateways: loads(f.All(now)), Members: ms}, now)
	if d.Desired != 3 || d.Add != 2 || !strings.Contains(d.Why, "+ 1 spare = 3") {
		t.Fatalf("decision %s add %d desired %d: %s", d.Action, d.Add, d.Desired, d.Why)
	}
	if err := k.Add(ctx, d.Add); err != nil {
		t.Fatal(err)
	}
	if got := fc.replicas(t); got != 3 {
		t.Fatalf("replicas %d, want need 2 + spare 1", got)
	}
	// The ReplicaSet creates the pods; one beats 2 s after its creation.
	for _, name := range []string{"gw-b", "gw-c"} {
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{"app": "liveroom-gateway"},
			CreationTimestamp: metav1.NewTime(now)}, Status: corev1.PodStatus{Phase: corev1.PodPending}}
		if _, err := fc.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	ms, _ = k.Members(ctx)
	f.Observe(bus.Beat{ID: "gw-b", State: bus.StateActive, IntervalMS: 1000, Started: 2}, now.Add(2*time.Second))
	rc.observe(ms, f, time.Minute)
	if got := rc.estimate(); got < 2*time.Second-time.Second || got > 2*time.Second+time.Second {
		t.Errorf("measured ready time %v, want about 2s (pod creation to first beat)", got)
	}
}
