// Package kubernetes_test checks the kustomize base in this folder and the
// example overlay (../overlays/example), rendered with kustomize's own Go
// API: every object decodes strictly into the API type its kind names (an
// unknown or misspelt field fails), they refer to each other consistently,
// the settings and the pod spec agree (grace, memory, storage, probes), and
// the KEDA query, run against a real PostgreSQL database with known rows as
// the read-only role of keda-role.sql, yields the replica counts the README
// promises. Its own module keeps k8s.io, KEDA and kustomize out of the
// worker's dependencies.
package kubernetes_test

import (
	"fmt"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	kedav1alpha1 "github.com/kedacore/keda/v2/apis/keda/v1alpha1"
	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"github.com/urfave/cli/v2"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"github.com/ade-org/ade-worker/pkg/settings"
	"github.com/ade-org/ade-worker/pkg/supervisor"
)

// renders are the kustomizations the checks run on: the base and the
// example overlay.
var renders = []string{".", "../overlays/example"}

// manifests holds every object of one rendered kustomization, decoded.
type manifests struct {
	deployment     *appsv1.Deployment
	secrets        []*corev1.Secret
	configMap      *corev1.ConfigMap
	serviceAccount *corev1.ServiceAccount
	pvcs           []*corev1.PersistentVolumeClaim
	pdb            *policyv1.PodDisruptionBudget
	networkPolicy  *networkingv1.NetworkPolicy
	scaledObject   *kedav1alpha1.ScaledObject
	triggerAuth    *kedav1alpha1.TriggerAuthentication
	prometheusRule *monitoringv1.PrometheusRule
}

// slots maps each apiVersion/kind the kustomization may hold to the field
// of m its objects decode into: a new kind is a field above and a line here.
func (m *manifests) slots() map[string]slot {
	return map[string]slot{
		"apps/v1/Deployment":                      one(&m.deployment),
		"v1/Secret":                               many(&m.secrets),
		"v1/ConfigMap":                            one(&m.configMap),
		"v1/ServiceAccount":                       one(&m.serviceAccount),
		"v1/PersistentVolumeClaim":                many(&m.pvcs),
		"policy/v1/PodDisruptionBudget":           one(&m.pdb),
		"networking.k8s.io/v1/NetworkPolicy":      one(&m.networkPolicy),
		"keda.sh/v1alpha1/ScaledObject":           one(&m.scaledObject),
		"keda.sh/v1alpha1/TriggerAuthentication":  one(&m.triggerAuth),
		"monitoring.coreos.com/v1/PrometheusRule": one(&m.prometheusRule),
	}
}

