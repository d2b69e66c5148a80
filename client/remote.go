package client

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/vmre/vmre"
	"github.com/vmre/vmre/internal/h2c"
)

// Environment of a VM on another host than its node (docs/REMOTE.md),
// which its orchestrator sets beside the engine's three variables.
const (
	// ListenAddrKey is the host:port the VM's server listens on (default
	// 0.0.0.0:0, every interface, a free port).
	ListenAddrKey = "VMRE_VM_LISTEN_ADDR"
	// AdvertiseAddrKey is the address the node reaches the VM's server at:
	// a host:port, or a host alone, with the listener's port (default: the
	// listener's address, unless it is unspecified).
	AdvertiseAddrKey = "VMRE_VM_ADVERTISE_ADDR"
	// PlaintextKey, set to 1, makes the VM's server speak plain HTTP, on a
	// private network; by default it speaks TLS with a certificate of its
	// own, whose fingerprint goes to the node in Initialize.
	PlaintextKey = "VMRE_VM_PLAINTEXT"
)

// ErrNodeLost is Serve's error when a VM on another host lost its lease to
// the node: the link broke or the node died. ExitCode makes it ExitRestart,
// so that the VM's orchestrator starts it again.
var ErrNodeLost = errors.New("lost the lease to the node: the link broke or the node is gone")

// ErrRestart is Serve's error when the node ended a remote VM's session
// and wants it started again: its operator restarted it, rotated its token
// (the orchestrator starts it with the new one), or the node shut down.
// ExitCode makes it ExitRestart.
var ErrRestart = errors.New("the node ended this VM's session: start it again")

// restartError is ErrRestart with the node's words.
type restartError struct{ msg string }

func (e *restartError) Error() string        { return e.msg }
func (e *restartError) Is(target error) bool { return target == ErrRestart }

// Exit codes of a VM program, as ExitCode chooses them (docs/REMOTE.md).
const (
	// ExitOK: the VM stopped as asked: a signal of its orchestrator or
	// host, or the node's operator stopped it (vmre stop).
	ExitOK = 0
	// ExitFailure: anything else went wrong, such as a refused handshake.
	ExitFailure = 1
	// ExitUsage: the VM cannot run as configured: started without a host's
	// variables, or with variables that are not valid.
	ExitUsage = 2
	// ExitRestart (EX_TEMPFAIL of sysexits.h): a remote VM whose node ended
	// its session (a restart, a rotated token, the node's shutdown) or was
	// lost (the link broke). Its orchestrator should start it again: it
	// handshakes anew once the node is reachable. systemd's
	// Restart=on-failure and Kubernetes do.
	ExitRestart = 75
)

// ExitCode is the exit code of a VM program whose Serve returned err.
func ExitCode(err error) int {
	switch {
	case err == nil:
		return ExitOK
	case errors.Is(err, ErrNotPlugin), errors.Is(err, vmre.ErrInvalidConfig):
		return ExitUsage
	case errors.Is(err, ErrRestart), errors.Is(err, ErrNodeLost):
		return ExitRestart
	}
	return ExitFailure
}

// listenVM opens the VM's listener: on loopback, or, for a remote VM,
// where ListenAddrKey says.
func listenVM(ctx context.Context, o *options) (net.Listener, error) {
	if o.engineCert == "" {
		ln, err := h2c.ListenLoopback(ctx)
		if err != nil {
			return nil, fmt.Errorf("listen for the VM's server: %w", err)
		}
		return ln, nil
	}
	addr := o.getenv(ListenAddrKey)
	if addr == "" {
		addr = "0.0.0.0:0"
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen for the VM's server on %s (%s): %w", addr, ListenAddrKey, err)
	}
	return ln, nil
}

// announcedAddr is the address the VM announces in its handshake.
func announcedAddr(o *options, ln net.Listener) (string, error) {
	addr := ln.Addr().String()
	if o.engineCert == "" {
		return addr, nil
	}
	_, port, _ := net.SplitHostPort(addr)
	adv := o.getenv(AdvertiseAddrKey)
	switch {
	case adv == "":
		if ip := ln.Addr().(*net.TCPAddr).IP; ip.IsUnspecified() {
			return "", fmt.Errorf("%w: the VM listens on %s, every interface: set %s to the address the node reaches it at",
				vmre.ErrInvalidConfig, addr, AdvertiseAddrKey)
		}
		return addr, nil
	case strings.Contains(adv, ":") && !strings.HasSuffix(adv, "]") && net.ParseIP(adv) == nil:
		return adv, nil // host:port
	}
	return net.JoinHostPort(strings.Trim(adv, "[]"), port), nil
}

// hostOf is the host part of a host:port.
func hostOf(addr string) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return host
}
