//go:build linux

package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/vmre/vmre"
	"github.com/vmre/vmre/client"
	"github.com/vmre/vmre/internal/vmretest"
)

// call-vm ADDR CERT_SHA256 is the host's call of a remote VM's own RPC,
// over TLS, trusting the certificate the VM announced.
func init() { helpers["call-vm"] = callVM }

func callVM(args []string) int { return vmretest.CallVM(args[0], args[1], connect.WithGRPC()) }

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

// TestRemoteSystemd: the unit that `vmre remote systemd` prints passes
// systemd-analyze verify without a word, passes the VM's arguments through
// unchanged (%, $, quotes, backslashes, spaces, an empty one: a parser of
// systemd.syntax(7) reads them back, and the same arguments pasted as they
// are fail the check), keeps the token out, has a state directory, and is
// refused without an address the node can reach; rotate gives a new token.
func TestRemoteSystemd(t *testing.T) {
	t.Parallel()
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Fatal("systemd-analyze is not installed (Debian's systemd package)")
	}
	verify := func(unit string) string {
		t.Helper()
		unitFile := filepath.Join(t.TempDir(), "far.service")
		if err := os.WriteFile(unitFile, []byte(unit), 0o644); err != nil {
			t.Fatal(err)
		}
		// systemd-analyze reports bad keys on stderr and still exits 0:
		// it must say nothing at all.
		out, err := exec.CommandContext(t.Context(), analyze, "verify", unitFile).CombinedOutput()
		if err != nil && len(out) == 0 {
			return err.Error()
		}
		return string(out)
	}
	env := ownRunDir(t)
	p := startProc(t, env, vmreBin, "node", "--plugin-dir", remoteDir(t), "--data-dir", t.TempDir(),
		"--engine-listen", "127.0.0.1:0", "--events", "-", "--log-format", "json")
	// The clients are given the node: its discovery file may come a moment
	// after its events.
	node := "http://" + parseRecord(p.stdout.waitFor(t, "the node mux", 20*time.Second, isEvent("listening", nil)))["addr"].(string)
	listening := parseRecord(p.stdout.waitFor(t, "the TLS engine", 20*time.Second, isEvent("engine_listening", nil)))

	r := cli(t, env, "remote", "env", "--node", node, "far")
	vars := remoteEnv(t, r.stdout)
	if vars[vmre.EngineAddressKey] != listening["addr"] || vars[vmre.EngineCertKey] != listening["cert_sha256"] || vars[vmre.EnginePingKey] != "5s" {
		t.Errorf("env %v; the engine listens at %v with %v, and pings after 5s", vars, listening["addr"], listening["cert_sha256"])
	}

	args := []string{"--log-level", "debug", "100%zoom", "$HOME and ${PATH}", `say "hi"`, `back\slash`, "", "tab\there", "ünïcode", ";", "new\nline"}
	unit := cli(t, env, append([]string{"remote", "systemd", "--node", node, "--exec", exampleVM, "--advertise", "10.0.0.2", "far", "--"}, args...)...)
	if unit.code != exitOK || strings.Contains(unit.stdout, vars[vmre.EngineTokenKey]) {
		t.Fatalf("vmre remote systemd: exit %d; the unit must not hold the token\n%s%s", unit.code, unit.stdout, unit.stderr)
	}
	if out := verify(unit.stdout); out != "" {
		t.Errorf("systemd-analyze verify: %s\nunit:\n%s", out, unit.stdout)
	}
	keys := unitKeys(unit.stdout)
	if got := parseExecStart(t, keys["ExecStart"][0]); !slices.Equal(got, append([]string{exampleVM}, args...)) {
		t.Errorf("ExecStart=%s reads back as %q; want %q", keys["ExecStart"][0], got, append([]string{exampleVM}, args...))
	}
	for key, want := range map[string]string{"StateDirectory": "vmre/far", "DynamicUser": "yes", "Restart": "always", "RestartPreventExitStatus": "2"} {
		if got := keys[key]; len(got) != 1 || got[0] != want {
			t.Errorf("%s=%v; want %s", key, got, want)
		}
	}
	if env := keys["Environment"]; !slices.Contains(env, client.ListenAddrKey+"=0.0.0.0:9650") || !slices.Contains(env, client.AdvertiseAddrKey+"=10.0.0.2:9650") {
		t.Errorf("Environment=%v; want the listener and the advertised address with its port", env)
	}
	// The control: the same arguments pasted as they are do not pass.
	naive := strings.Replace(unit.stdout, "ExecStart="+keys["ExecStart"][0], "ExecStart="+exampleVM+" "+strings.Join(args, " "), 1)
	if out := verify(naive); out == "" {
		t.Error("systemd-analyze verify accepts the arguments unescaped: the check cannot fail")
	}

	for _, bad := range []struct {
		args []string
		says string
	}{
		{[]string{"--exec", exampleVM, "far"}, "give --advertise HOST:PORT"},
		{[]string{"--exec", "examplevm", "--advertise", "10.0.0.2", "far"}, "absolute path"},
		{[]string{"--exec", exampleVM + " --log-level debug", "--advertise", "10.0.0.2", "far"}, "give its arguments after NAME"},
		{[]string{"--exec", exampleVM, "--advertise", "10.0.0.2:x", "far"}, "is not a HOST:PORT"},
		{[]string{"--exec", exampleVM, "--listen", "10.0.0.2:0", "far"}, "cannot be a free port"},
	} {
		r := cli(t, env, append([]string{"remote", "systemd", "--node", node}, bad.args...)...)
		if r.code != exitUsage || !strings.Contains(r.stderr, bad.says) || r.stdout != "" {
			t.Errorf("vmre remote systemd %q: exit %d, %q; want exit 2 saying %q", bad.args, r.code, r.stderr, bad.says)
		}
	}
	// With --listen on the host's own address, the VM advertises it.
	if r := cli(t, env, "remote", "systemd", "--node", node, "--exec", exampleVM, "--listen", "10.0.0.2:9650", "far"); r.code != exitOK || strings.Contains(r.stdout, client.AdvertiseAddrKey) {
		t.Errorf("--listen 10.0.0.2:9650: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r := cli(t, env, "remote", "k8s", "--node", node, "--image", "registry.example/far:1", "Chain_1"); r.code != exitUsage ||
		!strings.Contains(r.stderr, "starting with a letter and ending with a letter or digit") || !strings.Contains(r.stderr, "--name chain-1") {
		t.Errorf("vmre remote k8s Chain_1: exit %d\n%s", r.code, r.stderr)
	}

	rotated := remoteEnv(t, cli(t, env, "remote", "rotate", "--node", node, "far").stdout)
	if rotated[vmre.EngineTokenKey] == vars[vmre.EngineTokenKey] {
		t.Error("rotate kept the token")
	}
	if again := remoteEnv(t, cli(t, env, "remote", "env", "--node", node, "far").stdout); again[vmre.EngineTokenKey] != rotated[vmre.EngineTokenKey] {
		t.Error("env after rotate does not give the new token")
	}
	if r := cli(t, env, "remote", "env", "--node", node, "nope"); r.code != exitNotFound || !strings.Contains(r.stderr, `no remote VM named "nope"`) {
		t.Errorf("env of an unknown VM: exit %d\n%s", r.code, r.stderr)
	}
	if code := p.signal(t, syscall.SIGINT, 20*time.Second); code != exitOK {
		t.Errorf("node: exit %d", code)
	}
}

// unitKeys are the keys of a unit file and their values, in order.
func unitKeys(unit string) map[string][]string {
	keys := map[string][]string{}
	for line := range strings.Lines(unit) {
		line = strings.TrimSpace(line)
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			keys[k] = append(keys[k], v)
		}
	}
	return keys
}