// secret is the Secret named name.
func (m *manifests) secret(t *testing.T, name string) *corev1.Secret {
	t.Helper()
	for _, s := range m.secrets {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("no Secret %s", name)
	return nil
}

// slot is where load puts the objects of one kind.
type slot struct {
	put    func(data []byte) error // decodes one object strictly into the field
	filled func() bool
}

// one is the slot of a kind the checks expect exactly one object of.
func one[T any](field **T) slot {
	return slot{
		put: func(data []byte) error {
			if *field != nil {
				return fmt.Errorf("a second %T; the checks expect one", *field)
			}
			var err error
			*field, err = decodeStrict[T](data)
			return err
		},
		filled: func() bool { return *field != nil },
	}
}

// many is the slot of a kind the kustomization may hold several objects of.
func many[T any](field *[]*T) slot {
	return slot{
		put: func(data []byte) error {
			obj, err := decodeStrict[T](data)
			*field = append(*field, obj)
			return err
		},
		filled: func() bool { return len(*field) > 0 },
	}
}

func decodeStrict[T any](data []byte) (*T, error) {
	obj := new(T)
	if err := yaml.UnmarshalStrict(data, obj); err != nil {
		return nil, fmt.Errorf("does not decode strictly into %T: %w", obj, err)
	}
	return obj, nil
}

// render builds the kustomization in dir as `kubectl kustomize` does and
// decodes every object it yields strictly.
func render(t *testing.T, dir string) *manifests {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	res, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	m := &manifests{}
	slots := m.slots()
	for _, r := range res.Resources() {
		data, err := r.AsYAML()
		if err != nil {
			t.Fatal(err)
		}
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal(data, &tm); err != nil {
			t.Fatalf("%s: %s: %v", dir, r.CurId(), err)
		}
		s, ok := slots[tm.APIVersion+"/"+tm.Kind]
		if !ok {
			t.Fatalf("%s: kind %s/%s is not one this test knows: add it to slots", dir, tm.APIVersion, tm.Kind)
		}
		if err := s.put(data); err != nil {
			t.Fatalf("%s: %s: %v", dir, r.CurId(), err)
		}
	}
	return m
}

// eachRender runs fn on the base and on the example overlay.
func eachRender(t *testing.T, fn func(t *testing.T, m *manifests)) {
	for _, dir := range renders {
		t.Run(strings.TrimPrefix(dir, "../"), func(t *testing.T) { fn(t, render(t, dir)) })
	}
}

func TestManifestsDecodeStrictly(t *testing.T) {
	eachRender(t, func(t *testing.T, m *manifests) {
		for kind, s := range m.slots() {
			if !s.filled() {
				t.Errorf("no %s object", kind)
			}
		}
	})
}

// A misspelt field must fail, or the strict decoding above proves nothing.
func TestStrictDecodingRejectsUnknownFields(t *testing.T) {
	bad := []byte("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec:\n  replica: 2\n")
	if err := yaml.UnmarshalStrict(bad, &appsv1.Deployment{}); err == nil {
		t.Fatal("spec.replica (for replicas) decoded without error")
	}
	badSO := []byte("apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata: {name: x}\nspec:\n  scaleTargetRef: {name: x}\n  maxReplicas: 3\n")
	if err := yaml.UnmarshalStrict(badSO, &kedav1alpha1.ScaledObject{}); err == nil {
		t.Fatal("ScaledObject spec.maxReplicas (for maxReplicaCount) decoded without error")
	}
}

// workerSettings reads the ConfigMap (and the Secret's database URL) the way
// the supervisor does at start: through its own flags and checks.
func workerSettings(t *testing.T, m *manifests) *settings.Settings {
	t.Helper()
	for k, v := range m.configMap.Data {
		t.Setenv(k, v)
	}
	t.Setenv("ADE_DATABASE_URL", m.secret(t, "ade-worker-database").StringData["ADE_DATABASE_URL"])
	var cfg *settings.Settings
	app := &cli.App{Name: "supervisor", Flags: settings.Flags(), Action: func(c *cli.Context) error {
		var err error
		cfg, err = settings.FromCLI(c)
		return err
	}}
	if err := app.Run([]string{"supervisor"}); err != nil {
		t.Fatalf("the ConfigMap's settings do not start a supervisor: %v", err)
	}
	return cfg
}

func TestDeploymentSettings(t *testing.T) {
	eachRender(t, func(t *testing.T, m *manifests) {
		d := m.deployment
		pod := d.Spec.Template.Spec
		if len(pod.Containers) != 1 {
			t.Fatalf("want one container, got %d", len(pod.Containers))
		}
		c := pod.Containers[0]
		env := m.configMap.Data
		cfg := workerSettings(t, m)

		// The kubelet's SIGKILL must come after the supervisor's worst case.
		bound := supervisor.ShutdownBound(cfg)
		if pod.TerminationGracePeriodSeconds == nil || time.Duration(*pod.TerminationGracePeriodSeconds)*time.Second <= bound {
			t.Errorf("terminationGracePeriodSeconds %d must exceed the worst-case shutdown %s (shutdown grace %s + kill grace + lease %s)",
				ptrOr(pod.TerminationGracePeriodSeconds), bound, cfg.ShutdownGrace, cfg.LeaseSeconds)
		}
		if env["ADE_WORKER_HTTP_ADDR"] != ":9464" || len(c.Ports) != 1 || c.Ports[0].ContainerPort != 9464 {
			t.Errorf("the probes' port %v must be ADE_WORKER_HTTP_ADDR %q", c.Ports, env["ADE_WORKER_HTTP_ADDR"])
		}
		for probe, path := range map[*corev1.Probe]string{c.LivenessProbe: "/livez", c.ReadinessProbe: "/readyz", c.StartupProbe: "/livez"} {
			if probe == nil || probe.HTTPGet == nil || probe.HTTPGet.Path != path || probe.HTTPGet.Port.String() != c.Ports[0].Name {
				t.Errorf("want an HTTP probe on %s port %s, got %+v", path, c.Ports[0].Name, probe)
			}
		}
		checkSecurity(t, pod, c.SecurityContext)
		if pod.SecurityContext.FSGroupChangePolicy == nil || *pod.SecurityContext.FSGroupChangePolicy != corev1.FSGroupChangeOnRootMismatch {
			t.Error("fsGroupChangePolicy must be OnRootMismatch: the shared workspaces volume is not walked at every start")
		}
		checkImage(t, c.Image)
		checkMemory(t, cfg, c.Resources)
		checkStorage(t, c.Resources, pod.Volumes)
		if c.Resources.Requests.Cpu().IsZero() {
			t.Errorf("cpu request missing: %v", c.Resources.Requests)
		}
		checkEnvFrom(t, m, "Deployment", c.EnvFrom)
		checkMounts(t, m, c.VolumeMounts, pod.Volumes)
		if !subset(d.Spec.Selector.MatchLabels, d.Spec.Template.Labels) {
			t.Errorf("Deployment selector %v does not match its template labels", d.Spec.Selector.MatchLabels)
		}
	})
}

// checkImage: an image pinned by a tag, never :latest or untagged.
func checkImage(t *testing.T, image string) {
	t.Helper()
	name, tag, ok := strings.Cut(image[strings.LastIndex(image, "/")+1:], ":")
	if !ok || tag == "" || tag == "latest" || name == "" {
		t.Errorf("image %q must carry the tag its build set (kustomization.yaml images:), not :latest or none", image)
	}
}

// supervisorOverhead is the memory the supervisor itself needs beside its
// jobs (Go runtime, database driver, buffers).
var supervisorOverhead = resource.MustParse("512Mi")

// checkMemory: the pod's limit holds every job at its own limit plus the
// supervisor, so a job hits its RLIMIT_AS before the pod hits the OOM killer.
func checkMemory(t *testing.T, cfg *settings.Settings, res corev1.ResourceRequirements) {
	t.Helper()
	if cfg.JobMemoryMB <= 0 {
		t.Fatal("ADE_WORKER_JOB_MEMORY_MB is unset: one job could use the whole pod's memory")
	}
	need := resource.NewQuantity(int64(cfg.Concurrency)*int64(cfg.JobMemoryMB)<<20, resource.BinarySI)
	need.Add(supervisorOverhead)
	limit, ok := res.Limits[corev1.ResourceMemory]
	if !ok || limit.Cmp(*need) < 0 {
		t.Errorf("memory limit %v < ADE_WORKER_CONCURRENCY %d x ADE_WORKER_JOB_MEMORY_MB %d MB + %v = %v",
			limit.String(), cfg.Concurrency, cfg.JobMemoryMB, supervisorOverhead.String(), need)
	}
	if res.Requests.Memory().IsZero() {
		t.Error("memory request missing")
	}
}

// checkStorage: ephemeral storage is requested, and its limit covers the
// emptyDirs' size limits.
func checkStorage(t *testing.T, res corev1.ResourceRequirements, vols []corev1.Volume) {
	t.Helper()
	var sum resource.Quantity
	for _, v := range vols {
		if v.EmptyDir != nil {
			if v.EmptyDir.SizeLimit == nil {
				t.Errorf("emptyDir %s has no sizeLimit", v.Name)
				continue
			}
			sum.Add(*v.EmptyDir.SizeLimit)
		}
	}
	if req := res.Requests[corev1.ResourceEphemeralStorage]; req.IsZero() {
		t.Error("no ephemeral-storage request: the scheduler would place the pod on a node without room for its emptyDirs")
	}
	if limit, ok := res.Limits[corev1.ResourceEphemeralStorage]; !ok || limit.Cmp(sum) < 0 {
		t.Errorf("ephemeral-storage limit %v must cover the emptyDirs' %v", limit.String(), sum.String())
	}
}

// User code runs in the pods: no API token, no ingress but metrics, egress
// only to DNS, the database and the package index.
func TestLeastPrivilege(t *testing.T) {
	eachRender(t, func(t *testing.T, m *manifests) {
		for who, pod := range map[string]corev1.PodSpec{"Deployment": m.deployment.Spec.Template.Spec} {
			if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
				t.Errorf("%s: automountServiceAccountToken must be false", who)
			}
			if pod.ServiceAccountName != m.serviceAccount.Name {
				t.Errorf("%s: serviceAccountName %q, want %s", who, pod.ServiceAccountName, m.serviceAccount.Name)
			}
		}
		if sa := m.serviceAccount; sa.AutomountServiceAccountToken == nil || *sa.AutomountServiceAccountToken {
			t.Error("ServiceAccount: automountServiceAccountToken must be false")
		}
		np := m.networkPolicy
		if !subset(np.Spec.PodSelector.MatchLabels, m.deployment.Spec.Template.Labels) {
			t.Errorf("NetworkPolicy selector %v must select the supervisors (and so their migrate init container)", np.Spec.PodSelector.MatchLabels)
		}
		if !slices.Equal(np.Spec.PolicyTypes, []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}) {
			t.Errorf("NetworkPolicy must restrict ingress and egress: %v", np.Spec.PolicyTypes)
		}
		metricsPort := m.deployment.Spec.Template.Spec.Containers[0].Ports[0].ContainerPort
		if len(np.Spec.Ingress) != 1 || len(np.Spec.Ingress[0].Ports) != 1 || np.Spec.Ingress[0].Ports[0].Port.IntVal != metricsPort ||
			len(np.Spec.Ingress[0].From) == 0 {
			t.Errorf("NetworkPolicy ingress must be the metrics port %d from the monitoring namespace only: %+v", metricsPort, np.Spec.Ingress)
		}
		var ports []string
		for _, e := range np.Spec.Egress {
			if len(e.To) == 0 {
				t.Errorf("an egress rule without destinations allows any: %+v", e)
			}
			for _, p := range e.Ports {
				ports = append(ports, fmt.Sprintf("%s/%d", *p.Protocol, p.Port.IntVal))
			}
		}
		slices.Sort(ports)
		if want := []string{"TCP/443", "TCP/53", "TCP/5432", "UDP/53"}; !slices.Equal(ports, want) {
			t.Errorf("egress ports %v, want %v (DNS, database, package index)", ports, want)
		}
	})
}

