//go:build !unix

package registry

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

func openFile(path string) (*os.File, error) { return os.Open(path) }

// isExecutable tells whether a regular file may be executed: on Windows,
// mode bits say nothing of it, and CreateProcess runs .exe and .com files.
func isExecutable(info fs.FileInfo) bool {
	ext := strings.ToLower(filepath.Ext(info.Name()))
	return ext == ".exe" || ext == ".com"
}

const executableHint = "give it an .exe extension or move it out of the plugin directory"
