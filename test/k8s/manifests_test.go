package k8s

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/pod-security-admission/api"
	"k8s.io/pod-security-admission/policy"
	"sigs.k8s.io/yaml"
)

// The binaries under test, built by TestMain from the repository's root.
var vmreBin, exampleVM string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "vmre-k8s-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	vmreBin, exampleVM = filepath.Join(dir, "vmre"), filepath.Join(dir, "examplevm")
	for out, pkg := range map[string]string{vmreBin: "./cmd/vmre", exampleVM: "./cmd/examplevm"} {
		cmd := exec.Command("go", "build", "-o", out, pkg)
		cmd.Dir = "../.."
		if b, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "go build %s: %v\n%s", pkg, err, b)
			os.RemoveAll(dir)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// node is a running `vmre node` that enrolls the remote VM far, with its
// --events on stdout.
type node struct {
	env    []string
	url    string // the node mux, which the clients are given: its discovery file may come a moment after its events
	cmd    *exec.Cmd
	mu     sync.Mutex
	events []map[string]any
	more   chan struct{} // a value per event
	done   chan struct{}
}

func startNode(t *testing.T) *node {
	t.Helper()
	plugins := t.TempDir()
	if err := os.WriteFile(filepath.Join(plugins, "far.remote"), []byte(`{"protocol_version": 1}`), 0o644); err != nil {
		t.Fatal(err)
	}
	n := &node{env: append(os.Environ(), "XDG_RUNTIME_DIR="+t.TempDir(), "NO_COLOR=1"), more: make(chan struct{}, 256), done: make(chan struct{})}
	n.cmd = exec.Command(vmreBin, "node", "--plugin-dir", plugins, "--data-dir", t.TempDir(),
		"--engine-listen", "127.0.0.1:0", "--remote-ping", "1s", "--events", "-")
	n.cmd.Env = n.env
	out, err := n.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := n.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(n.done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var ev map[string]any
			if json.Unmarshal(sc.Bytes(), &ev) == nil {
				n.mu.Lock()
				n.events = append(n.events, ev)
				n.mu.Unlock()
				n.more <- struct{}{}
			}
		}
		io.Copy(io.Discard, out)
		n.cmd.Wait()
	}()
	t.Cleanup(func() {
		n.cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-n.done:
		case <-time.After(30 * time.Second):
			n.cmd.Process.Kill()
			<-n.done
		}
	})
	n.url = "http://" + n.await(t, "the node mux", func(ev map[string]any) bool { return ev["event"] == "listening" })["addr"].(string)
	n.await(t, "the TLS engine", func(ev map[string]any) bool { return ev["event"] == "engine_listening" })
	return n
}

// await waits for the node's first event that match holds for.
func (n *node) await(t *testing.T, what string, match func(map[string]any) bool) map[string]any {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for seen := 0; ; {
		n.mu.Lock()
		for ; seen < len(n.events); seen++ {
			if match(n.events[seen]) {
				ev := n.events[seen]
				n.mu.Unlock()
				return ev
			}
		}
		n.mu.Unlock()
		select {
		case <-n.more:
		case <-n.done:
			t.Fatalf("the node exited before %s", what)
		case <-deadline:
			t.Fatalf("no %s within 30s", what)
		}
	}
}

// vmre runs a vmre client command against the node.
func (n *node) vmre(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	args = append([]string{args[0], args[1], "--node", n.url}, args[2:]...) // vmre remote SUB --node URL ...
	cmd := exec.CommandContext(ctx, vmreBin, args...)
	cmd.Env = n.env
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	cmd.Run()
	return out.String(), errOut.String(), cmd.ProcessState.ExitCode()
}

// manifests are the documents of vmre remote k8s, decoded strictly.
type manifests struct {
	secret  corev1.Secret
	service corev1.Service
	deploy  appsv1.Deployment
}

// decode decodes the documents of out strictly into the API's types, in
// the order vmre prints them: a Secret, then a Service and a Deployment.
func decode(t *testing.T, out string, secretOnly bool) manifests {
	t.Helper()
	var m manifests
	docs := strings.Split(out, "\n---\n")
	want := 3
	if secretOnly {
		want = 1
	}
	if len(docs) != want {
		t.Fatalf("%d documents; want %d:\n%s", len(docs), want, out)
	}
	targets := []any{&m.secret, &m.service, &m.deploy}
	for i, doc := range docs {
		if err := yaml.UnmarshalStrict([]byte(doc), targets[i]); err != nil {
			t.Fatalf("document %d does not decode strictly into %T: %v\n%s", i+1, targets[i], err, doc)
		}
	}
	return m
}

// env parses vmre remote env's KEY=VALUE lines.
func env(t *testing.T, out string) map[string]string {
	t.Helper()
	vars := map[string]string{}
	for line := range strings.Lines(out) {
		k, v, ok := strings.Cut(strings.TrimSpace(line), "=")
		if !ok {
			t.Fatalf("not KEY=VALUE: %q", line)
		}
		vars[k] = v
	}
	return vars
}

