package vmretest

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/vmre/vmre"
)

// ModeKey is the environment variable that makes the test binary run a
// helper instead of the tests; its value names the helper.
const ModeKey = "VMRE_TEST_HELPER"

// Helper is the main of a helper process: args are the process's
// arguments, and the result its exit code.
type Helper func(args []string) int

// Main runs the helper that the environment names when the test binary was
// started by Command, as os/exec's tests re-run their binary; otherwise it
// runs the tests and fails the package when one leaves a goroutine behind.
func Main(m *testing.M, helpers map[string]Helper, opts ...goleak.Option) {
	if mode := os.Getenv(ModeKey); mode != "" {
		h, ok := helpers[mode]
		if !ok {
			fmt.Fprintf(os.Stderr, "unknown test helper %q\n", mode)
			os.Exit(2)
		}
		os.Exit(h(os.Args[1:]))
	}
	goleak.VerifyTestMain(m, opts...)
}

// Command returns an unstarted command that runs the test binary as the
// helper mode with args. Its environment is the test's without the
// engine's variables (a test adds them, or the launcher does), without the
// race detector's second of sleep at exit (a race it finds still makes the
// helper exit 66).
func Command(mode string, args ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(Env(), ModeKey+"="+mode)
	return cmd
}

// Env is the environment of a helper process: the test's, less the
// engine's variables and ModeKey, with GORACE=atexit_sleep_ms=0 added to
// what GORACE says.
func Env() []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		switch name {
		case vmre.EngineAddressKey, vmre.EngineTokenKey, vmre.LeaseFDKey, ModeKey, "GORACE":
			continue
		}
		env = append(env, kv)
	}
	return append(env, "GORACE="+strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
}

// RemoveDir is an option of Main that removes the directory *dir names, if
// any, once the tests are over: what a package's tests built for the run.
func RemoveDir(dir *string) goleak.Option {
	return goleak.Cleanup(func(code int) {
		if *dir != "" {
			os.RemoveAll(*dir)
		}
		os.Exit(code)
	})
}
