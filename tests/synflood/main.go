// Command synflood is the adversarial suite's SYN flood: it writes N raw TCP
// SYN packets with random spoofed sources to a sensor's tripwire ports,
// through an AF_PACKET socket on one interface. It is meant to run inside
// the lab's scanner namespace (ip netns exec), whose only link is the veth
// to the sensor; it refuses any address outside 198.18.0.0/15 and
// 2001:db8::/32, so that even a mistaken run cannot put a forged packet on
// a real network.
//
// The sources come from a seeded generator: the same -seed, -n and flags
// give the same packets in the same order, so a failure can be replayed.
//
//	ip netns exec SCAN synflood -i veth0 -dstmac 02:.. -dst4 198.18.7.2 \
//	    -dst6 2001:db8:7::2 -ports 1-1023 -n 1000000 -seed 1
package main

import (
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The only networks this program will write as source or destination:
// RFC 2544's benchmarking block and the IPv6 documentation prefix.
var (
	allowed4 = netip.MustParsePrefix("198.18.0.0/15")
	allowed6 = netip.MustParsePrefix("2001:db8::/32")
)

// Hard bounds, whatever the flags say: a runaway loop stays finite.
const (
	maxCount    = 10_000_000
	maxDuration = 10 * time.Minute
	batch       = 64 // packets per sendmmsg
)

type config struct {
	iface      string
	dstMAC     net.HardwareAddr
	dst4, dst6 netip.Addr
	src4, src6 netip.Prefix
	exclude    []netip.Prefix
	ports      []uint16
	n          int
	v6Share    float64
	seed       uint64
	limit      time.Duration
	pps        int
}

func main() {
	cfg, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "synflood:", err)
		os.Exit(2)
	}
	start := time.Now()
	sent, err := flood(cfg)
	el := time.Since(start)
	// One summary line on stdout, for the test to read.
	fmt.Printf("sent %d packets in %.3fs (%.0f pps)\n", sent, el.Seconds(), float64(sent)/el.Seconds())
	if err != nil {
		fmt.Fprintln(os.Stderr, "synflood:", err)
		os.Exit(1)
	}
}

func parseFlags(args []string) (*config, error) {
	fs := flag.NewFlagSet("synflood", flag.ContinueOnError)
	iface := fs.String("i", "", "interface to write on (required)")
	mac := fs.String("dstmac", "", "the sensor's MAC address (required)")
	dst4 := fs.String("dst4", "", "the sensor's IPv4 address")
	dst6 := fs.String("dst6", "", "the sensor's IPv6 address")
	src4 := fs.String("src4", allowed4.String(), "IPv4 prefix the spoofed sources are drawn from")
	src6 := fs.String("src6", allowed6.String(), "IPv6 prefix the spoofed sources are drawn from")
	excl := fs.String("exclude", "", "comma list of prefixes never used as a source (the lab's real addresses)")
	ports := fs.String("ports", "1-1023", "destination ports: comma list of ports and ranges")
	n := fs.Int("n", 1000, "number of packets")
	share := fs.Float64("v6", 0.5, "share of IPv6 packets (0 to 1)")
	seed := fs.Uint64("seed", 1, "seed of the source and port generator")
	limit := fs.Duration("t", time.Minute, "stop after this long whatever the count")
	pps := fs.Int("pps", 0, "packets per second at most (0: as fast as possible)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	c := &config{iface: *iface, n: *n, v6Share: *share, seed: *seed, limit: *limit, pps: *pps}
	var err error
	if c.iface == "" {
		return nil, errors.New("-i is required")
	}
	if c.dstMAC, err = net.ParseMAC(*mac); err != nil {
		return nil, fmt.Errorf("-dstmac: %w", err)
	}
	if c.n < 0 || c.n > maxCount {
		return nil, fmt.Errorf("-n must be between 0 and %d", maxCount)
	}
	if c.limit <= 0 || c.limit > maxDuration {
		return nil, fmt.Errorf("-t must be positive and at most %v", maxDuration)
	}
	if c.v6Share < 0 || c.v6Share > 1 {
		return nil, errors.New("-v6 must be between 0 and 1")
	}
	if *dst4 != "" {
		if c.dst4, err = inside(*dst4, allowed4); err != nil {
			return nil, err
		}
	}
	if *dst6 != "" {
		if c.dst6, err = inside(*dst6, allowed6); err != nil {
			return nil, err
		}
	}
	if !c.dst4.IsValid() && c.v6Share < 1 || !c.dst6.IsValid() && c.v6Share > 0 {
		return nil, errors.New("-v6 asks for a family whose destination (-dst4/-dst6) is not given")
	}
	if c.src4, err = prefixInside(*src4, allowed4); err != nil {
		return nil, err
	}
	if c.src6, err = prefixInside(*src6, allowed6); err != nil {
		return nil, err
	}
	for _, s := range strings.FieldsFunc(*excl, func(r rune) bool { return r == ',' }) {
		p, err := netip.ParsePrefix(strings.TrimSpace(s))
		if err != nil {
			return nil, fmt.Errorf("-exclude: %w", err)
		}
		c.exclude = append(c.exclude, p.Masked())
	}
	if c.ports, err = parsePorts(*ports); err != nil {
		return nil, err
	}
	return c, nil
}

// inside parses an address and refuses it outside the lab's networks.
func inside(s string, p netip.Prefix) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return a, err
	}
	if !p.Contains(a) {
		return a, fmt.Errorf("%s is outside %s: refused", a, p)
	}
	return a, nil
}

