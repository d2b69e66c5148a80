package launcher_test

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

// vmModeKey selects the behaviour of the test binary when it is re-run as a
// VM, as os/exec's own tests do.
const vmModeKey = "VMRE_TEST_VM_MODE"

func TestMain(m *testing.M) {
	if mode := os.Getenv(vmModeKey); mode != "" {
		os.Exit(runTestVM(mode))
	}
	goleak.VerifyTestMain(m)
}