func TestDisruptionBudget(t *testing.T) {
	eachRender(t, func(t *testing.T, m *manifests) {
		pdb := m.pdb
		if pdb.Spec.Selector == nil || !subset(pdb.Spec.Selector.MatchLabels, m.deployment.Spec.Template.Labels) {
			t.Errorf("PodDisruptionBudget selector %v does not select the Deployment's pods", pdb.Spec.Selector)
		}
		if p := pdb.Spec.UnhealthyPodEvictionPolicy; p == nil || *p != policyv1.AlwaysAllow {
			t.Error("unhealthyPodEvictionPolicy must be AlwaysAllow: a database outage makes every pod unready and must not block node drains")
		}
	})
}

// TestMigrateInitContainer: every pod runs `supervisor migrate` before its
// supervisor (safe concurrently), with the supervisor's image, settings and
// restrictions: no Job to apply by hand.
func TestMigrateInitContainer(t *testing.T) {
	eachRender(t, func(t *testing.T, m *manifests) {
		pod := m.deployment.Spec.Template.Spec
		if len(pod.InitContainers) != 1 {
			t.Fatalf("want one init container (migrate), got %d", len(pod.InitContainers))
		}
		c := pod.InitContainers[0]
		if !slices.Equal(c.Args, []string{"migrate"}) || c.Image != pod.Containers[0].Image {
			t.Errorf("init container: args %v image %q; want [migrate] and the supervisor's image", c.Args, c.Image)
		}
		if c.Resources.Limits.Memory().IsZero() {
			t.Errorf("init container without a memory limit: %v", c.Resources)
		}
		checkSecurity(t, pod, c.SecurityContext)
		checkEnvFrom(t, m, "migrate init container", c.EnvFrom)
	})
}

