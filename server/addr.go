package server

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// maxAddrLen bounds the VM address; a host:port is never longer.
const maxAddrLen = 512

// checkAddr reports whether addr is a host:port a VM may announce. Unless
// remote is set, the host must be a loopback IP or "localhost".
func checkAddr(addr string, remote bool) error {
	if len(addr) > maxAddrLen {
		return fmt.Errorf("addr is %d bytes long; want a host:port such as 127.0.0.1:40000", len(addr))
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("addr %q is not a host:port such as 127.0.0.1:40000: %w", addr, err)
	}
	if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 {
		return fmt.Errorf("addr %q has port %q; want a number from 1 to 65535", addr, port)
	}
	if host == "" {
		return fmt.Errorf("addr %q has no host; the VM should listen on 127.0.0.1 and send that listener's address", addr)
	}
	if remote {
		return nil
	}
	if host == "localhost" {
		return nil
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || !ip.IsLoopback() {
		return fmt.Errorf("addr %q is not a loopback address; the VM must listen on 127.0.0.1 or ::1 (the host allows remote VMs only when configured to)", addr)
	}
	return nil
}

// checkFingerprint reports whether s is a SHA-256 fingerprint as the VM
// announces it: empty, or 64 lowercase hex digits.
func checkFingerprint(s string) error {
	if s == "" {
		return nil
	}
	if len(s) != 64 || strings.Trim(s, "0123456789abcdef") != "" {
		return fmt.Errorf("cert_sha256 %q is not a SHA-256 fingerprint: want 64 lowercase hex digits, the SHA-256 of the DER certificate of the VM's server", s)
	}
	return nil
}
