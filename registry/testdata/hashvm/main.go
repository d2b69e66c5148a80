// Command hashvm is the executable of the registry's tests. It prints its
// arguments, the SHA-256 digest of the bytes it runs from (/proc/self/exe),
// and how many memfds it holds open, then exits: a test that pins a file
// and replaces it can tell which bytes ran. With -wait as its first
// argument, it exits when its standard input ends instead.
package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

func main() {
	exe, err := os.Open("/proc/self/exe")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	h := sha256.New()
	if _, err := io.Copy(h, exe); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	exe.Close()
	memfds := 0
	fds, _ := filepath.Glob("/proc/self/fd/*")
	for _, fd := range fds {
		if target, err := os.Readlink(fd); err == nil && strings.HasPrefix(target, "/memfd:") {
			memfds++
		}
	}
	fmt.Printf("args=%s exe=%s memfds=%d\n", strings.Join(os.Args[1:], ","), hex.EncodeToString(h.Sum(nil)), memfds)
	if len(os.Args) > 1 && os.Args[1] == "-wait" {
		io.Copy(io.Discard, os.Stdin)
	}
}
