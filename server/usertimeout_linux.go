package server

import (
	"net"
	"time"

	"golang.org/x/sys/unix"
)

// setUserTimeout makes TCP abort the connection c when data it sent stays
// unacknowledged for d (TCP_USER_TIMEOUT): the engine's keep-alives on a
// lease then notice a cut link within d, on HTTP/1.1 too, which has no
// pings. A failure leaves the connection as it is: the pings of HTTP/2
// still notice.
func setUserTimeout(c net.Conn, d time.Duration) {
	tcp, ok := c.(*net.TCPConn)
	if !ok {
		return
	}
	raw, err := tcp.SyscallConn()
	if err != nil {
		return
	}
	raw.Control(func(fd uintptr) {
		unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, int(d.Milliseconds()))
	})
}
