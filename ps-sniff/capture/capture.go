// Package capture reads packets sent to this host from a Linux AF_PACKET
// socket, in pure Go (no libpcap, no cgo). A classic BPF program attached in
// the kernel (see Filter) drops everything but possible probes, so a bulk
// transfer to this host never wakes ps-sniff.
//
// The socket is SOCK_DGRAM: the kernel strips the link header, so every
// interface type (Ethernet, tun, wireguard, loopback) yields bare IP packets,
// and it is bound to ETH_P_ALL with PACKET_IGNORE_OUTGOING, so the host's
// own traffic is never even cloned for it. Packets are read with recvmsg
// into one reused buffer, through Go's poller: reading costs no allocation,
// and a scan's burst is drained packet by packet without the latency of a
// TPACKET_V3 ring's block timeout.
package capture

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// Config selects what to capture.
type Config struct {
	// Interface is the interface to capture on; "" means all of them.
	Interface string
	// Loopback includes the loopback interface when capturing on all of
	// them (capturing on "lo" by name includes it anyway).
	Loopback bool
	Filter   Filter
	// RcvBuf is the socket receive buffer in bytes; 0 means 4 MiB, room
	// for a fast scan's burst.
	RcvBuf int
}

// ErrWouldBlock is returned by Read(false) when no packet is pending.
var ErrWouldBlock = errors.New("capture: no packet pending")

// Packet is one captured packet.
type Packet struct {
	// Data holds the network-layer bytes captured; it is valid until the
	// next Read.
	Data []byte
	// Len is the packet's length; more than len(Data) when the filter cut it.
	Len      int
	Time     time.Time // kernel receive time
	Ifindex  int
	Protocol uint16 // EtherType
	Type     uint8  // PACKET_HOST, ...
}

// Handle is an open capture. Read must not be called concurrently; Close
// may be called from any goroutine and makes a blocked Read return.
type Handle struct {
	f      *os.File
	rc     syscall.RawConn
	fd     int
	buf    []byte
	oob    [128]byte
	sa     unix.RawSockaddrLinklayer
	iov    unix.Iovec
	msg    unix.Msghdr
	wait   bool
	closed atomic.Bool
	n      int
	err    error
	// readFn is h.recv as a method value, made once: passing a fresh one
	// to RawConn.Read on every packet would allocate.
	readFn func(fd uintptr) bool
}

// Open opens the socket, attaches the filter and binds it. It needs
// CAP_NET_RAW; afterwards the handle works without any privilege.
func Open(cfg Config) (*Handle, error) {
	ifindex := 0
	if cfg.Interface != "" {
		ifi, err := net.InterfaceByName(cfg.Interface)
		if err != nil {
			return nil, fmt.Errorf("capture: interface %q: %w", cfg.Interface, err)
		}
		ifindex = ifi.Index
	} else if !cfg.Loopback {
		ifis, err := net.Interfaces()
		if err != nil {
			return nil, fmt.Errorf("capture: list interfaces: %w", err)
		}
		for _, ifi := range ifis {
			if ifi.Flags&net.FlagLoopback != 0 {
				cfg.Filter.SkipIfindex = ifi.Index
			}
		}
	}
	prog, err := cfg.Filter.program()
	if err != nil {
		return nil, fmt.Errorf("capture: %w", err)
	}
	// Protocol 0 receives nothing until bind, so no packet slips in before
	// the filter is attached.
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("capture: packet socket: %w", err)
	}
	if err := setup(fd, ifindex, prog, cfg.RcvBuf); err != nil {
		unix.Close(fd)
		return nil, err
	}
	f := os.NewFile(uintptr(fd), "packet")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("capture: %w", err)
	}
	h := &Handle{f: f, rc: rc, fd: fd, buf: make([]byte, snapAll)}
	h.iov.Base = &h.buf[0]
	h.iov.SetLen(len(h.buf))
	h.msg.Name = (*byte)(unsafe.Pointer(&h.sa))
	h.msg.Iov = &h.iov
	h.msg.Iovlen = 1
	h.msg.Control = &h.oob[0]
	h.readFn = h.recv
	return h, nil
}