func prefixInside(s string, outer netip.Prefix) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return p, err
	}
	p = p.Masked()
	if p.Addr().Is4() != outer.Addr().Is4() || p.Bits() < outer.Bits() || !outer.Contains(p.Addr()) {
		return p, fmt.Errorf("source prefix %s is not inside %s: refused", p, outer)
	}
	return p, nil
}

func parsePorts(s string) ([]uint16, error) {
	var out []uint16
	for _, f := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(strings.TrimSpace(f), "-")
		a, err := strconv.ParseUint(lo, 10, 16)
		if err != nil {
			return nil, fmt.Errorf("-ports %q: %w", f, err)
		}
		b := a
		if isRange {
			if b, err = strconv.ParseUint(hi, 10, 16); err != nil || b < a {
				return nil, fmt.Errorf("-ports: bad range %q", f)
			}
		}
		for p := a; p <= b; p++ {
			out = append(out, uint16(p))
		}
	}
	if len(out) == 0 {
		return nil, errors.New("-ports is empty")
	}
	return out, nil
}

// gen draws packets; it holds the only randomness, so runs repeat.
type gen struct {
	c *config
	r *rand.Rand
}

// randomIn is a random address of p, never one of the excluded prefixes.
func (g *gen) randomIn(p netip.Prefix) netip.Addr {
	for {
		b := p.Addr().AsSlice()
		var rnd [16]byte
		binary.BigEndian.PutUint64(rnd[:8], g.r.Uint64())
		binary.BigEndian.PutUint64(rnd[8:], g.r.Uint64())
		for i := range b {
			// Keep the prefix's bits, take the rest at random.
			keep := min(8, max(0, p.Bits()-8*i))
			mask := byte(0xff << (8 - keep))
			b[i] = b[i]&mask | rnd[i]&^mask
		}
		a, _ := netip.AddrFromSlice(b)
		ok := true
		for _, x := range g.c.exclude {
			ok = ok && !x.Contains(a)
		}
		if ok {
			return a
		}
	}
}