// parseExecStart splits an ExecStart= value into the argv systemd passes,
// as systemd.syntax(7) and systemd.service(5) specify: words separated by
// whitespace, quoted with "" or ”, C escapes, %% for % and $$ for $
// (a lone % or $ would be a specifier or a variable: the test refuses it).
func parseExecStart(t *testing.T, line string) []string {
	t.Helper()
	var words []string
	r := []rune(line)
	for i := 0; i < len(r); {
		for i < len(r) && (r[i] == ' ' || r[i] == '\t') {
			i++
		}
		if i == len(r) {
			break
		}
		var w strings.Builder
		var quote rune
		for ; i < len(r); i++ {
			c := r[i]
			switch {
			case quote == 0 && (c == ' ' || c == '\t'):
				goto word
			case quote == 0 && (c == '"' || c == '\''):
				quote = c
			case quote != 0 && c == quote:
				quote = 0
			case c == '%' || c == '$':
				if i+1 >= len(r) || r[i+1] != c {
					t.Fatalf("ExecStart=%s: a lone %c at %d would be expanded", line, c, i)
				}
				w.WriteRune(c)
				i++
			case c == '\\':
				i++
				if i == len(r) {
					t.Fatalf("ExecStart=%s ends in a backslash", line)
				}
				switch e := r[i]; e {
				case 'n':
					w.WriteByte('\n')
				case 't':
					w.WriteByte('\t')
				case 'x':
					b, err := strconv.ParseUint(string(r[i+1:i+3]), 16, 8)
					if err != nil {
						t.Fatalf("ExecStart=%s: bad \\x escape", line)
					}
					w.WriteByte(byte(b))
					i += 2
				case '\\', '"', '\'', ' ':
					w.WriteRune(e)
				default:
					t.Fatalf("ExecStart=%s: an escape \\%c systemd does not know", line, e)
				}
			default:
				w.WriteRune(c)
			}
		}
	word:
		if quote != 0 {
			t.Fatalf("ExecStart=%s: an unterminated quote", line)
		}
		words = append(words, w.String())
	}
	return words
}

