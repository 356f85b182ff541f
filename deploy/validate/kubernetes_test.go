package validate

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

const k8sDir = "../kubernetes"

// kinds maps each apiVersion/kind the manifests may use to its Go type.
var kinds = map[string]func() any{
	"v1/ConfigMap":                        func() any { return &corev1.ConfigMap{} },
	"v1/Service":                          func() any { return &corev1.Service{} },
	"v1/ServiceAccount":                   func() any { return &corev1.ServiceAccount{} },
	"apps/v1/Deployment":                  func() any { return &appsv1.Deployment{} },
	"apps/v1/StatefulSet":                 func() any { return &appsv1.StatefulSet{} },
	"policy/v1/PodDisruptionBudget":       func() any { return &policyv1.PodDisruptionBudget{} },
	"networking.k8s.io/v1/NetworkPolicy":  func() any { return &networkingv1.NetworkPolicy{} },
	"monitoring.coreos.com/v1/PodMonitor": func() any { return &monitoringv1.PodMonitor{} },
}

// decodeStrict decodes one document into the type its apiVersion and kind
// claim, refusing unknown and duplicate fields (a misspelt or misplaced
// key is silently dropped by kubectl apply).
func decodeStrict(doc []byte) (any, error) {
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal(doc, &tm); err != nil {
		return nil, err
	}
	key := tm.APIVersion + "/" + tm.Kind
	newObj := kinds[key]
	if newObj == nil {
		return nil, fmt.Errorf("apiVersion %q kind %q: not a kind the example uses (add it to kinds)", tm.APIVersion, tm.Kind)
	}
	obj := newObj()
	if err := yaml.UnmarshalStrict(doc, obj); err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	return obj, nil
}

// splitDocs returns the non-empty YAML documents of b.
func splitDocs(t *testing.T, b []byte) [][]byte {
	t.Helper()
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(b)))
	var out [][]byte
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(bytes.TrimSpace(stripComments(doc))) > 0 {
			out = append(out, doc)
		}
	}
}

func stripComments(b []byte) []byte {
	var out []byte
	for _, l := range bytes.Split(b, []byte("\n")) {
		if t := bytes.TrimSpace(l); len(t) > 0 && t[0] != '#' {
			out = append(out, l...)
			out = append(out, '\n')
		}
	}
	return out
}

// kustomization is the part of kustomization.yaml the example uses,
// decoded strictly.
type kustomization struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Resources  []string `json:"resources"`
	Labels     []struct {
		Pairs map[string]string `json:"pairs"`
	} `json:"labels"`
	Images []struct {
		Name    string `json:"name"`
		NewName string `json:"newName"`
		NewTag  string `json:"newTag"`
	} `json:"images"`
}