// restricted evaluates a pod against the Pod Security Standards'
// restricted level, latest version, with the admission's own checks.
func restricted(t *testing.T, meta *corev1.PodTemplateSpec) policy.AggregateCheckResult {
	t.Helper()
	ev, err := policy.NewEvaluator(policy.DefaultChecks(), nil)
	if err != nil {
		t.Fatal(err)
	}
	lv := api.LevelVersion{Level: api.LevelRestricted, Version: api.LatestVersion()}
	return policy.AggregateCheckResults(ev.EvaluatePod(lv, &meta.ObjectMeta, &meta.Spec))
}

// TestManifests: what `vmre remote k8s` prints is a valid Secret, headless
// Service and Deployment, whose names Kubernetes accepts, whose pod passes
// the restricted Pod Security profile with requests, limits, HTTPS probes
// on the VM's health, a read-only root and an emptyDir, and no service
// account token.
func TestManifests(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	vars := env(t, mustRun(t, n, "remote", "env", "far"))
	out := mustRun(t, n, "remote", "k8s", "--image", "registry.example/far:1.0", "--namespace", "vms", "--name", "far-vm",
		"--cpu-request", "250m", "--memory-limit", "1Gi", "far")
	m := decode(t, out, false)

	// Names and labels, as the API server validates them.
	for _, name := range []string{m.secret.Name, m.deploy.Name} {
		if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
			t.Errorf("name %q: %v", name, errs)
		}
	}
	if errs := validation.IsDNS1035Label(m.service.Name); len(errs) > 0 {
		t.Errorf("Service name %q: %v", m.service.Name, errs)
	}
	for _, obj := range []map[string]string{m.secret.Labels, m.service.Labels, m.deploy.Labels, m.deploy.Spec.Template.Labels} {
		for k, v := range obj {
			if errs := append(validation.IsQualifiedName(k), validation.IsValidLabelValue(v)...); len(errs) > 0 {
				t.Errorf("label %s=%s: %v", k, v, errs)
			}
		}
	}
	if m.deploy.Name != "far-vm" || m.service.Name != "far-vm" || m.secret.Name != "vmre-far-vm" || m.deploy.Namespace != "vms" {
		t.Errorf("names %s %s %s in %s; want far-vm, vmre-far-vm in vms", m.deploy.Name, m.service.Name, m.secret.Name, m.deploy.Namespace)
	}

	// The Secret holds the environment of vmre remote env, all of it.
	if m.secret.Kind != "Secret" || len(m.secret.StringData) != len(vars) {
		t.Errorf("Secret %v; want the %d variables of vmre remote env", m.secret.StringData, len(vars))
	}
	for k, v := range vars {
		if m.secret.StringData[k] != v {
			t.Errorf("Secret %s=%q; vmre remote env says %q", k, m.secret.StringData[k], v)
		}
	}

	// The pod.
	spec := m.deploy.Spec.Template.Spec
	if res := restricted(t, &m.deploy.Spec.Template); !res.Allowed {
		t.Errorf("the pod is refused under the restricted profile: %s: %s", strings.Join(res.ForbiddenReasons, "; "), strings.Join(res.ForbiddenDetails, "; "))
	}
	if *m.deploy.Spec.Replicas != 1 || m.deploy.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType {
		t.Errorf("replicas %d, strategy %s; want 1, Recreate", *m.deploy.Spec.Replicas, m.deploy.Spec.Strategy.Type)
	}
	if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
		t.Error("automountServiceAccountToken is not false")
	}
	if len(spec.Containers) != 1 {
		t.Fatalf("%d containers; want 1", len(spec.Containers))
	}
	c := spec.Containers[0]
	if c.Image != "registry.example/far:1.0" || c.EnvFrom[0].SecretRef.Name != m.secret.Name {
		t.Errorf("container image %s, envFrom %v", c.Image, c.EnvFrom)
	}
	if sc := c.SecurityContext; sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Error("the root filesystem is not read-only")
	}
	mounts := map[string]string{}
	for _, vm := range c.VolumeMounts {
		mounts[vm.Name] = vm.MountPath
	}
	for _, v := range spec.Volumes {
		if v.EmptyDir == nil || mounts[v.Name] == "" {
			t.Errorf("volume %s: %+v, mounted at %q; want an emptyDir, mounted", v.Name, v.VolumeSource, mounts[v.Name])
		}
	}
	if mounts["tmp"] != "/tmp" {
		t.Errorf("mounts %v; want an emptyDir at /tmp", mounts)
	}
	want := map[corev1.ResourceName]string{corev1.ResourceCPU: "250m", corev1.ResourceMemory: "128Mi"}
	for name, q := range want {
		if got := c.Resources.Requests[name]; got.Cmp(resource.MustParse(q)) != 0 {
			t.Errorf("request %s = %s; want %s", name, got.String(), q)
		}
		if limit, req := c.Resources.Limits[name], c.Resources.Requests[name]; limit.Cmp(req) < 0 {
			t.Errorf("limit %s = %s is below its request %s", name, limit.String(), req.String())
		}
	}
	if got := c.Resources.Limits[corev1.ResourceMemory]; got.Cmp(resource.MustParse("1Gi")) != 0 {
		t.Errorf("memory limit %s; want 1Gi", got.String())
	}
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	for what, probe := range map[string]*corev1.Probe{"startup": c.StartupProbe, "readiness": c.ReadinessProbe} {
		if probe == nil || probe.HTTPGet == nil || probe.HTTPGet.Scheme != corev1.URISchemeHTTPS ||
			probe.HTTPGet.Path != "/grpc.health.v1.Health/Check" || ports[probe.HTTPGet.Port.String()] != 9650 {
			t.Errorf("%s probe %+v; want GET /grpc.health.v1.Health/Check over HTTPS on the VM's port", what, probe)
		}
	}
	envs := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		envs[e.Name] = e
	}
	if envs["VMRE_VM_LISTEN_ADDR"].Value != "0.0.0.0:9650" || envs["VMRE_VM_ADVERTISE_ADDR"].ValueFrom.FieldRef.FieldPath != "status.podIP" {
		t.Errorf("env %v; want the listener on 9650 and the pod IP advertised", c.Env)
	}

	// The headless Service selects the pod, on its port.
	if m.service.Spec.ClusterIP != corev1.ClusterIPNone || len(m.service.Spec.Ports) != 1 ||
		m.service.Spec.Ports[0].TargetPort.String() != "vm" || m.service.Spec.Ports[0].Port != 9650 {
		t.Errorf("Service spec %+v; want headless, port 9650 to the pod's vm port", m.service.Spec)
	}
	for k, v := range m.service.Spec.Selector {
		if m.deploy.Spec.Template.Labels[k] != v || m.deploy.Spec.Selector.MatchLabels[k] != v {
			t.Errorf("the Service selects %s=%s, which the pod does not carry", k, v)
		}
	}

	// The control: the evaluator refuses a pod that loses a restriction.
	weak := m.deploy.Spec.Template.DeepCopy()
	weak.Spec.SecurityContext.SeccompProfile = nil
	weak.Spec.Containers[0].SecurityContext.Capabilities = nil
	if res := restricted(t, weak); res.Allowed {
		t.Error("the evaluator allows a pod without a seccomp profile and with capabilities: the check cannot fail")
	}
}