func checkSecurity(t *testing.T, pod corev1.PodSpec, c *corev1.SecurityContext) {
	t.Helper()
	psc := pod.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser != 10001 {
		t.Fatalf("pod must run as non-root uid 10001 (the image's user): %+v", psc)
	}
	if c == nil || c.ReadOnlyRootFilesystem == nil || !*c.ReadOnlyRootFilesystem ||
		c.AllowPrivilegeEscalation == nil || *c.AllowPrivilegeEscalation {
		t.Errorf("container must have a read-only root filesystem and no privilege escalation: %+v", c)
	}
}

func checkEnvFrom(t *testing.T, m *manifests, who string, from []corev1.EnvFromSource) {
	t.Helper()
	sec := m.secret(t, "ade-worker-database")
	var cm, ok bool
	for _, f := range from {
		cm = cm || (f.ConfigMapRef != nil && f.ConfigMapRef.Name == m.configMap.Name)
		ok = ok || (f.SecretRef != nil && f.SecretRef.Name == sec.Name)
		if f.SecretRef != nil && f.SecretRef.Name == "ade-worker-keda" {
			t.Errorf("%s must not see KEDA's credentials", who)
		}
	}
	if !cm || !ok {
		t.Errorf("%s must take its environment from ConfigMap %s and Secret %s: %+v", who, m.configMap.Name, sec.Name, from)
	}
	if _, ok := sec.StringData["ADE_DATABASE_URL"]; !ok {
		t.Errorf("Secret %s has no ADE_DATABASE_URL", sec.Name)
	}
}

