//go:build unix && !linux

package launcher

import "syscall"

// setParentDeathSignal does nothing where the kernel has no parent-death
// signal; the lease ends such VMs when their host dies.
func setParentDeathSignal(*syscall.SysProcAttr, *settings) {}

// waitExited returns at once: without waitid, the group is signalled after
// the VM is reaped.
func waitExited(int) {}