// remoteNode starts a node that enrolls the remote VM far on an engine on
// loopback, and returns it, a function that runs a vmre client command
// against it (--node: its discovery file may come a moment after its
// events), and far's environment (vmre remote env).
func remoteNode(t *testing.T) (*proc, func(cmd string, args ...string) result, map[string]string) {
	t.Helper()
	env := ownRunDir(t)
	p := startProc(t, env, vmreBin, "node", "--plugin-dir", remoteDir(t), "--data-dir", t.TempDir(),
		"--engine-listen", "127.0.0.1:0", "--remote-ping", "1s", "--events", "-", "--log-format", "json")
	node := "http://" + parseRecord(p.stdout.waitFor(t, "the node mux", 20*time.Second, isEvent("listening", nil)))["addr"].(string)
	p.stdout.waitFor(t, "the TLS engine", 20*time.Second, isEvent("engine_listening", nil))
	client := func(cmd string, args ...string) result {
		t.Helper()
		if cmd == "remote" {
			return cli(t, env, append([]string{cmd, args[0], "--node", node}, args[1:]...)...)
		}
		return cli(t, env, append([]string{cmd, "--node", node}, args...)...)
	}
	r := client("remote", "env", "far")
	if r.code != exitOK {
		t.Fatalf("vmre remote env: exit %d\n%s", r.code, r.stderr)
	}
	return p, client, remoteEnv(t, r.stdout)
}

// vmEnvOf is the environment of a remote example VM listening on listen.
func vmEnvOf(vars map[string]string, listen string) []string {
	e := append(vmretest.Env(), client.ListenAddrKey+"="+listen)
	for k, v := range vars {
		e = append(e, k+"="+v)
	}
	return e
}

// TestRemoteEnrollmentRace: 50 times, two processes of the remote VM start
// at once with one token. One serves; the other exits 1 saying that
// another process holds the enrollment; and the address and certificate
// the node publishes are those of the one that serves: a call pinned to
// them reaches it.
func TestRemoteEnrollmentRace(t *testing.T) {
	t.Parallel()
	node, _, vars := remoteNode(t)
	seen := map[any]bool{}
	for trial := range 50 {
		ips := []string{"127.0.0.2", "127.0.0.3"}
		procs := make([]*proc, 2)
		for i, ip := range ips {
			procs[i] = startProc(t, vmEnvOf(vars, ip+":0"), exampleVM)
		}
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("trial %d's processes' stderr:\n%s\n%s", trial, procs[0].stderr, procs[1].stderr)
			}
		})
		up := parseRecord(node.stdout.waitFor(t, fmt.Sprintf("trial %d's session", trial), 20*time.Second,
			isState("far", "running", func(r record) bool { return !seen[r["cert_sha256"]] })))
		// Each process makes a certificate of its own: a session is new
		// when its certificate is (the peer's port, which the kernel
		// hands out again, is not).
		seen[up["cert_sha256"]] = true
		var winner, loser int
		select {
		case <-procs[0].done:
			winner, loser = 1, 0
		case <-procs[1].done:
			winner, loser = 0, 1
		case <-time.After(20 * time.Second):
			t.Fatalf("trial %d: both processes still run after 20s", trial)
		}
		if code := procs[loser].code; code != 1 || !strings.Contains(procs[loser].stderr.String(), `another process holds VM \"far\"'s enrollment`) {
			t.Fatalf("trial %d: the second process exited %d; want 1, saying another process holds the enrollment\n%s", trial, code, procs[loser].stderr)
		}
		addr, _ := up["addr"].(string)
		if !strings.HasPrefix(addr, ips[winner]+":") {
			t.Fatalf("trial %d: the node publishes %s; the process that serves listens on %s", trial, addr, ips[winner])
		}
		call := exec.CommandContext(t.Context(), os.Args[0], addr, up["cert_sha256"].(string))
		call.Env = append(vmretest.Env(), vmretest.ModeKey+"=call-vm")
		if out, err := call.CombinedOutput(); err != nil || !strings.HasPrefix(string(out), "block ") {
			t.Fatalf("trial %d: a call pinned to what the node publishes: %v\n%s", trial, err, out)
		}
		if code := procs[winner].signal(t, syscall.SIGTERM, 20*time.Second); code != 0 {
			t.Fatalf("trial %d: the serving process exited %d on SIGTERM; want 0", trial, code)
		}
		node.stdout.waitFor(t, fmt.Sprintf("trial %d's end", trial), 20*time.Second,
			isState("far", "lost", func(r record) bool { return r["addr"] == addr }))
	}
}

