// Package kubernetes_test checks the manifests in this folder: each decodes
// strictly into the API type its kind names (an unknown or misspelt field
// fails), they refer to each other consistently, and the KEDA query, run
// against a real PostgreSQL database with known rows, yields the replica
// counts the README promises. Its own module keeps k8s.io and KEDA out of
// the worker's dependencies.
package kubernetes_test

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"testing"

	kedav1alpha1 "github.com/kedacore/keda/v2/apis/keda/v1alpha1"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// manifests holds every object of the folder, decoded.
type manifests struct {
	deployment   *appsv1.Deployment
	job          *batchv1.Job
	secret       *corev1.Secret
	configMap    *corev1.ConfigMap
	pvcs         []*corev1.PersistentVolumeClaim
	pdb          *policyv1.PodDisruptionBudget
	scaledObject *kedav1alpha1.ScaledObject
	triggerAuth  *kedav1alpha1.TriggerAuthentication
}

// slots maps each apiVersion/kind the folder may hold to the field of m its
// objects decode into: a new kind is a field above and a line here.
func (m *manifests) slots() map[string]slot {
	return map[string]slot{
		"apps/v1/Deployment":                     one(&m.deployment),
		"batch/v1/Job":                           one(&m.job),
		"v1/Secret":                              one(&m.secret),
		"v1/ConfigMap":                           one(&m.configMap),
		"v1/PersistentVolumeClaim":               many(&m.pvcs),
		"policy/v1/PodDisruptionBudget":          one(&m.pdb),
		"keda.sh/v1alpha1/ScaledObject":          one(&m.scaledObject),
		"keda.sh/v1alpha1/TriggerAuthentication": one(&m.triggerAuth),
	}
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

// many is the slot of a kind the folder may hold several objects of.
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

// load decodes every *.yaml file here strictly (one object a file).
func load(t *testing.T) *manifests {
	t.Helper()
	files, err := filepath.Glob("*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests found (%v)", err)
	}
	m := &manifests{}
	slots := m.slots()
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal(data, &tm); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		s, ok := slots[tm.APIVersion+"/"+tm.Kind]
		if !ok {
			t.Fatalf("%s: kind %s/%s is not one this test knows: add it to slots", f, tm.APIVersion, tm.Kind)
		}
		if err := s.put(data); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
	}
	return m
}

