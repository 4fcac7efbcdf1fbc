package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/portsentry/pipeline/shared/alert"
	"github.com/portsentry/pipeline/shared/event"
	"github.com/portsentry/pipeline/shared/metrics"
	"github.com/portsentry/pipeline/shared/transport"
	"golang.org/x/sys/unix"
)

// Epoll tags for the descriptors that are not tripwire sockets; a socket's
// tag is its index in sensor.socks.
const (
	tagWake   = -1
	tagOutput = -2
)

// perRound bounds the connections or datagrams taken from one socket per
// wakeup, so that one flooded port cannot starve the others.
const perRound = 64

// sensor watches every tripwire socket from one goroutine with one epoll set.
// No connection outlives its handling: accept, one non-blocking banner write
// into the fresh socket's empty send buffer, close. So goroutines and
// descriptors stay constant under any flood, and nothing is ever read from a
// TCP peer.
type sensor struct {
	socks  []*socket
	epfd   int
	wake   int // eventfd: Stop writes it, Run returns
	out    *transport.Sink
	log    *alert.Logger
	banner []byte

	hits  *metrics.Hits // --metrics; nil counts nothing
	line  []byte
	ev    event.Event
	dgram [64]byte // UDP payloads are never looked at: the kernel drops the rest
	oob   []byte
}

// newSensor registers socks with a new epoll set; the sensor owns them from
// then on, even when it fails. With watchOut, the output pipe is watched
// too, so that a dead downstream ends the sensor at once rather than at the
// next hit. A banner larger than a socket's send buffer (16 KiB by default)
// is cut there: nothing waits for a peer to read.
func newSensor(socks []*socket, out *transport.Sink, log *alert.Logger, banner string, watchOut bool) (*sensor, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		closeAll(socks)
		return nil, fmt.Errorf("epoll: %w", err)
	}
	s := &sensor{socks: socks, epfd: epfd, wake: -1, out: out, log: log, banner: []byte(banner),
		oob: make([]byte, unix.CmsgSpace(unix.SizeofInet6Pktinfo)+unix.CmsgSpace(unix.SizeofInet4Pktinfo))}
	if s.wake, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
		s.Close()
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	add := func(fd int, tag int32, events uint32) error {
		return unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: events, Fd: tag})
	}
	if err := add(s.wake, tagWake, unix.EPOLLIN); err != nil {
		s.Close()
		return nil, fmt.Errorf("epoll add eventfd: %w", err)
	}
	for i, so := range socks {
		if err := add(so.fd, int32(i), unix.EPOLLIN); err != nil {
			s.Close()
			return nil, fmt.Errorf("epoll add %s port %d: %w", so.proto.Upper(), so.port, err)
		}
	}
	if watchOut {
		// A pipe's write end reports EPOLLERR once its reader has gone.
		var st unix.Stat_t
		if unix.Fstat(1, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFIFO {
			if err := add(1, tagOutput, 0); err != nil {
				s.Close()
				return nil, fmt.Errorf("epoll add stdout: %w", err)
			}
		}
	}
	return s, nil
}

// Stop makes Run return nil; it is safe from any goroutine.
func (s *sensor) Stop() {
	var one [8]byte
	binary.NativeEndian.PutUint64(one[:], 1)
	unix.Write(s.wake, one[:]) // cannot block: a full counter already means stop
}

// Close releases the epoll set and every socket.
func (s *sensor) Close() {
	for _, so := range s.socks {
		unix.Close(so.fd)
	}
	if s.wake >= 0 {
		unix.Close(s.wake)
	}
	unix.Close(s.epfd)
}

// Run handles connections and datagrams until Stop or an output failure.
// What one wakeup produced is flushed before waiting again, so a hit never
// waits behind an idle socket.
func (s *sensor) Run() error {
	events := make([]unix.EpollEvent, 256)
	for {
		n, err := unix.EpollWait(s.epfd, events, -1)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("epoll wait: %w", err)
		}
		for _, e := range events[:n] {
			switch e.Fd {
			case tagWake:
				return nil
			case tagOutput:
				return transport.ErrDownstreamClosed
			}
			so := s.socks[e.Fd]
			if so.proto == event.ProtoTCP {
				err = s.accept(so)
			} else {
				err = s.receive(so)
			}
			if err != nil {
				return err
			}
		}
		if err := s.out.Flush(); err != nil {
			return err
		}
	}
}

