package main

import (
	"errors"
	"fmt"

	"github.com/portsentry/pipeline/shared/event"
	"golang.org/x/sys/unix"
)

// backlog is the accept queue of each tripwire port. Connections are closed
// as soon as they are accepted, so the queue only absorbs bursts; past it the
// kernel drops the SYN (or answers with a cookie), costing us nothing.
const backlog = 1024

// spareFDs are descriptors held while binding and released afterwards, so
// that a port list larger than the descriptor limit still leaves room to
// accept a connection and to reconnect the --connect socket.
const spareFDs = 4

// socket is one bound tripwire port.
type socket struct {
	fd    int
	proto event.Proto
	port  uint16
	v6    bool // AF_INET6, dual-stack: IPv4 peers arrive as mapped addresses
}

// binder opens tripwire sockets: dual-stack IPv6 where the host has IPv6,
// else IPv4 only. One socket per port keeps thousands of ports cheap.
type binder struct {
	v6 bool
}

func newBinder() binder {
	fd, err := unix.Socket(unix.AF_INET6, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return binder{} // no IPv6 (ipv6.disable=1): IPv4 sockets it is
	}
	unix.Close(fd)
	return binder{v6: true}
}

// bind opens, binds and (for TCP) listens on port on every local address.
func (b binder) bind(proto event.Proto, port uint16) (*socket, error) {
	family := unix.AF_INET
	if b.v6 {
		family = unix.AF_INET6
	}
	typ := unix.SOCK_STREAM
	if proto == event.ProtoUDP {
		typ = unix.SOCK_DGRAM
	}
	fd, err := unix.Socket(family, typ|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socket: %w", err)
	}
	s := &socket{fd: fd, proto: proto, port: port, v6: b.v6}
	if err := s.setup(); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return s, nil
}

func (s *socket) setup() error {
	if s.v6 {
		// Explicitly 0: net.ipv6.bindv6only=1 would leave IPv4 unwatched.
		if err := unix.SetsockoptInt(s.fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 0); err != nil {
			return fmt.Errorf("IPV6_V6ONLY: %w", err)
		}
	}
	var level, opt int
	switch {
	case s.proto == event.ProtoTCP:
		// Our own closes leave TIME_WAIT on the tripwire port; without this
		// a restart could not bind it again for a minute.
		level, opt = unix.SOL_SOCKET, unix.SO_REUSEADDR
	case s.v6:
		// The address a datagram was sent to, IPv4 ones included (mapped).
		level, opt = unix.IPPROTO_IPV6, unix.IPV6_RECVPKTINFO
	default:
		level, opt = unix.IPPROTO_IP, unix.IP_PKTINFO
	}
	if err := unix.SetsockoptInt(s.fd, level, opt, 1); err != nil {
		return fmt.Errorf("setsockopt: %w", err)
	}
	var sa unix.Sockaddr = &unix.SockaddrInet4{Port: int(s.port)}
	if s.v6 {
		sa = &unix.SockaddrInet6{Port: int(s.port)}
	}
	if err := unix.Bind(s.fd, sa); err != nil {
		return fmt.Errorf("bind: %w", err)
	}
	if s.proto == event.ProtoTCP {
		if err := unix.Listen(s.fd, backlog); err != nil {
			return fmt.Errorf("listen: %w", err)
		}
	}
	return nil
}

// bindAll binds every port of ports, logging 1.2's lines: a port that cannot
// be bound is a warning and is skipped. Running out of descriptors stops the
// binding with one message instead of one per remaining port.
func bindAll(b binder, proto event.Proto, ports []uint16, logf func(string, ...any)) []*socket {
	var socks []*socket
	for i, p := range ports {
		s, err := b.bind(proto, p)
		if errors.Is(err, unix.EMFILE) || errors.Is(err, unix.ENFILE) {
			logf("ERROR: out of file descriptors after %d %s ports: %d ports from %d on are not watched (raise the limit, ulimit -n)",
				len(socks), proto.Upper(), len(ports)-i, p)
			break
		}
		if err != nil {
			hint := ""
			if errors.Is(err, unix.EACCES) {
				hint = ": ports below 1024 need root or the CAP_NET_BIND_SERVICE capability"
			}
			logf("ERROR: could not bind %s socket: %d (%v%s). Attempting to continue", proto.Upper(), p, err, hint)
			continue
		}
		logf("Going into listen mode on %s port: %d", proto.Upper(), p)
		socks = append(socks, s)
	}
	return socks
}

// closeAll closes sockets that never reached a sensor.
func closeAll(socks []*socket) {
	for _, s := range socks {
		unix.Close(s.fd)
	}
}

// reserveFDs holds n descriptors on /dev/null; release gives them back.
func reserveFDs(n int) (release func(), err error) {
	fds := make([]int, 0, n)
	release = func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}
	for range n {
		fd, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			release()
			return nil, fmt.Errorf("reserving descriptors: %w", err)
		}
		fds = append(fds, fd)
	}
	return release, nil
}
