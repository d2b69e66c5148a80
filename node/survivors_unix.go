//go:build unix

package node

import (
	"syscall"

	"github.com/vmre/vmre/internal/proctree"
)

// terminate sends p SIGTERM, then SIGCONT, as a stop does.
func terminate(p proctree.Stat) {
	proctree.Signal(p, syscall.SIGTERM)
	proctree.Signal(p, syscall.SIGCONT)
}
