//go:build !unix

package launcher

// CloseInheritedFDs does nothing on Windows: a process started there
// inherits only the handles passed to it.
func CloseInheritedFDs() error { return nil }
