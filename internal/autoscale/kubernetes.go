package autoscale

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	appsclient "k8s.io/client-go/kubernetes/typed/apps/v1"
	coreclient "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/util/retry"
)

// DeletionCostAnnotation is the pod annotation a ReplicaSet reads to choose
// which pod to delete when it is scaled down: the lowest cost goes first.
const DeletionCostAnnotation = "controller.kubernetes.io/pod-deletion-cost"

// DrainedDeletionCost is the cost given to a drained pod, far below the
// default 0 of the others.
const DrainedDeletionCost = "-1000"

// KubernetesConfig configures the Kubernetes actuator.
type KubernetesConfig struct {
	// Client talks to the API server: the apps and core groups only (a
	// kubernetes.Interface, such as client-go's fake clientset, is one).
	// Required.
	Client KubernetesClientset
	// Namespace and Deployment name the gateways' Deployment. Required.
	Namespace, Deployment string
	// Logger; default slog.Default().
	Logger *slog.Logger
}

// Kubernetes is the actuator that scales a Deployment of gateways through
// its scale subresource. The gateway id must be the pod name (the manifests
// set LIVEROOM_GATEWAY_ID from metadata.name). Scale-in marks the drained
// pod with a pod-deletion-cost of -1000 before lowering the replica count,
// so that the ReplicaSet deletes that pod and not a loaded one. It needs
// get and update on deployments/scale, and get, list and patch on pods.
//
// The warm spare (Policy.Spare) is part of the replica count like any other
// gateway, and a pod's ready time, which the Scaler measures and plans with,
// runs from its creation (or from when the replicas were raised, while the
// ReplicaSet has not created it: Members' placeholders) to its first beat,
// so scheduling and the image pull are in it.
type Kubernetes struct {
	cfg KubernetesConfig
	log *slog.Logger

	mu           sync.Mutex
	deficitSince time.Time // since when replicas exceed the pods listed
}

var _ Actuator = (*Kubernetes)(nil)

// KubernetesClientset is the part of client-go's kubernetes.Interface the
// actuator uses. Depending on it rather than on the whole clientset keeps
// the other API groups' clients out of the binary.
type KubernetesClientset interface {
	AppsV1() appsclient.AppsV1Interface
	CoreV1() coreclient.CoreV1Interface
}

// NewKubernetes validates cfg.
func NewKubernetes(cfg KubernetesConfig) (*Kubernetes, error) {
	if cfg.Client == nil || cfg.Namespace == "" || cfg.Deployment == "" {
		return nil, errors.New("cannot use kubernetes: a client, a namespace and a deployment are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Kubernetes{cfg: cfg, log: cfg.Logger.With("actuator", "kubernetes", "deployment", cfg.Namespace+"/"+cfg.Deployment)}, nil
}

// KubernetesClient connects with a kubeconfig file, or from inside the
// cluster (the pod's service account) when kubeconfig is empty.
func KubernetesClient(kubeconfig string) (KubernetesClientset, error) {
	var rc *rest.Config
	var err error
	if kubeconfig == "" {
		rc, err = rest.InClusterConfig()
	} else {
		rc, err = clientcmd.BuildConfigFromFlags("", kubeconfig)
	}
	if err != nil {
		return nil, fmt.Errorf("cannot configure the kubernetes client: %w", err)
	}
	rc.UserAgent = "liveroom-autoscale"
	apps, err := appsclient.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("cannot create the kubernetes client: %w", err)
	}
	core, err := coreclient.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("cannot create the kubernetes client: %w", err)
	}
	return clientset{apps, core}, nil
}

type clientset struct {
	apps appsclient.AppsV1Interface
	core coreclient.CoreV1Interface
}

func (c clientset) AppsV1() appsclient.AppsV1Interface { return c.apps }
func (c clientset) CoreV1() coreclient.CoreV1Interface { return c.core }

// Members lists the Deployment's pods that are not terminating, and one
// member without an id for each replica asked for whose pod does not exist
// yet.
func (k *Kubernetes) Members(ctx context.Context) ([]Member, error) {
	sc, err := k.cfg.Client.AppsV1().Deployments(k.cfg.Namespace).GetScale(ctx, k.cfg.Deployment, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("cannot read the scale of %s: %w", k.cfg.Deployment, err)
	}
	if sc.Status.Selector == "" {
		return nil, fmt.Errorf("the scale of %s has no selector", k.cfg.Deployment)
	}
	pods, err := k.cfg.Client.CoreV1().Pods(k.cfg.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sc.Status.Selector})
	if err != nil {
		return nil, fmt.Errorf("cannot list the pods of %s: %w", k.cfg.Deployment, err)
	}
	var out []Member
	for _, p := range pods.Items {
		if p.DeletionTimestamp != nil || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		out = append(out, Member{ID: p.Name, Since: p.CreationTimestamp.Time})
	}
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.ID, b.ID) })
	k.mu.Lock()
	defer k.mu.Unlock()
	missing := int(sc.Spec.Replicas) - len(out)
	if missing <= 0 {
		k.deficitSince = time.Time{}
		return out, nil
	}
	if k.deficitSince.IsZero() {
		k.deficitSince = time.Now()
	}
	for range missing {
		out = append(out, Member{Since: k.deficitSince})
	}
	return out, nil
}

// Add raises the Deployment's replicas by n.
func (k *Kubernetes) Add(ctx context.Context, n int) error {
	from, to, err := k.scaleBy(ctx, n)
	if err != nil {
		return err
	}
	k.log.Info("scaled out", "from", from, "to", to)
	return nil
}

// Remove marks pod id with the lowest deletion cost, then lowers the
// replicas by one so that the ReplicaSet deletes that pod. A pod that no
// longer exists is not scaled down for: its replacement, if any, is a new
// gateway the Scaler will count.
func (k *Kubernetes) Remove(ctx context.Context, id string) error {
	patch := fmt.Appendf(nil, `{"metadata":{"annotations":{%q:%q}}}`, DeletionCostAnnotation, DrainedDeletionCost)
	_, err := k.cfg.Client.CoreV1().Pods(k.cfg.Namespace).Patch(ctx, id, types.MergePatchType, patch, metav1.PatchOptions{})
	if apierrors.IsNotFound(err) {
		k.log.Info("drained pod already gone; replicas left as they are", "pod", id)
		return nil
	}
	if err != nil {
		return fmt.Errorf("cannot mark pod %s for deletion: %w", id, err)
	}
	from, to, err := k.scaleBy(ctx, -1)
	if err != nil {
		return err
	}
	k.log.Info("scaled in", "pod", id, "from", from, "to", to)
	return nil
}

// scaleBy changes the replicas by delta (never below zero) through the
// scale subresource; the update carries the resourceVersion read, so a
// concurrent change makes it fail with a conflict and it is redone.
func (k *Kubernetes) scaleBy(ctx context.Context, delta int) (from, to int32, err error) {
	deps := k.cfg.Client.AppsV1().Deployments(k.cfg.Namespace)
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		sc, err := deps.GetScale(ctx, k.cfg.Deployment, metav1.GetOptions{})
		if err != nil {
			return err
		}
		from = sc.Spec.Replicas
		to = max(0, from+int32(delta))
		if to == from {
			return nil
		}
		sc.Spec.Replicas = to
		_, err = deps.UpdateScale(ctx, k.cfg.Deployment, sc, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return 0, 0, fmt.Errorf("cannot scale %s by %d: %w", k.cfg.Deployment, delta, err)
	}
	return from, to, nil
}
