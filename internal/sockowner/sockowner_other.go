//go:build !linux

package sockowner

// diag stands for the Linux netlink socket, which other systems lack.
type diag struct{}

// Proc stands for a process's descriptors' directory, which other systems
// lack.
type Proc struct{}

// OpenProc returns ErrUnsupported.
func OpenProc(int) (*Proc, error) { return nil, ErrUnsupported }

// Close does nothing.
func (p *Proc) Close() {}

// Check returns ErrUnsupported: this system has no way used here to tie a
// socket to its process.
func (c *Checker) Check(Query) (Result, error) { return Result{}, ErrUnsupported }

// Release does nothing: there is nothing to close.
func (c *Checker) Release() {}

// Close does nothing: there is nothing to close.
func (c *Checker) Close() {}