// checkMounts: the workspaces are a ReadWriteMany claim mounted at
// ADE_WORKSPACES_DIR; the venvs and pip cache are mounted where the settings
// say; /tmp is writable (the root filesystem is not).
func checkMounts(t *testing.T, m *manifests, mounts []corev1.VolumeMount, vols []corev1.Volume) {
	t.Helper()
	byPath := map[string]corev1.Volume{}
	for _, vm := range mounts {
		for _, v := range vols {
			if v.Name == vm.Name {
				byPath[vm.MountPath] = v
			}
		}
	}
	for _, key := range []string{"ADE_WORKSPACES_DIR", "ADE_VENVS_DIR", "ADE_PIP_CACHE_DIR", "TMPDIR"} {
		if _, ok := byPath[m.configMap.Data[key]]; !ok {
			t.Errorf("%s=%q has no volume mounted there", key, m.configMap.Data[key])
		}
	}
	ws := byPath[m.configMap.Data["ADE_WORKSPACES_DIR"]]
	if ws.PersistentVolumeClaim == nil {
		t.Fatal("the workspaces must be a PersistentVolumeClaim shared by all pods")
	}
	for _, p := range m.pvcs {
		if p.Name == ws.PersistentVolumeClaim.ClaimName {
			if !slices.Contains(p.Spec.AccessModes, corev1.ReadWriteMany) {
				t.Errorf("claim %s must be ReadWriteMany (every pod mounts it): %v", p.Name, p.Spec.AccessModes)
			}
			return
		}
	}
	t.Errorf("claim %s is not among the manifests", ws.PersistentVolumeClaim.ClaimName)
}

