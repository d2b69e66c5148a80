//go:build !linux

package sandbox_test

import "github.com/vmre/vmre/internal/vmretest"

// vms is empty: the sandbox's VMs run on Linux only.
var vms = map[string]vmretest.Helper{}
