package launcher_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"syscall"
	"time"

	"github.com/vmre/vmre/client"
)

// initializeListening completes the handshake of a test VM that serves
// nothing: it announces a loopback listener of its own, where the host can
// connect (Launch does before it answers), and which stays open for the
// process's life.
func initializeListening(ctx context.Context) (*client.Host, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	return client.Initialize(ctx, ln.Addr().String())
}

// fullQueueVM listens with a queue of one connection, fills it with a
// connection of its own, which it never accepts, then calls Initialize
// with the listener's address and waits.
func fullQueueVM() int {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := syscall.Listen(fd, 0); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ln, err := net.FileListener(os.NewFile(uintptr(fd), "listener"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	addr := ln.Addr().String()
	// Connect until a connection is not taken in: the queue is full.
	var held []net.Conn
	for range 8 {
		c, err := net.DialTimeout("tcp", addr, 300*time.Millisecond)
		if err != nil {
			break
		}
		held = append(held, c)
	}
	fmt.Fprintf(os.Stderr, "%d connections queued on %s\n", len(held), addr)
	_, err = client.Initialize(context.Background(), addr)
	fmt.Fprintln(os.Stderr, "initialize:", err)
	blockForever()
	return 0
}
