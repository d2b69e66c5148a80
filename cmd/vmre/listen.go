package main

import (
	"fmt"
	"net"

	"github.com/vmre/vmre"
)

// listen opens a TCP listener on addr (host:port; port 0 picks a free one)
// and returns it with the address a VM on this machine dials to reach it:
// an unspecified host (0.0.0.0, ::) becomes the loopback address.
func listen(addr string) (ln net.Listener, dialAddr string, err error) {
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return nil, "", fmt.Errorf("%w: --listen %q is not a host:port address: %w", vmre.ErrInvalidConfig, addr, err)
	}
	ln, err = net.Listen("tcp", addr)
	if err != nil {
		return nil, "", fmt.Errorf("listen on %s: %w", addr, err)
	}
	tcp, ok := ln.Addr().(*net.TCPAddr)
	if !ok {
		return ln, ln.Addr().String(), nil
	}
	ip := tcp.IP
	switch {
	case ip.IsUnspecified() && ip.To4() != nil:
		ip = net.IPv4(127, 0, 0, 1)
	case ip.IsUnspecified():
		ip = net.IPv6loopback
	}
	return ln, (&net.TCPAddr{IP: ip, Port: tcp.Port}).String(), nil
}
