//go:build !linux

package execdiag

// noexecMount reports whether path's file system is mounted noexec; this
// system's mount flags are not read.
func noexecMount(string) bool { return false }