func (s *sensor) accept(so *socket) error {
	for range perRound {
		fd, peer, err := unix.Accept4(so.fd, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
		switch {
		case errors.Is(err, unix.EAGAIN):
			return nil
		case errors.Is(err, unix.ECONNABORTED), errors.Is(err, unix.EINTR):
			continue
		case err != nil:
			// Out of descriptors or kernel memory: the port stays readable,
			// so pause rather than spin until the shortage ends.
			if s.log.Allow() {
				s.log.Admin("accept on TCP port %d: %v", so.port, err)
			}
			time.Sleep(10 * time.Millisecond)
			return nil
		}
		// The accepted socket's own address: the true port even if the
		// list of bound ports has holes, the true address on a wildcard.
		dst := netip.AddrPortFrom(wildcard(so.v6), so.port)
		if local, err := unix.Getsockname(fd); err == nil {
			dst = sockaddr(local)
		}
		if len(s.banner) > 0 {
			unix.Write(fd, s.banner) // best effort: the peer may be gone already
		}
		unix.Close(fd)
		if err := s.hit(event.ModeTCP, event.ScanConnect, sockaddr(peer), dst); err != nil {
			return err
		}
	}
	return nil
}

func (s *sensor) receive(so *socket) error {
	for range perRound {
		_, oobn, _, peer, err := unix.Recvmsg(so.fd, s.dgram[:], s.oob, 0)
		switch {
		case errors.Is(err, unix.EAGAIN):
			return nil
		case err != nil:
			// ICMP errors queued on the socket and the like: nothing to report.
			continue
		}
		dst := pktinfo(s.oob[:oobn], so.v6)
		if err := s.hit(event.ModeUDP, event.ScanUDP, sockaddr(peer), netip.AddrPortFrom(dst, so.port)); err != nil {
			return err
		}
	}
	return nil
}

func (s *sensor) hit(mode event.Mode, scan event.Scan, src, dst netip.AddrPort) error {
	s.ev = event.Event{
		Kind: event.KindHit, Time: time.Now().UTC(), Sensor: "ps-listen",
		Mode: mode, Proto: mode.Proto(), Scan: scan,
		Src: src.Addr(), Sport: src.Port(), Dst: dst.Addr(), Dport: dst.Port(),
	}
	if s.log.Allow() {
		s.log.Attack("Connect from host: %s/%s to %s port: %d", s.ev.Src, s.ev.Src, s.ev.Proto.Upper(), s.ev.Dport)
	}
	s.line = event.Append(s.line[:0], &s.ev)
	if err := s.out.Write(s.line); err != nil {
		return err
	}
	s.hits.Hit(&s.ev)
	return nil
}

// sockaddr is a socket address as the event wants it: IPv4 unmapped, no zone.
func sockaddr(sa unix.Sockaddr) netip.AddrPort {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port))
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(a.Addr).Unmap(), uint16(a.Port))
	}
	return netip.AddrPort{}
}

// pktinfo is the destination address of a datagram from its control
// messages, or the wildcard if the kernel gave none.
func pktinfo(oob []byte, v6 bool) netip.Addr {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err == nil {
		for _, m := range msgs {
			switch {
			case m.Header.Level == unix.IPPROTO_IPV6 && m.Header.Type == unix.IPV6_PKTINFO && len(m.Data) >= unix.SizeofInet6Pktinfo:
				return netip.AddrFrom16([16]byte(m.Data[:16])).Unmap()
			case m.Header.Level == unix.IPPROTO_IP && m.Header.Type == unix.IP_PKTINFO && len(m.Data) >= unix.SizeofInet4Pktinfo:
				// struct in_pktinfo: ifindex, spec_dst, addr (the header's destination)
				return netip.AddrFrom4([4]byte(m.Data[8:12]))
			}
		}
	}
	return wildcard(v6)
}

// wildcard is the address a socket is bound to, for when the kernel does not
// say which local address a probe reached.
func wildcard(v6 bool) netip.Addr {
	if v6 {
		return netip.IPv6Unspecified()
	}
	return netip.IPv4Unspecified()
}
