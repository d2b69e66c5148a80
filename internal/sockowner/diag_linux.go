package sockowner

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The kernel's structures of sock_diag for TCP (linux/inet_diag.h), which
// x/sys/unix does not define.
type (
	// inetDiagSockID is struct inet_diag_sockid: ports and addresses in
	// network byte order.
	inetDiagSockID struct {
		Sport  [2]byte
		Dport  [2]byte
		Src    [16]byte
		Dst    [16]byte
		If     uint32
		Cookie [2]uint32
	}
	// inetDiagReqV2 is struct inet_diag_req_v2.
	inetDiagReqV2 struct {
		Family   uint8
		Protocol uint8
		Ext      uint8
		Pad      uint8
		States   uint32
		ID       inetDiagSockID
	}
	// inetDiagMsg is struct inet_diag_msg.
	inetDiagMsg struct {
		Family  uint8
		State   uint8
		Timer   uint8
		Retrans uint8
		ID      inetDiagSockID
		Expires uint32
		RQueue  uint32
		WQueue  uint32
		UID     uint32
		Inode   uint32
	}
)

const (
	noCookie      = ^uint32(0) // INET_DIAG_NOCOOKIE
	sizeofReq     = unsafe.Sizeof(inetDiagReqV2{})
	sizeofMsg     = unsafe.Sizeof(inetDiagMsg{})
	sizeofNlmsg   = unix.SizeofNlMsghdr
	recvBufferLen = 4 << 10 // an exact lookup's answer is one message
)

// diag is one sock_diag netlink socket.
type diag struct {
	fd  int
	seq uint32
	buf []byte
}

func openDiag() (*diag, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return nil, fmt.Errorf("open a sock_diag socket: %w", err)
	}
	return &diag{fd: fd, buf: make([]byte, recvBufferLen)}, nil
}

func (d *diag) close() { unix.Close(d.fd) }

// lookup sends one exact inet_diag lookup and returns the inode of the
// socket it found, or 0 when there is none.
func (d *diag) lookup(req inetDiagReqV2) (uint64, error) {
	d.seq++
	msg := make([]byte, sizeofNlmsg+sizeofReq)
	hdr := (*unix.NlMsghdr)(unsafe.Pointer(&msg[0]))
	hdr.Len = uint32(len(msg))
	hdr.Type = unix.SOCK_DIAG_BY_FAMILY
	hdr.Flags = unix.NLM_F_REQUEST
	hdr.Seq = d.seq
	*(*inetDiagReqV2)(unsafe.Pointer(&msg[sizeofNlmsg])) = req
	if err := unix.Sendto(d.fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return 0, fmt.Errorf("sock_diag request: %w", err)
	}
	for {
		n, _, err := unix.Recvfrom(d.fd, d.buf, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("sock_diag answer: %w", err)
		}
		msgs, err := syscall.ParseNetlinkMessage(d.buf[:n])
		if err != nil {
			return 0, fmt.Errorf("sock_diag answer: %w", err)
		}
		for _, m := range msgs {
			if m.Header.Seq != d.seq {
				continue
			}
			switch m.Header.Type {
			case unix.NLMSG_ERROR:
				if len(m.Data) < 4 {
					return 0, errors.New("sock_diag answer: a short error message")
				}
				switch errno := unix.Errno(-int32(binary.NativeEndian.Uint32(m.Data))); errno {
				case 0, unix.ENOENT: // ENOENT: no such socket
					return 0, nil
				default:
					return 0, fmt.Errorf("sock_diag: %w", errno)
				}
			case unix.SOCK_DIAG_BY_FAMILY:
				if len(m.Data) < int(sizeofMsg) {
					return 0, errors.New("sock_diag answer: a short message")
				}
				return uint64((*inetDiagMsg)(unsafe.Pointer(&m.Data[0])).Inode), nil
			}
		}
	}
}

// connInode finds the socket whose local end is remote and remote end is
// local: the caller's end of a connection whose server end is local. It
// returns 0 when there is none.
func (d *diag) connInode(local, remote netip.AddrPort) (uint64, error) {
	if remote.Addr().Unmap().Is4() {
		inode, err := d.lookup(request(unix.AF_INET, remote, local))
		if inode != 0 || err != nil {
			return inode, err
		}
		// An IPv6 socket of the caller, which sees the mapped addresses.
		return d.lookup(request(unix.AF_INET6, mapped(remote), mapped(local)))
	}
	return d.lookup(request(unix.AF_INET6, remote, local))
}

// listenerInode finds the listening socket that a connection to addr
// reaches, as the kernel looks it up for an incoming connection: one bound
// to addr, or to the unspecified address of its port (an IPv6 one that
// takes IPv4 too included). It returns 0 when there is none.
func (d *diag) listenerInode(addr netip.AddrPort) (uint64, error) {
	if addr.Addr().Unmap().Is4() {
		return d.lookup(request(unix.AF_INET, addr, netip.AddrPortFrom(netip.IPv4Unspecified(), 0)))
	}
	return d.lookup(request(unix.AF_INET6, addr, netip.AddrPortFrom(netip.IPv6Unspecified(), 0)))
}

// request is the exact lookup of the TCP socket of family whose local end
// is src and remote end dst.
func request(family uint8, src, dst netip.AddrPort) inetDiagReqV2 {
	id := inetDiagSockID{Cookie: [2]uint32{noCookie, noCookie}}
	binary.BigEndian.PutUint16(id.Sport[:], src.Port())
	binary.BigEndian.PutUint16(id.Dport[:], dst.Port())
	putAddr(family, id.Src[:], src.Addr())
	putAddr(family, id.Dst[:], dst.Addr())
	return inetDiagReqV2{Family: family, Protocol: unix.IPPROTO_TCP, States: ^uint32(0), ID: id}
}

func putAddr(family uint8, b []byte, a netip.Addr) {
	if family == unix.AF_INET {
		v4 := a.Unmap().As4()
		copy(b, v4[:])
		return
	}
	v6 := a.As16()
	copy(b, v6[:])
}

// mapped is a as an IPv6 socket sees an IPv4 address: ::ffff:a.
func mapped(a netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom16(a.Addr().Unmap().As16()), a.Port())
}
