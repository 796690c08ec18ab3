package sip

import (
	"net"
	"net/netip"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// rawUDPConn is the listening UDP socket with its datagram reads and
// writes done as raw system calls.
//
// Why: a loopback sendto runs the receiver's network stack inline and
// takes long enough that the Go scheduler's monitor thread finds the P "in
// a system call", hands it to another thread and wakes it back up with
// futexes; strace of the REGISTER benchmark showed about one futex or
// nanosleep per datagram, on the one core the server is pinned to. UDP
// socket calls on a non-blocking descriptor never block, so they need
// none of that bookkeeping; waiting for data still goes through the
// runtime's poller (RawConn.Read with EAGAIN).
type rawUDPConn struct {
	*net.UDPConn
	rc syscall.RawConn
}

func newRawUDPConn(pc net.PacketConn) net.PacketConn {
	uc, ok := pc.(*net.UDPConn)
	if !ok {
		return pc
	}
	rc, err := uc.SyscallConn()
	if err != nil {
		return pc
	}
	return &rawUDPConn{UDPConn: uc, rc: rc}
}

// ReadFrom implements net.PacketConn.
func (c *rawUDPConn) ReadFrom(b []byte) (int, net.Addr, error) {
	if len(b) == 0 {
		return c.UDPConn.ReadFrom(b)
	}
	var (
		n     int
		rsa   unix.RawSockaddrAny
		errno syscall.Errno
	)
	err := c.rc.Read(func(fd uintptr) bool {
		alen := uint32(unix.SizeofSockaddrAny)
		r, _, e := unix.RawSyscall6(unix.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), 0,
			uintptr(unsafe.Pointer(&rsa)), uintptr(unsafe.Pointer(&alen)))
		n, errno = int(r), e
		return e != unix.EAGAIN
	})
	if err != nil {
		return 0, nil, &net.OpError{Op: "read", Net: "udp", Source: c.LocalAddr(), Err: err}
	}
	if errno != 0 {
		return 0, nil, &net.OpError{Op: "read", Net: "udp", Source: c.LocalAddr(), Err: errno}
	}
	return n, sockaddrToUDP(&rsa), nil
}

// WriteTo implements net.PacketConn.
func (c *rawUDPConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return c.UDPConn.WriteTo(b, addr)
	}
	ap := ua.AddrPort()
	var sa4 unix.RawSockaddrInet4
	var sa6 unix.RawSockaddrInet6
	var ptr unsafe.Pointer
	var slen uintptr
	if ip := ap.Addr(); ip.Is4() || ip.Is4In6() {
		sa4.Family = unix.AF_INET
		sa4.Port = htons(ap.Port())
		sa4.Addr = ip.Unmap().As4()
		ptr, slen = unsafe.Pointer(&sa4), unix.SizeofSockaddrInet4
	} else {
		sa6.Family = unix.AF_INET6
		sa6.Port = htons(ap.Port())
		sa6.Addr = ip.As16()
		ptr, slen = unsafe.Pointer(&sa6), unix.SizeofSockaddrInet6
	}
	var p unsafe.Pointer
	if len(b) > 0 {
		p = unsafe.Pointer(&b[0])
	}
	var n int
	var errno syscall.Errno
	err := c.rc.Write(func(fd uintptr) bool {
		r, _, e := unix.RawSyscall6(unix.SYS_SENDTO, fd, uintptr(p), uintptr(len(b)), 0, uintptr(ptr), slen)
		n, errno = int(r), e
		return e != unix.EAGAIN
	})
	if err == nil && errno != 0 {
		err = errno
	}
	if err != nil {
		return 0, &net.OpError{Op: "write", Net: "udp", Source: c.LocalAddr(), Addr: addr, Err: err}
	}
	return n, nil
}

func htons(p uint16) uint16 { return p<<8 | p>>8 }

func sockaddrToUDP(rsa *unix.RawSockaddrAny) *net.UDPAddr {
	switch rsa.Addr.Family {
	case unix.AF_INET:
		sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(rsa))
		return net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), htons(sa.Port)))
	case unix.AF_INET6:
		sa := (*unix.RawSockaddrInet6)(unsafe.Pointer(rsa))
		return net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.AddrFrom16(sa.Addr), htons(sa.Port)))
	}
	return &net.UDPAddr{}
}