// Every file of deploy/kubernetes is listed in the kustomization, every
// listed file exists, and every document in them decodes strictly into the
// Kubernetes type it claims.
func TestKubernetesDocumentsDecodeStrictly(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(k8sDir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var k kustomization
	if err := yaml.UnmarshalStrict(raw, &k); err != nil {
		t.Fatalf("kustomization.yaml: %v", err)
	}
	files, _ := filepath.Glob(filepath.Join(k8sDir, "*.yaml"))
	for _, f := range files {
		if base := filepath.Base(f); base != "kustomization.yaml" && !slices.Contains(k.Resources, base) {
			t.Errorf("%s is not in kustomization.yaml's resources", base)
		}
	}
	n := 0
	for _, res := range k.Resources {
		b, err := os.ReadFile(filepath.Join(k8sDir, res))
		if err != nil {
			t.Errorf("kustomization resource: %v", err)
			continue
		}
		for i, doc := range splitDocs(t, b) {
			n++
			if _, err := decodeStrict(doc); err != nil {
				t.Errorf("%s document %d: %v", res, i+1, err)
			}
		}
	}
	if n < 8 {
		t.Errorf("decoded %d documents; want the whole example (at least 8)", n)
	}
}

// The strictness is what makes the test above worth having.
func TestDecodeStrictRejects(t *testing.T) {
	for _, c := range []struct{ name, doc, want string }{
		{"unknown field", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndatta: {}\n", "unknown field"},
		{"misplaced field", "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec: {runAsUser: 1}\n", "unknown field"},
		{"duplicate field", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: {a: b}\ndata: {c: d}\n", "already set"},
		{"wrong type", "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {ports: [{port: http}]}\n", "cannot unmarshal"},
		{"unknown kind", "apiVersion: v1\nkind: Pod\nmetadata: {name: x}\n", "not a kind"},
		{"unknown PodMonitor field", "apiVersion: monitoring.coreos.com/v1\nkind: PodMonitor\nmetadata: {name: x}\nspec: {podMetricsEndpoint: []}\n", "unknown field"},
	} {
		_, err := decodeStrict([]byte(c.doc))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: decodeStrict = %v; want an error with %q", c.name, err, c.want)
		}
	}
}

// built is the example as `kubectl apply -k` would send it.
type built struct {
	deployments  []*appsv1.Deployment
	statefulSets []*appsv1.StatefulSet
	services     []*corev1.Service
	configMaps   map[string]*corev1.ConfigMap
	pdbs         []*policyv1.PodDisruptionBudget
	policies     map[string]*networkingv1.NetworkPolicy
	podMonitors  []*monitoringv1.PodMonitor
}

// build runs kustomize (the library kubectl embeds) on deploy/kubernetes and
// decodes every resulting document strictly.
func build(t *testing.T) *built {
	t.Helper()
	abs, err := filepath.Abs(k8sDir)
	if err != nil {
		t.Fatal(err)
	}
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	rm, err := k.Run(filesys.MakeFsOnDisk(), abs)
	if err != nil {
		t.Fatalf("kustomize build: %v", err)
	}
	out, err := rm.AsYaml()
	if err != nil {
		t.Fatal(err)
	}
	b := &built{configMaps: map[string]*corev1.ConfigMap{}, policies: map[string]*networkingv1.NetworkPolicy{}}
	for _, doc := range splitDocs(t, out) {
		obj, err := decodeStrict(doc)
		if err != nil {
			t.Fatalf("kustomize output: %v", err)
		}
		switch o := obj.(type) {
		case *appsv1.Deployment:
			b.deployments = append(b.deployments, o)
		case *appsv1.StatefulSet:
			b.statefulSets = append(b.statefulSets, o)
		case *corev1.Service:
			b.services = append(b.services, o)
		case *corev1.ConfigMap:
			b.configMaps[o.Name] = o
		case *policyv1.PodDisruptionBudget:
			b.pdbs = append(b.pdbs, o)
		case *networkingv1.NetworkPolicy:
			b.policies[o.Name] = o
		case *monitoringv1.PodMonitor:
			b.podMonitors = append(b.podMonitors, o)
		}
	}
	if len(b.deployments) != 1 || len(b.statefulSets) != 1 {
		t.Fatalf("want one Deployment (app) and one StatefulSet (redis); got %d and %d", len(b.deployments), len(b.statefulSets))
	}
	return b
}

func (b *built) app() *appsv1.Deployment { return b.deployments[0] }

func container(t *testing.T, spec *corev1.PodSpec, name string) *corev1.Container {
	t.Helper()
	for i := range spec.Containers {
		if spec.Containers[i].Name == name {
			return &spec.Containers[i]
		}
	}
	t.Fatalf("no container %q", name)
	return nil
}

// dockerUser is the numeric uid and gid of deploy/Dockerfile's last USER.
func dockerUser(t *testing.T) (uid, gid int64) {
	t.Helper()
	b, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^USER\s+(\S+)\s*$`).FindAllStringSubmatch(string(b), -1)
	if len(m) == 0 {
		t.Fatal("deploy/Dockerfile has no USER")
	}
	u, g, _ := strings.Cut(m[len(m)-1][1], ":")
	uid, err1 := strconv.ParseInt(u, 10, 64)
	gid, err2 := strconv.ParseInt(g, 10, 64)
	if err1 != nil || err2 != nil {
		t.Fatalf("Dockerfile USER %q is not numeric uid:gid: the kubelet cannot verify runAsNonRoot with a name", m[len(m)-1][1])
	}
	return uid, gid
}

// Issue 12: runAsNonRoot without a numeric user (and an image whose USER is
// a name) makes the kubelet refuse to start the pod. Every container of the
// example runs as a numeric non-root user, with a read-only root
// filesystem, no capabilities, no privilege escalation, the runtime's
// seccomp profile, and resources; tollgate's user is the image's.
func TestKubernetesPodsAreHardened(t *testing.T) {
	b := build(t)
	pods := map[string]*corev1.PodSpec{
		"Deployment/" + b.app().Name:            &b.app().Spec.Template.Spec,
		"StatefulSet/" + b.statefulSets[0].Name: &b.statefulSets[0].Spec.Template.Spec,
	}
	for where, spec := range pods {
		psc := spec.SecurityContext
		if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot {
			t.Errorf("%s: pod securityContext.runAsNonRoot is not true", where)
		}
		if psc == nil || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
			t.Errorf("%s: pod seccompProfile is not RuntimeDefault", where)
		}
		if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
			t.Errorf("%s: automountServiceAccountToken is not false", where)
		}
		for _, c := range spec.Containers {
			checkContainer(t, where+"/"+c.Name, psc, c)
		}
	}
	uid, gid := dockerUser(t)
	sc := container(t, &b.app().Spec.Template.Spec, "tollgate").SecurityContext
	if sc.RunAsUser == nil || *sc.RunAsUser != uid || sc.RunAsGroup == nil || *sc.RunAsGroup != gid {
		t.Errorf("tollgate runs as %v:%v; want the Dockerfile's USER %d:%d", deref(sc.RunAsUser), deref(sc.RunAsGroup), uid, gid)
	}
}

func deref(p *int64) any {
	if p == nil {
		return "unset"
	}
	return *p
}

func checkContainer(t *testing.T, where string, psc *corev1.PodSecurityContext, c corev1.Container) {
	t.Helper()
	sc := c.SecurityContext
	if sc == nil {
		t.Errorf("%s: no securityContext", where)
		return
	}
	uid := sc.RunAsUser
	if uid == nil && psc != nil {
		uid = psc.RunAsUser
	}
	if uid == nil || *uid == 0 {
		t.Errorf("%s: runAsUser = %v; want a numeric non-root user (runAsNonRoot cannot verify a user name)", where, deref(uid))
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Errorf("%s: allowPrivilegeEscalation is not false", where)
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Errorf("%s: readOnlyRootFilesystem is not true", where)
	}
	if sc.Privileged != nil && *sc.Privileged {
		t.Errorf("%s: privileged", where)
	}
	if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) > 0 {
		t.Errorf("%s: capabilities = %+v; want drop [ALL], add none", where, sc.Capabilities)
	}
	req, lim := c.Resources.Requests, c.Resources.Limits
	if req.Cpu().IsZero() || req.Memory().IsZero() || lim.Memory().IsZero() {
		t.Errorf("%s: resources = %+v; want cpu and memory requests and a memory limit", where, c.Resources)
	}
}

// The probes reach tollgate on its admin port: /readyz for readiness (503
// while draining or when Redis or the keys are missing), /healthz for
// liveness.
func TestKubernetesProbesOnAdminPort(t *testing.T) {
	tg := container(t, &build(t).app().Spec.Template.Spec, "tollgate")
	if !hasPort(tg, "admin") {
		t.Fatal("tollgate has no container port named admin")
	}
	for _, c := range []struct {
		name  string
		probe *corev1.Probe
		path  string
	}{{"readinessProbe", tg.ReadinessProbe, "/readyz"}, {"livenessProbe", tg.LivenessProbe, "/healthz"}} {
		if c.probe == nil || c.probe.HTTPGet == nil {
			t.Errorf("%s: want an httpGet probe", c.name)
			continue
		}
		if g := c.probe.HTTPGet; g.Port != intstr.FromString("admin") || g.Path != c.path {
			t.Errorf("%s = %s on port %s; want %s on port admin", c.name, g.Path, g.Port.String(), c.path)
		}
	}
}

func hasPort(c *corev1.Container, name string) bool {
	return slices.ContainsFunc(c.Ports, func(p corev1.ContainerPort) bool { return p.Name == name })
}

func podLabels(d *appsv1.Deployment) labels.Set { return d.Spec.Template.Labels }

func selects(t *testing.T, what string, sel *metav1.LabelSelector, pod labels.Set) {
	t.Helper()
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		t.Fatalf("%s: selector: %v", what, err)
	}
	if s.Empty() || !s.Matches(pod) {
		t.Errorf("%s: selector %v does not select the app's pods %v", what, s, pod)
	}
}

// The Service, the PodDisruptionBudget and the PodMonitor all select the
// app's pods and name ports that exist; the Service exposes only
// tollgate's port.
func TestKubernetesSelectorsAndPorts(t *testing.T) {
	b := build(t)
	pod := podLabels(b.app())
	tg := container(t, &b.app().Spec.Template.Spec, "tollgate")
	var appSvc *corev1.Service
	for _, s := range b.services {
		if s.Name == "app" {
			appSvc = s
		}
	}
	if appSvc == nil {
		t.Fatal("no Service app")
	}
	selects(t, "Service app", &metav1.LabelSelector{MatchLabels: appSvc.Spec.Selector}, pod)
	for _, p := range appSvc.Spec.Ports {
		if p.TargetPort != intstr.FromString("http") || !hasPort(tg, "http") {
			t.Errorf("Service app port %d targets %s; want tollgate's named port http", p.Port, p.TargetPort.String())
		}
	}
	if len(b.pdbs) != 1 {
		t.Fatalf("want one PodDisruptionBudget; got %d", len(b.pdbs))
	}
	selects(t, "PodDisruptionBudget", b.pdbs[0].Spec.Selector, pod)
	if len(b.podMonitors) != 1 {
		t.Fatalf("want one PodMonitor; got %d", len(b.podMonitors))
	}
	pm := b.podMonitors[0]
	selects(t, "PodMonitor", &pm.Spec.Selector, pod)
	for _, e := range pm.Spec.PodMetricsEndpoints {
		if e.Port == nil || *e.Port != "admin" || e.Path != "/metrics" {
			t.Errorf("PodMonitor endpoint = port %v path %q; want admin /metrics", e.Port, e.Path)
		}
	}
}

// The app's pods accept tollgate's port from anywhere and the admin port
// from Prometheus only; no rule opens every port (which would expose the
// app's own port 3000 if it bound the pod IP). Redis accepts the app only.
func TestKubernetesNetworkPolicies(t *testing.T) {
	b := build(t)
	app := b.policies["app"]
	if app == nil {
		t.Fatal("no NetworkPolicy app")
	}
	selects(t, "NetworkPolicy app", &app.Spec.PodSelector, podLabels(b.app()))
	open := map[int]bool{}
	for i, r := range app.Spec.Ingress {
		if len(r.Ports) == 0 {
			t.Errorf("ingress[%d] allows every port", i)
		}
		for _, p := range r.Ports {
			port := p.Port.IntValue()
			switch port {
			case 8080:
				open[port] = true
			case 9090:
				open[port] = true
				if len(r.From) == 0 {
					t.Errorf("ingress[%d]: the admin port is open to everyone; want Prometheus only", i)
				}
				for _, f := range r.From {
					if f.PodSelector == nil || f.PodSelector.MatchLabels["app.kubernetes.io/name"] != "prometheus" {
						t.Errorf("ingress[%d]: admin port allowed from %+v; want Prometheus pods", i, f)
					}
				}
			default:
				t.Errorf("ingress[%d] opens port %s; want only 8080 and 9090", i, p.Port.String())
			}
		}
	}
	if !open[8080] || !open[9090] {
		t.Errorf("ports opened = %v; want 8080 and 9090", open)
	}
	redis := b.policies["redis"]
	if redis == nil {
		t.Fatal("no NetworkPolicy redis")
	}
	selects(t, "NetworkPolicy redis", &redis.Spec.PodSelector, b.statefulSets[0].Spec.Template.Labels)
	for i, r := range redis.Spec.Ingress {
		for _, f := range r.From {
			if f.PodSelector == nil {
				t.Errorf("redis ingress[%d] from %+v; want the app's pods only", i, f)
				continue
			}
			selects(t, fmt.Sprintf("redis ingress[%d]", i), f.PodSelector, podLabels(b.app()))
		}
		if len(r.From) == 0 {
			t.Errorf("redis ingress[%d] is open to everyone", i)
		}
	}
}

// README "Metering": exactly once assumes Redis keeps acknowledged writes:
// AOF with appendfsync always, and nothing evicted.
func TestKubernetesRedisIsDurable(t *testing.T) {
	b := build(t)
	ss := b.statefulSets[0]
	var confMap string
	for _, v := range ss.Spec.Template.Spec.Volumes {
		if v.ConfigMap != nil {
			confMap = v.ConfigMap.Name
		}
	}
	cm := b.configMaps[confMap]
	if cm == nil {
		t.Fatalf("the redis StatefulSet mounts ConfigMap %q, which is not in the example", confMap)
	}
	conf := cm.Data["redis.conf"]
	for _, want := range []string{"appendonly yes", "appendfsync always", "maxmemory-policy noeviction"} {
		if !regexp.MustCompile(`(?m)^\s*` + regexp.QuoteMeta(want) + `\s*$`).MatchString(conf) {
			t.Errorf("redis.conf lacks %q", want)
		}
	}
	c := container(t, &ss.Spec.Template.Spec, "redis")
	if !slices.Contains(c.Args, "/etc/redis/redis.conf") {
		t.Errorf("redis args %v do not load /etc/redis/redis.conf", c.Args)
	}
	if len(ss.Spec.VolumeClaimTemplates) == 0 {
		t.Error("redis has no volumeClaimTemplates: the AOF would not survive the pod")
	}
}
