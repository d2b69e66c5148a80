package launcher_test

import (
	"bufio"
	"context"
	"io"
	"strings"
	"testing"

	"github.com/vmre/vmre/internal/vmretest"
	"github.com/vmre/vmre/launcher"
)

// TestEnvironment checks that a VM gets the engine's variables and the
// allowed part of the host's environment, not the host's secrets.
func TestEnvironment(t *testing.T) {
	t.Setenv("VMRE_TEST_SECRET", "hunter2")
	pr, pw := io.Pipe()
	l := newLauncher(t, launcher.Config{Stdout: pw, Env: []string{vmretest.ModeKey + "=env", "GORACE=atexit_sleep_ms=0"}})
	cmd := vmretest.Command("env")
	cmd.Env = nil // take the launcher's environment
	rt, err := l.Launch(t.Context(), cmd)
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]bool{}
	lines := make(chan struct{})
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			if kv, ok := strings.CutPrefix(sc.Text(), "env: "); ok {
				name, _, _ := strings.Cut(kv, "=")
				env[name] = true
			}
		}
	}()
	rt.Stop(context.Background())
	waitDone(t, rt)
	pw.Close()
	<-lines
	for _, name := range []string{"PATH", "VMRE_RUNTIME_ENGINE_ADDR", "VMRE_RUNTIME_ENGINE_TOKEN", vmretest.ModeKey} {
		if !env[name] {
			t.Errorf("VM lacks %s", name)
		}
	}
	if env["VMRE_TEST_SECRET"] {
		t.Error("VM inherited a variable outside the allowlist")
	}
}

func openFDs(t *testing.T) int {
	n, ok := vmretest.OpenFDs()
	if !ok {
		t.Skip("no /proc/self/fd on this system")
	}
	return n
}