// TestRotation: the rotation procedure of docs/REMOTE.md, as far as it
// runs without a cluster: after `vmre remote rotate`, the Secret that
// `vmre remote k8s --secret-only` prints holds the new token; the old one
// (the Secret before) is refused; a VM given the new Secret's environment
// handshakes.
func TestRotation(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	before := decode(t, mustRun(t, n, "remote", "k8s", "--secret-only", "--namespace", "vms", "far"), true).secret
	rotated := env(t, mustRun(t, n, "remote", "rotate", "far"))
	after := decode(t, mustRun(t, n, "remote", "k8s", "--secret-only", "--namespace", "vms", "far"), true).secret
	const key = "VMRE_RUNTIME_ENGINE_TOKEN"
	if after.StringData[key] != rotated[key] || after.StringData[key] == before.StringData[key] {
		t.Fatalf("the Secret after rotate holds %q; rotate gave %q, the old one was %q", after.StringData[key], rotated[key], before.StringData[key])
	}

	vm := func(secret corev1.Secret) *exec.Cmd {
		cmd := exec.Command(exampleVM)
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "VMRE_VM_LISTEN_ADDR=127.0.0.1:0"}
		for k, v := range secret.StringData {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
		return cmd
	}
	old := vm(before)
	var stderr bytes.Buffer
	old.Stderr = &stderr
	if err := old.Run(); old.ProcessState.ExitCode() != 1 || !strings.Contains(stderr.String(), "unauthenticated") ||
		!strings.Contains(stderr.String(), "vmre remote env NAME") {
		t.Errorf("a VM with the old Secret: %v\n%s\nwant exit 1, unauthenticated, naming vmre remote env", err, stderr.String())
	}
	cur := vm(after)
	if err := cur.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cur.Wait() }()
	n.await(t, "far running with the new token", func(ev map[string]any) bool {
		return ev["event"] == "state" && ev["vm"] == "far" && ev["state"] == "running"
	})
	cur.Process.Signal(syscall.SIGTERM)
	if err := <-exited; err != nil {
		t.Errorf("the VM with the new Secret: %v; want exit 0 on SIGTERM", err)
	}
}

// mustRun runs a vmre client command that must succeed, and returns its
// stdout.
func mustRun(t *testing.T, n *node, args ...string) string {
	t.Helper()
	out, stderr, code := n.vmre(t, args...)
	if code != 0 {
		t.Fatalf("vmre %s: exit %d\n%s", strings.Join(args, " "), code, stderr)
	}
	return out
}
