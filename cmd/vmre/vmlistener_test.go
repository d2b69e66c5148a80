//go:build unix

package main

import (
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"

	"github.com/vmre/vmre/internal/h2c"
	"github.com/vmre/vmre/internal/vmretest"
)

func init() {
	// listen ADDR: listen on ADDR, say so on stdout and close it, then
	// serve 404 on it (over HTTP/1.1 and h2c) until killed.
	helpers["listen"] = func(args []string) int {
		ln, err := net.Listen("tcp", args[0])
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		fmt.Println(ln.Addr())
		os.Stdout.Close()
		h2c.NewServer(http.NotFoundHandler()).Serve(ln)
		return 0
	}
}

// vmListener returns an address for a script VM to announce, and the
// lines of shell that make the script hold a listener there before it
// calls back: the engine accepts only an address that the VM, or one of
// its descendants, listens on (docs/PROTOCOL.md, "The caller check"). The
// script's background child, the test binary as a helper, listens and
// serves 404; the script goes on once it listens. The address is known in
// advance, on a loopback IP of the test's own (127.77.x.y) and a port below
// the ephemeral range, which nothing else binds.
func vmListener(t *testing.T) (addr, shell string) {
	t.Helper()
	bin, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(t.TempDir(), "listening")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	addr = net.JoinHostPort(fmt.Sprintf("127.77.%d.%d", 1+rand.N(250), 1+rand.N(250)), strconv.Itoa(20000+rand.N(10000)))
	shell = fmt.Sprintf("%s=listen '%s' %s >'%s' &\nread listening <'%s'\n", vmretest.ModeKey, bin, addr, fifo, fifo)
	return addr, shell
}
