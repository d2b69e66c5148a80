package registry

import "time"

// fileID is what git's index keeps of a file to tell, without reading it,
// that it has not changed: its device and inode, size, and modification
// and change times. A file rewritten in place, replaced by a rename, or
// touched has another.
type fileID struct {
	dev, ino     uint64
	size         int64
	mtime, ctime int64 // nanoseconds since the epoch
}

// racyWindow is how close to the moment its identity was taken a file's
// times may be for that identity not to prove that the file is unchanged.
// File systems stamp times from a coarse clock (a tick of up to 10 ms on
// Linux, whole seconds or two on some), so a file written again within a
// tick of the stat that took its identity may keep its size and times: git
// calls such an entry "racily clean" and reads the file again. The window
// covers the coarsest of those clocks.
const racyWindow = 2 * time.Second

// identity is a file's identity and the moment it was taken.
type identity struct {
	id fileID
	at time.Time
}

// proves reports whether a file whose identity is now id is, by that
// alone, the file this identity was taken of: the same identity, taken
// when its times were already older than racyWindow.
func (i identity) proves(id fileID) bool {
	if i.id != id || i.id == (fileID{}) {
		return false
	}
	limit := i.at.Add(-racyWindow).UnixNano()
	return i.id.mtime < limit && i.id.ctime < limit
}