func TestManifestsDecodeStrictly(t *testing.T) {
	for kind, s := range load(t).slots() {
		if !s.filled() {
			t.Errorf("no %s manifest", kind)
		}
	}
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

func TestDeploymentSettings(t *testing.T) {
	m := load(t)
	d := m.deployment
	pod := d.Spec.Template.Spec
	if len(pod.Containers) != 1 {
		t.Fatalf("want one container, got %d", len(pod.Containers))
	}
	c := pod.Containers[0]
	env := m.configMap.Data

	grace, err := strconv.Atoi(env["ADE_WORKER_SHUTDOWN_GRACE_SECONDS"])
	if err != nil {
		t.Fatalf("ConfigMap ADE_WORKER_SHUTDOWN_GRACE_SECONDS: %v", err)
	}
	if pod.TerminationGracePeriodSeconds == nil || *pod.TerminationGracePeriodSeconds <= int64(grace) {
		t.Errorf("terminationGracePeriodSeconds %v must exceed the shutdown grace %d s", pod.TerminationGracePeriodSeconds, grace)
	}
	if env["ADE_WORKER_HTTP_ADDR"] != ":9464" || len(c.Ports) != 1 || c.Ports[0].ContainerPort != 9464 {
		t.Errorf("the probes' port %v must be ADE_WORKER_HTTP_ADDR %q", c.Ports, env["ADE_WORKER_HTTP_ADDR"])
	}
	for probe, path := range map[*corev1.Probe]string{c.LivenessProbe: "/livez", c.ReadinessProbe: "/readyz"} {
		if probe == nil || probe.HTTPGet == nil || probe.HTTPGet.Path != path || probe.HTTPGet.Port.String() != c.Ports[0].Name {
			t.Errorf("want an HTTP probe on %s port %s, got %+v", path, c.Ports[0].Name, probe)
		}
	}
	checkSecurity(t, pod.SecurityContext, c.SecurityContext)
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() {
		t.Errorf("resource requests missing: %v", c.Resources.Requests)
	}
	checkEnvFrom(t, m, "Deployment", c.EnvFrom)
	checkMounts(t, m, c.VolumeMounts, pod.Volumes)
	if m.pdb.Spec.Selector == nil || !subset(m.pdb.Spec.Selector.MatchLabels, d.Spec.Template.Labels) {
		t.Errorf("PodDisruptionBudget selector %v does not select the Deployment's pods %v", m.pdb.Spec.Selector, d.Spec.Template.Labels)
	}
	if !subset(d.Spec.Selector.MatchLabels, d.Spec.Template.Labels) {
		t.Errorf("Deployment selector %v does not match its template labels", d.Spec.Selector.MatchLabels)
	}
}

func TestMigrateJob(t *testing.T) {
	m := load(t)
	pod := m.job.Spec.Template.Spec
	c := pod.Containers[0]
	if !slices.Equal(c.Args, []string{"migrate"}) || c.Image != m.deployment.Spec.Template.Spec.Containers[0].Image {
		t.Errorf("migrate Job: args %v image %q; want [migrate] and the Deployment's image", c.Args, c.Image)
	}
	if pod.RestartPolicy == corev1.RestartPolicyAlways {
		t.Error("a Job's pod may not restart Always")
	}
	checkSecurity(t, pod.SecurityContext, c.SecurityContext)
	checkEnvFrom(t, m, "Job", c.EnvFrom)
}

func checkSecurity(t *testing.T, pod *corev1.PodSecurityContext, c *corev1.SecurityContext) {
	t.Helper()
	if pod == nil || pod.RunAsNonRoot == nil || !*pod.RunAsNonRoot || pod.RunAsUser == nil || *pod.RunAsUser != 10001 {
		t.Errorf("pod must run as non-root uid 10001 (the image's user): %+v", pod)
	}
	if c == nil || c.ReadOnlyRootFilesystem == nil || !*c.ReadOnlyRootFilesystem ||
		c.AllowPrivilegeEscalation == nil || *c.AllowPrivilegeEscalation {
		t.Errorf("container must have a read-only root filesystem and no privilege escalation: %+v", c)
	}
}

func checkEnvFrom(t *testing.T, m *manifests, who string, from []corev1.EnvFromSource) {
	t.Helper()
	var cm, sec bool
	for _, f := range from {
		cm = cm || (f.ConfigMapRef != nil && f.ConfigMapRef.Name == m.configMap.Name)
		sec = sec || (f.SecretRef != nil && f.SecretRef.Name == m.secret.Name)
	}
	if !cm || !sec {
		t.Errorf("%s must take its environment from ConfigMap %s and Secret %s: %+v", who, m.configMap.Name, m.secret.Name, from)
	}
	if _, ok := m.secret.StringData["ADE_DATABASE_URL"]; !ok {
		t.Errorf("Secret %s has no ADE_DATABASE_URL", m.secret.Name)
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
	m := load(t)
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
	tr := trigger(t, so)
	if tr.AuthenticationRef == nil || tr.AuthenticationRef.Name != m.triggerAuth.Name {
		t.Errorf("trigger authenticationRef %+v must name TriggerAuthentication %s", tr.AuthenticationRef, m.triggerAuth.Name)
	}
	refs := m.triggerAuth.Spec.SecretTargetRef
	if len(refs) != 1 || refs[0].Parameter != "connection" || refs[0].Name != m.secret.Name || refs[0].Key != "ADE_DATABASE_URL" {
		t.Errorf("TriggerAuthentication must pass Secret %s key ADE_DATABASE_URL as connection: %+v", m.secret.Name, refs)
	}
	// The query divides by the per-pod concurrency: it must be the setting's.
	div := regexp.MustCompile(`/\s*([0-9]+)(\.0)?\s*$`).FindStringSubmatch(tr.Metadata["query"])
	if div == nil || div[1] != m.configMap.Data["ADE_WORKER_CONCURRENCY"] {
		t.Errorf("the query must end with / ADE_WORKER_CONCURRENCY (%s), got %v", m.configMap.Data["ADE_WORKER_CONCURRENCY"], div)
	}
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
