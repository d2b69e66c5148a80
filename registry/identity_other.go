//go:build !linux

package registry

import "io/fs"

// fileIDOf is the identity of the file that info describes: its size and
// modification time, portably: the inode and change time are read on Linux only.
func fileIDOf(info fs.FileInfo) fileID {
	return fileID{size: info.Size(), mtime: info.ModTime().UnixNano(), ctime: info.ModTime().UnixNano()}
}