// next writes the next packet (Ethernet frame) into buf and returns it.
func (g *gen) next(buf []byte, srcMAC net.HardwareAddr) []byte {
	v6 := g.r.Float64() < g.c.v6Share
	port := g.c.ports[g.r.IntN(len(g.c.ports))]
	sport := uint16(1024 + g.r.IntN(64511))
	seq := g.r.Uint32()
	copy(buf[0:6], g.c.dstMAC)
	copy(buf[6:12], srcMAC)
	var ip, tcp []byte
	var pseudo uint32
	if v6 {
		src := g.randomIn(g.c.src6)
		binary.BigEndian.PutUint16(buf[12:], unix.ETH_P_IPV6)
		ip = buf[14 : 14+40]
		ip[0], ip[1], ip[2], ip[3] = 0x60, 0, 0, 0
		binary.BigEndian.PutUint16(ip[4:], 20) // payload: the TCP header
		ip[6], ip[7] = unix.IPPROTO_TCP, 64
		s, d := src.As16(), g.c.dst6.As16()
		copy(ip[8:24], s[:])
		copy(ip[24:40], d[:])
		pseudo = sum(ip[8:40]) + unix.IPPROTO_TCP + 20
		tcp = buf[54 : 54+20]
	} else {
		src := g.randomIn(g.c.src4)
		binary.BigEndian.PutUint16(buf[12:], unix.ETH_P_IP)
		ip = buf[14 : 14+20]
		ip[0], ip[1] = 0x45, 0
		binary.BigEndian.PutUint16(ip[2:], 40)
		binary.BigEndian.PutUint16(ip[4:], uint16(g.r.Uint32()))
		ip[6], ip[7], ip[8], ip[9] = 0x40, 0, 64, unix.IPPROTO_TCP // DF, TTL 64
		ip[10], ip[11] = 0, 0
		s, d := src.As4(), g.c.dst4.As4()
		copy(ip[12:16], s[:])
		copy(ip[16:20], d[:])
		binary.BigEndian.PutUint16(ip[10:], fold(sum(ip)))
		pseudo = sum(ip[12:20]) + unix.IPPROTO_TCP + 20
		tcp = buf[34 : 34+20]
	}
	binary.BigEndian.PutUint16(tcp[0:], sport)
	binary.BigEndian.PutUint16(tcp[2:], port)
	binary.BigEndian.PutUint32(tcp[4:], seq)
	binary.BigEndian.PutUint32(tcp[8:], 0)
	tcp[12], tcp[13] = 5<<4, 0x02 // data offset 5 words, SYN
	binary.BigEndian.PutUint16(tcp[14:], 64240)
	tcp[16], tcp[17], tcp[18], tcp[19] = 0, 0, 0, 0
	binary.BigEndian.PutUint16(tcp[16:], fold(pseudo+sum(tcp)))
	end := len(buf[:14]) + len(ip) + len(tcp)
	return buf[:end]
}

// sum is the one's complement sum of b, not yet folded.
func sum(b []byte) uint32 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	return s
}

func fold(s uint32) uint16 {
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return ^uint16(s)
}

// mmsghdr is struct mmsghdr of <sys/socket.h> on 64-bit Linux.
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
	_   [4]byte
}

func flood(c *config) (int, error) {
	ifi, err := net.InterfaceByName(c.iface)
	if err != nil {
		return 0, err
	}
	// Protocol 0: the socket only sends and never queues received frames.
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("packet socket: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Ifindex: ifi.Index}); err != nil {
		return 0, fmt.Errorf("bind %s: %w", c.iface, err)
	}
	// Straight to the driver: a veth has no queue worth going through.
	_ = unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_QDISC_BYPASS, 1)

	g := &gen{c: c, r: rand.New(rand.NewPCG(c.seed, c.seed^0x9e3779b97f4a7c15))}
	frames := make([][]byte, batch)
	iovs := make([]unix.Iovec, batch)
	msgs := make([]mmsghdr, batch)
	for i := range frames {
		frames[i] = make([]byte, 14+40+20)
		msgs[i].hdr.Iov = &iovs[i]
		msgs[i].hdr.Iovlen = 1
	}
	deadline := time.Now().Add(c.limit)
	start := time.Now()
	sent := 0
	for sent < c.n {
		if time.Now().After(deadline) {
			return sent, fmt.Errorf("time limit %v reached after %d of %d packets", c.limit, sent, c.n)
		}
		if c.pps > 0 {
			// Pace: never ahead of pps since the start.
			if ahead := time.Duration(float64(sent)/float64(c.pps)*float64(time.Second)) - time.Since(start); ahead > 0 {
				time.Sleep(ahead)
			}
		}
		k := min(batch, c.n-sent)
		if c.pps > 0 {
			k = min(k, max(1, c.pps/100))
		}
		for i := 0; i < k; i++ {
			f := g.next(frames[i], ifi.HardwareAddr)
			iovs[i].Base = &f[0]
			iovs[i].SetLen(len(f))
		}
		done := 0
		for done < k {
			r, _, e := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(fd), uintptr(unsafe.Pointer(&msgs[done])), uintptr(k-done), 0, 0, 0)
			switch {
			case e == unix.ENOBUFS || e == unix.EAGAIN || e == unix.EINTR:
				time.Sleep(50 * time.Microsecond) // the link is full: wait, do not spin
				continue
			case e != 0:
				return sent + done, fmt.Errorf("sendmmsg: %w", e)
			}
			done += int(r)
		}
		sent += k
	}
	return sent, nil
}
