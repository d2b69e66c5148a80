//go:build !linux

package server

import (
	"net"
	"time"
)

// setUserTimeout does nothing where TCP_USER_TIMEOUT is not: the pings of
// HTTP/2 notice a cut link; an HTTP/1.1 lease over one ends when TCP gives
// up on it.
func setUserTimeout(net.Conn, time.Duration) {}
