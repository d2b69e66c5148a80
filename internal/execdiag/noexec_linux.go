package execdiag

import "golang.org/x/sys/unix"

// noexecMount reports whether path's file system is mounted noexec.
func noexecMount(path string) bool {
	var st unix.Statfs_t
	return unix.Statfs(path, &st) == nil && st.Flags&unix.ST_NOEXEC != 0
}
