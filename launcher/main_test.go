package launcher_test

import (
	"testing"

	"github.com/vmre/vmre/internal/vmretest"
)

// TestMain runs the test binary as one of the VMs of vms when
// vmretest.Command started it, and the tests otherwise, failing the package
// when a test leaves a goroutine behind.
func TestMain(m *testing.M) { vmretest.Main(m, vms) }
