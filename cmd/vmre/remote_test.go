//go:build linux

package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/vmre/vmre"
	examplev1 "github.com/vmre/vmre/gen/vmre/example/v1"
	"github.com/vmre/vmre/gen/vmre/example/v1/examplev1connect"
	"github.com/vmre/vmre/internal/tlspin"
)

// call-vm ADDR CERT_SHA256 is the host's call of a remote VM's own RPC,
// over TLS, trusting the certificate the VM announced.
func init() { helpers["call-vm"] = callVM }

func callVM(args []string) int {
	c := tlspin.NewClient(args[1], tlspin.Pings{})
	defer c.CloseIdleConnections()
	chain := examplev1connect.NewChainServiceClient(c, "https://"+args[0], connect.WithGRPC())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := chain.LastAccepted(ctx, connect.NewRequest(&examplev1.LastAcceptedRequest{}))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println("block", res.Msg.GetBlock().GetId())
	return 0
}

// remoteEnv parses `vmre remote env` output.
func remoteEnv(t *testing.T, out string) map[string]string {
	t.Helper()
	env := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if !ok {
			t.Fatalf("env line %q is not KEY=VALUE", sc.Text())
		}
		env[k] = v
	}
	for _, k := range []string{vmre.EngineAddressKey, vmre.EngineTokenKey, vmre.EngineCertKey} {
		if env[k] == "" {
			t.Fatalf("vmre remote env lacks %s:\n%s", k, out)
		}
	}
	return env
}

// remoteDir is a plugin directory declaring the remote VM far.
func remoteDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "far.remote"), []byte(`{"protocol_version": 1}`), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestRemoteManifests: the systemd unit that `vmre remote systemd` prints
// passes systemd-analyze verify without a word, the Kubernetes manifests
// of `vmre remote k8s` decode strictly into the API's types, and rotate
// gives a new token.
func TestRemoteManifests(t *testing.T) {
	t.Parallel()
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Fatal("systemd-analyze is not installed (Debian's systemd package)")
	}
	env := ownRunDir(t)
	p := startProc(t, env, vmreBin, "node", "--plugin-dir", remoteDir(t), "--data-dir", t.TempDir(),
		"--engine-listen", "127.0.0.1:0", "--events", "-", "--log-format", "json")
	listening := parseRecord(p.stdout.waitFor(t, "the TLS engine", 20*time.Second, isEvent("engine_listening", nil)))

	r := cli(t, env, "remote", "env", "far")
	vars := remoteEnv(t, r.stdout)
	if vars[vmre.EngineAddressKey] != listening["addr"] || vars[vmre.EngineCertKey] != listening["cert_sha256"] {
		t.Errorf("env %v; the engine listens at %v with %v", vars, listening["addr"], listening["cert_sha256"])
	}

	unit := cli(t, env, "remote", "systemd", "--exec", exampleVM+" --log-level debug", "far")
	if unit.code != exitOK || strings.Contains(unit.stdout, vars[vmre.EngineTokenKey]) {
		t.Fatalf("vmre remote systemd: exit %d; the unit must not hold the token\n%s%s", unit.code, unit.stdout, unit.stderr)
	}
	unitFile := filepath.Join(t.TempDir(), "far.service")
	if err := os.WriteFile(unitFile, []byte(unit.stdout), 0o644); err != nil {
		t.Fatal(err)
	}
	// systemd-analyze reports bad keys on stderr and still exits 0: it must
	// say nothing at all.
	if out, err := exec.CommandContext(t.Context(), analyze, "verify", unitFile).CombinedOutput(); err != nil || len(out) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s\nunit:\n%s", err, out, unit.stdout)
	}

	k8s := cli(t, env, "remote", "k8s", "--image", "registry.example/far:1.0", "--namespace", "vms", "far")
	docs := strings.Split(k8s.stdout, "\n---\n")
	if k8s.code != exitOK || len(docs) != 2 {
		t.Fatalf("vmre remote k8s: exit %d, %d documents\n%s", k8s.code, len(docs), k8s.stdout)
	}
	var secret corev1.Secret
	if err := yaml.UnmarshalStrict([]byte(docs[0]), &secret); err != nil {
		t.Fatalf("the Secret does not decode strictly: %v\n%s", err, docs[0])
	}
	var deploy appsv1.Deployment
	if err := yaml.UnmarshalStrict([]byte(docs[1]), &deploy); err != nil {
		t.Fatalf("the Deployment does not decode strictly: %v\n%s", err, docs[1])
	}
	if secret.Kind != "Secret" || secret.StringData[vmre.EngineTokenKey] != vars[vmre.EngineTokenKey] || secret.Namespace != "vms" {
		t.Errorf("Secret %+v", secret)
	}
	c := deploy.Spec.Template.Spec.Containers
	if deploy.Kind != "Deployment" || len(c) != 1 || c[0].Image != "registry.example/far:1.0" ||
		c[0].EnvFrom[0].SecretRef.Name != secret.Name || deploy.Spec.Selector.MatchLabels["app.kubernetes.io/name"] != "far" {
		t.Errorf("Deployment %+v", deploy.Spec)
	}

	rotated := remoteEnv(t, cli(t, env, "remote", "rotate", "far").stdout)
	if rotated[vmre.EngineTokenKey] == vars[vmre.EngineTokenKey] {
		t.Error("rotate kept the token")
	}
	if again := remoteEnv(t, cli(t, env, "remote", "env", "far").stdout); again[vmre.EngineTokenKey] != rotated[vmre.EngineTokenKey] {
		t.Error("env after rotate does not give the new token")
	}
	if r := cli(t, env, "remote", "env", "nope"); r.code != exitNotFound || !strings.Contains(r.stderr, `no remote VM named "nope"`) {
		t.Errorf("env of an unknown VM: exit %d\n%s", r.code, r.stderr)
	}
	if code := p.signal(t, syscall.SIGINT, 20*time.Second); code != exitOK {
		t.Errorf("node: exit %d", code)
	}
}
