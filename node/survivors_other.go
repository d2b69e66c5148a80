//go:build !unix

package node

import "github.com/vmre/vmre/internal/proctree"

// terminate does nothing: there is no graceful signal here, and no
// process tree to read (proctree finds nothing).
func terminate(proctree.Stat) {}
