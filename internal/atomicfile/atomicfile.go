// Package atomicfile writes the files a node keeps in its data directory so
// that a crash at any point leaves either the old content or the new one,
// never a torn file or none: the bytes go to a temporary file in the same
// directory, which is synced, renamed over the target, and the directory
// is synced so that the rename itself survives a power cut (as etcd's
// fileutil and Prometheus's tsdb do).
package atomicfile

import (
	"fmt"
	"os"
	"path/filepath"
)

// Write makes path hold data with mode perm, creating its directory (mode
// 0700) when it is missing. A reader sees the old content or the new one,
// before and after a crash. A temporary file left by a crash in the middle
// is named ".NAME.tmp-*" and is removed by the next Write of NAME.
func Write(path string, data []byte, perm os.FileMode) error {
	dir, name := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	removeStale(dir, name)
	f, err := os.CreateTemp(dir, "."+name+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err := f.Chmod(perm); err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	ok = true
	return syncDir(dir)
}

// Rename renames oldpath to newpath, as os.Rename, and syncs newpath's
// directory so that the rename survives a crash: for a file written and
// synced under a temporary name, which then takes its name.
func Rename(oldpath, newpath string) error {
	if err := os.Rename(oldpath, newpath); err != nil {
		return err
	}
	return syncDir(filepath.Dir(newpath))
}

// Remove removes path, and syncs its directory so that the removal
// survives a crash. A path that does not exist is no error.
func Remove(path string) error {
	if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
		return err
	}
	return syncDir(filepath.Dir(path))
}

// removeStale removes the temporary files an earlier Write of name left
// when it was killed before its rename.
func removeStale(dir, name string) {
	stale, _ := filepath.Glob(filepath.Join(dir, "."+escapeGlob(name)+".tmp-*"))
	for _, p := range stale {
		os.Remove(p)
	}
}

func escapeGlob(s string) string {
	var b []byte
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '*', '?', '[', '\\':
			b = append(b, '\\')
		}
		b = append(b, s[i])
	}
	return string(b)
}