// TestRemoteRestartLoop: a VM under a supervisor that restarts it on
// failure, as systemd's Restart=on-failure does (a shell loop here,
// reading the environment file at each start as EnvironmentFile is): the
// node's restart and a rotated token end its session with exit 75, and it
// comes back, with the new token after the rotation; the operator's stop
// ends it with exit 0, and it stays down.
func TestRemoteRestartLoop(t *testing.T) {
	t.Parallel()
	node, vmre, vars := remoteNode(t)
	envFile := filepath.Join(t.TempDir(), "far.env")
	writeEnv := func(vars map[string]string) {
		t.Helper()
		var b strings.Builder
		for k, v := range vars {
			fmt.Fprintf(&b, "%s=%s\n", k, v)
		}
		fmt.Fprintf(&b, "%s=127.0.0.1:0\n", client.ListenAddrKey)
		tmp := envFile + ".new"
		if err := os.WriteFile(tmp, []byte(b.String()), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, envFile); err != nil { // whole, as an operator's copy would be
			t.Fatal(err)
		}
	}
	writeEnv(vars)
	loop := writeScript(t, "restart-on-failure", `
# Restart=on-failure, RestartSec=0.1, at most 20 starts.
n=0
while [ $n -lt 20 ]; do
	n=$((n+1))
	set -a; . "$1"; set +a
	"$2"; code=$?
	echo "exit $code"
	[ $code -eq 0 ] && exit 0
	sleep 0.1
done
exit 1
`)
	sup := startProc(t, vmretest.Env(), "/bin/sh", loop, envFile, exampleVM)
	first := parseRecord(node.stdout.waitFor(t, "far running", 20*time.Second, isState("far", "running", nil)))
	isNew := func(peers ...any) func(record) bool {
		return func(r record) bool { return !slices.Contains(peers, r["peer"]) }
	}

	// The node's operator restarts it: exit 75, and it is started again.
	if r := vmre("restart", "far"); r.code != exitOK {
		t.Fatalf("vmre restart far: exit %d\n%s", r.code, r.stderr)
	}
	sup.stdout.waitFor(t, "the restarted VM's exit", 20*time.Second, func(l string) bool { return l == "exit 75" })
	second := parseRecord(node.stdout.waitFor(t, "far back after the restart", 20*time.Second, isState("far", "running", isNew(first["peer"]))))

	// Its token is rotated: exit 75 again; the operator copies the new
	// environment, and the next start (or the one after, when a start
	// read the old file first and was refused) runs with it.
	r := vmre("remote", "rotate", "far")
	if r.code != exitOK {
		t.Fatalf("vmre remote rotate far: exit %d\n%s", r.code, r.stderr)
	}
	writeEnv(remoteEnv(t, r.stdout))
	node.stdout.waitFor(t, "far back with its new token", 30*time.Second, isState("far", "running", isNew(first["peer"], second["peer"])))
	if exits := sup.stdout.lines(); len(exits) < 2 || exits[1] != "exit 75" {
		t.Errorf("the exits after the rotation: %q; want exit 75 first", exits)
	}

	// The operator stops it: exit 0, and the supervisor leaves it down.
	if r := vmre("stop", "far"); r.code != exitOK {
		t.Fatalf("vmre stop far: exit %d\n%s", r.code, r.stderr)
	}
	if code := sup.wait(t, 20*time.Second); code != 0 || sup.stdout.lines()[len(sup.stdout.lines())-1] != "exit 0" {
		t.Errorf("after vmre stop, the supervisor ended with %d and %q; want the VM's exit 0", code, sup.stdout.lines())
	}
}
