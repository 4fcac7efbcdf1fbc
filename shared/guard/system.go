package guard

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Discover looks up this host's addresses and their subnets, default
// gateways (from /proc/net/route and /proc/net/ipv6_route) and name servers
// (from each of resolvConfs, normally ResolvConf and ResolvedConf). Missing
// files are not errors: a container may lack them.
func Discover(resolvConfs ...string) (*System, error) {
	var s System
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, fmt.Errorf("interface addresses: %w", err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok {
				ip = ip.Unmap()
				s.Own = append(s.Own, ip)
				ones, bits := n.Mask.Size()
				if ip.Is4() && bits == 128 {
					ones -= 96
				}
				if bits != 0 && ones >= 0 {
					s.Subnets = append(s.Subnets, netip.PrefixFrom(ip, ones))
				}
			}
		}
	}
	s.Gateways = append(readRoutes4("/proc/net/route"), readRoutes6("/proc/net/ipv6_route")...)
	for _, rc := range resolvConfs {
		s.Resolvers = append(s.Resolvers, readResolvers(rc)...)
	}
	return &s, nil
}

// readRoutes4 takes the gateways of /proc/net/route's default routes; the
// fields are little-endian hex.
func readRoutes4(path string) []netip.Addr {
	var out []netip.Addr
	eachLine(path, func(f []string) {
		if len(f) < 3 || f[1] != "00000000" {
			return
		}
		b, err := hex.DecodeString(f[2])
		if err != nil || len(b) != 4 {
			return
		}
		gw := netip.AddrFrom4([4]byte{b[3], b[2], b[1], b[0]})
		if !gw.IsUnspecified() {
			out = append(out, gw)
		}
	})
	return out
}

// readRoutes6 takes the next hops of /proc/net/ipv6_route's ::/0 routes.
func readRoutes6(path string) []netip.Addr {
	var out []netip.Addr
	eachLine(path, func(f []string) {
		if len(f) < 5 || f[0] != strings.Repeat("0", 32) || f[1] != "00" {
			return
		}
		b, err := hex.DecodeString(f[4])
		if err != nil || len(b) != 16 {
			return
		}
		gw := netip.AddrFrom16([16]byte(b))
		if !gw.IsUnspecified() {
			out = append(out, gw)
		}
	})
	return out
}

func readResolvers(path string) []netip.Addr {
	var out []netip.Addr
	eachLine(path, func(f []string) {
		if len(f) >= 2 && f[0] == "nameserver" {
			if a, err := netip.ParseAddr(f[1]); err == nil {
				out = append(out, a.WithZone("").Unmap())
			}
		}
	})
	return out
}

func eachLine(path string, fn func([]string)) {
	f, err := os.Open(path)
	if err != nil {
		return
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fn(strings.Fields(sc.Text()))
	}
}

// WatchNetwork calls changed after each change of this host's addresses or
// routes, as the kernel announces them over rtnetlink, until the socket
// fails. Bursts of messages are read before changed is called once.
func WatchNetwork(changed func()) error {
	fd, err := syscall.Socket(syscall.AF_NETLINK, syscall.SOCK_RAW|syscall.SOCK_CLOEXEC, syscall.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("netlink socket: %w", err)
	}
	defer syscall.Close(fd)
	sa := &syscall.SockaddrNetlink{Family: syscall.AF_NETLINK, Groups: unix.RTMGRP_IPV4_IFADDR |
		unix.RTMGRP_IPV6_IFADDR | unix.RTMGRP_IPV4_ROUTE | unix.RTMGRP_IPV6_ROUTE}
	if err := syscall.Bind(fd, sa); err != nil {
		return fmt.Errorf("netlink bind: %w", err)
	}
	buf := make([]byte, 64*1024)
	for {
		if _, _, err := syscall.Recvfrom(fd, buf, 0); err != nil {
			if err == syscall.EINTR {
				continue
			}
			return fmt.Errorf("netlink receive: %w", err)
		}
		// Drain what is already queued, then report once.
		for {
			n, _, err := syscall.Recvfrom(fd, buf, syscall.MSG_DONTWAIT)
			if n <= 0 || err != nil {
				break
			}
		}
		changed()
	}
}
