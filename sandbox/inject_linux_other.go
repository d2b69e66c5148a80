//go:build linux && !amd64

package sandbox

import "errors"

// injectArch tells that Start cannot have a VM stopped under ptrace make
// system calls on this processor: the init step applies every policy.
const injectArch = false

func (t *tracee) inject([]syscallArgs) error {
	return errors.New("system calls in a stopped VM are made on amd64 only")
}