func subset(sel, labels map[string]string) bool {
	if len(sel) == 0 {
		return false
	}
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func TestScaledObject(t *testing.T) {
	eachRender(t, func(t *testing.T, m *manifests) {
		so := m.scaledObject
		if so.Spec.ScaleTargetRef == nil || so.Spec.ScaleTargetRef.Name != m.deployment.Name {
			t.Errorf("scaleTargetRef %+v must name Deployment %s", so.Spec.ScaleTargetRef, m.deployment.Name)
		}
		if err := kedav1alpha1.ValidateTriggers(so.Spec.Triggers); err != nil {
			t.Errorf("KEDA rejects the triggers: %v", err)
		}
		if err := kedav1alpha1.CheckReplicaCountBoundsAreValid(so); err != nil {
			t.Errorf("KEDA rejects the replica bounds: %v", err)
		}
		if f := so.Spec.Fallback; f == nil || f.FailureThreshold < 1 || f.Replicas < 1 {
			t.Errorf("a fallback must hold replicas while the query fails: %+v", f)
		}
		tr := trigger(t, so)
		if tr.AuthenticationRef == nil || tr.AuthenticationRef.Name != m.triggerAuth.Name {
			t.Errorf("trigger authenticationRef %+v must name TriggerAuthentication %s", tr.AuthenticationRef, m.triggerAuth.Name)
		}
		// KEDA's own read-only credentials, not the workers'.
		keda := m.secret(t, "ade-worker-keda")
		refs := m.triggerAuth.Spec.SecretTargetRef
		if len(refs) != 1 || refs[0].Parameter != "connection" || refs[0].Name != keda.Name || keda.StringData[refs[0].Key] == "" {
			t.Errorf("TriggerAuthentication must pass Secret %s's URL as connection: %+v", keda.Name, refs)
		}
		// One pod per ADE_WORKER_CONCURRENCY jobs: the target is the setting.
		if got, want := tr.Metadata["targetQueryValue"], m.configMap.Data["ADE_WORKER_CONCURRENCY"]; got != want {
			t.Errorf("targetQueryValue %q must be ADE_WORKER_CONCURRENCY %q (kustomization.yaml's replacement)", got, want)
		}
	})
}

// The PrometheusRule object holds the same rules as the promtool-tested
// ../prometheus/alerts.yaml.
func TestPrometheusRuleMatchesAlertsFile(t *testing.T) {
	data, err := os.ReadFile("../prometheus/alerts.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var file monitoringv1.PrometheusRuleSpec
	if err := yaml.UnmarshalStrict(data, &file); err != nil {
		t.Fatalf("../prometheus/alerts.yaml: %v", err)
	}
	eachRender(t, func(t *testing.T, m *manifests) {
		if !reflect.DeepEqual(m.prometheusRule.Spec, file) {
			t.Error("prometheusrule.yaml's groups differ from ../prometheus/alerts.yaml: edit both alike")
		}
		if n := len(file.Groups); n == 0 || len(file.Groups[0].Rules) < 7 {
			t.Errorf("want the 7 alerts, got %d groups", n)
		}
	})
}

// trigger returns the ScaledObject's one postgresql trigger.
func trigger(t *testing.T, so *kedav1alpha1.ScaledObject) kedav1alpha1.ScaleTriggers {
	t.Helper()
	if len(so.Spec.Triggers) != 1 || so.Spec.Triggers[0].Type != "postgresql" {
		t.Fatalf("want one postgresql trigger, got %+v", so.Spec.Triggers)
	}
	return so.Spec.Triggers[0]
}

// replicas is what KEDA and the HPA make of a query value: zero while the
// value is at most the activation threshold (minReplicaCount 0), else
// ceil(value / target) within the replica bounds (the HPA's 10 % tolerance
// aside, which only delays a change of one pod near a boundary).
func replicas(t *testing.T, so *kedav1alpha1.ScaledObject, value float64) int {
	t.Helper()
	md := trigger(t, so).Metadata
	target := mustFloat(t, md["targetQueryValue"])
	activation := mustFloat(t, md["activationTargetQueryValue"])
	lo, hi := int32(0), int32(100)
	if so.Spec.MinReplicaCount != nil {
		lo = *so.Spec.MinReplicaCount
	}
	if so.Spec.MaxReplicaCount != nil {
		hi = *so.Spec.MaxReplicaCount
	}
	if value <= activation {
		return int(lo)
	}
	n := int32(value / target)
	if float64(n)*target < value {
		n++
	}
	return int(min(max(n, lo, 1), hi))
}

func mustFloat(t *testing.T, s string) float64 {
	t.Helper()
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		t.Fatalf("%q: %v", s, err)
	}
	return f
}

// ptrOr is *p, or 0 when p is nil (Kubernetes' default then applies).
func ptrOr[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}
