//go:build !unix

package atomicfile

// syncDir does nothing where a directory cannot be opened for a sync
// (Windows): there the rename is as durable as the file system makes it.
func syncDir(string) error { return nil }
