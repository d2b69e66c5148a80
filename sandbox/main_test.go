package sandbox_test

import (
	"testing"

	"github.com/vmre/vmre/internal/vmretest"
	"github.com/vmre/vmre/sandbox"
)

// TestMain runs the sandbox's init step when a test started one, the test
// binary as one of the VMs of vms when the environment names one, and the
// tests otherwise, failing the package when a test leaves a goroutine
// behind.
func TestMain(m *testing.M) {
	sandbox.Init()
	vmretest.Main(m, vms)
}