func setup(fd, ifindex int, prog []bpf.RawInstruction, rcvbuf int) error {
	filter := make([]unix.SockFilter, len(prog))
	for i, ins := range prog {
		filter[i] = unix.SockFilter{Code: ins.Op, Jt: ins.Jt, Jf: ins.Jf, K: ins.K}
	}
	fprog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &fprog); err != nil {
		return fmt.Errorf("capture: attach filter: %w", err)
	}
	// Locked, the filter cannot be replaced even if the process is
	// subverted after dropping privileges.
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_LOCK_FILTER, 1); err != nil {
		return fmt.Errorf("capture: lock filter: %w", err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_IGNORE_OUTGOING, 1); err != nil {
		return fmt.Errorf("capture: ignore outgoing (Linux 4.20 or later): %w", err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1); err != nil {
		return fmt.Errorf("capture: timestamps: %w", err)
	}
	if rcvbuf <= 0 {
		rcvbuf = 4 << 20
	}
	// RCVBUFFORCE passes net.core.rmem_max when privileged; else settle.
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, rcvbuf) != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, rcvbuf)
	}
	sa := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifindex}
	if err := unix.Bind(fd, sa); err != nil {
		return fmt.Errorf("capture: bind: %w", err)
	}
	return nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// Read returns the next packet. With wait false it returns ErrWouldBlock at
// once when none is pending, which lets the caller flush its output before
// it sleeps; with wait true it blocks until a packet comes or the handle is
// closed (os.ErrClosed) or its deadline passes.
func (h *Handle) Read(wait bool) (Packet, error) {
	h.wait = wait
	if err := h.rc.Read(h.readFn); err != nil {
		if h.closed.Load() {
			// RawConn reports an internal "closing" error; say it plainly.
			return Packet{}, os.ErrClosed
		}
		return Packet{}, fmt.Errorf("capture: read: %w", err)
	}
	if h.err != nil {
		return Packet{}, h.err
	}
	p := Packet{
		Data:     h.buf[:min(h.n, len(h.buf))],
		Len:      h.n,
		Ifindex:  int(h.sa.Ifindex),
		Protocol: htons(h.sa.Protocol),
		Type:     h.sa.Pkttype,
	}
	p.Time = h.timestamp()
	return p, nil
}

// recv runs inside RawConn.Read: false means "wait until readable".
func (h *Handle) recv(fd uintptr) bool {
	h.msg.Namelen = uint32(unsafe.Sizeof(h.sa))
	h.msg.SetControllen(len(h.oob))
	n, _, errno := unix.Syscall(unix.SYS_RECVMSG, fd, uintptr(unsafe.Pointer(&h.msg)), unix.MSG_TRUNC)
	switch errno {
	case 0:
		h.n, h.err = int(n), nil
		return true
	case unix.EAGAIN:
		if h.wait {
			return false
		}
		h.err = ErrWouldBlock
		return true
	case unix.EINTR:
		return false
	}
	h.err = fmt.Errorf("capture: recvmsg: %w", errno)
	return true
}

// timestamp finds SCM_TIMESTAMPNS in the control data without allocating.
func (h *Handle) timestamp() time.Time {
	oob := h.oob[:min(int(h.msg.Controllen), len(h.oob))]
	for len(oob) >= unix.SizeofCmsghdr {
		// struct cmsghdr: size_t len; int level; int type; then data.
		n := int(binary.NativeEndian.Uint64(oob[0:8]))
		level := int32(binary.NativeEndian.Uint32(oob[8:12]))
		typ := int32(binary.NativeEndian.Uint32(oob[12:16]))
		if n < unix.SizeofCmsghdr || n > len(oob) {
			break
		}
		if level == unix.SOL_SOCKET && typ == unix.SCM_TIMESTAMPNS && n >= unix.CmsgLen(16) {
			d := oob[unix.CmsgLen(0):]
			sec := int64(binary.NativeEndian.Uint64(d[0:8]))
			nsec := int64(binary.NativeEndian.Uint64(d[8:16]))
			return time.Unix(sec, nsec)
		}
		oob = oob[min(unix.CmsgSpace(n-unix.CmsgLen(0)), len(oob)):]
	}
	return time.Now()
}

// SetReadDeadline makes a waiting Read give up at t (os.ErrDeadlineExceeded).
func (h *Handle) SetReadDeadline(t time.Time) error { return h.f.SetReadDeadline(t) }

// Stats returns the packets the filter passed and those dropped for lack of
// buffer space since the last call.
func (h *Handle) Stats() (received, dropped uint32, err error) {
	var s *unix.TpacketStats
	var serr error
	err = h.rc.Control(func(fd uintptr) {
		s, serr = unix.GetsockoptTpacketStats(int(fd), unix.SOL_PACKET, unix.PACKET_STATISTICS)
	})
	if err = errors.Join(err, serr); err != nil {
		return 0, 0, fmt.Errorf("capture: statistics: %w", err)
	}
	return s.Packets, s.Drops, nil
}

// Close closes the socket; a blocked Read returns os.ErrClosed.
func (h *Handle) Close() error {
	h.closed.Store(true)
	return h.f.Close()
}
