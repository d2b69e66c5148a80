package server

import (
	"crypto/x509"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/vmre/vmre/tlspin"
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

// maxCertBytes bounds the certificate a VM sends in Initialize; a
// self-signed certificate is well under 1 KiB.
const maxCertBytes = 8 << 10

// vmCert is what a VM's Initialize says of its server's certificate.
type vmCert struct {
	sum  string // its SHA-256, lowercase hex, or ""
	spki string // the SHA-256 of its public key, base64 (tlspin.PublicKeyPin), or ""
}

// checkCertificate checks cert_sha256 and certificate of an Initialize:
// the fingerprint, when set, is one; the certificate, when sent, is an
// X.509 certificate of that fingerprint (which it gives when the
// fingerprint is left empty).
func checkCertificate(sum string, der []byte) (vmCert, error) {
	if err := checkFingerprint(sum); err != nil {
		return vmCert{}, err
	}
	if len(der) == 0 {
		return vmCert{sum: sum}, nil
	}
	if len(der) > maxCertBytes {
		return vmCert{}, fmt.Errorf("certificate is %d bytes long; want at most %d, the DER of the VM server's certificate", len(der), maxCertBytes)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return vmCert{}, fmt.Errorf("certificate is not a DER X.509 certificate: %w", err)
	}
	got := tlspin.Fingerprint(der)
	if sum != "" && sum != got {
		return vmCert{}, fmt.Errorf("cert_sha256 %s is not the SHA-256 of the certificate sent, %s: send the fingerprint of the certificate the VM's server presents", sum, got)
	}
	return vmCert{sum: got, spki: tlspin.PublicKeyPin(c)}, nil
}
