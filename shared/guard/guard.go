// Package guard decides which addresses may never be acted upon: the
// unspecified, loopback, multicast and broadcast addresses, this host's own
// addresses and the network and broadcast addresses of its IPv4 subnets,
// its default gateways and name servers, the fleet's members, the ignore
// file and the PROTECT_ADDRESSES key. ps-judge asks it before deciding and ps-block asks
// again before acting, so a forged probe cannot make either turn on the host
// itself or on what it depends on.
//
// A Set is the one definition of "protected": Refuse answers for one
// address and Protections lists the same thing as prefixes, for whatever
// must enforce it elsewhere (the kernel's fast path).
package guard

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"

	"github.com/portsentry/pipeline/shared/ignore"
)

// System is what the host itself is and depends on, looked up by Discover.
type System struct {
	Own       []netip.Addr
	Subnets   []netip.Prefix // the on-link prefix of each own address
	Gateways  []netip.Addr
	Resolvers []netip.Addr
	// Members are the other hosts of the fleet (address -> host name), as
	// they registered in the fleet's member bucket (package fleet).
	Members map[netip.Addr]string
}

// Protection is one protected prefix and why it is protected.
type Protection struct {
	Prefix netip.Prefix
	Why    string
}

// builtin is what is protected on every host.
var builtin = []Protection{
	{netip.MustParsePrefix("0.0.0.0/32"), "the unspecified address"},
	{netip.MustParsePrefix("::/128"), "the unspecified address"},
	{netip.MustParsePrefix("127.0.0.0/8"), "a loopback address"},
	{netip.MustParsePrefix("::1/128"), "a loopback address"},
	{netip.MustParsePrefix("224.0.0.0/4"), "a multicast address"},
	{netip.MustParsePrefix("ff00::/8"), "a multicast address"},
	{netip.MustParsePrefix("255.255.255.255/32"), "the broadcast address"},
}

// byteSet holds values of one byte of addresses, IPv4 and IPv6 apart. It
// filters lookups: an address whose byte is not in the set cannot be in
// the list the set was made from, so a flood of such addresses costs one
// load each, and the others are looked up as before. A filter changes the
// cost of Refuse, never its answer.
type byteSet [2][4]uint64

func (s *byteSet) add(fam int, v byte) { s[fam][v/64] |= 1 << (v % 64) }

func (s *byteSet) has(fam int, v byte) bool { return s[fam][v/64]&(1<<(v%64)) != 0 }

func family(a netip.Addr) int {
	if a.Is4() {
		return 0
	}
	return 1
}

func firstByte(a netip.Addr) byte {
	if a.Is4() {
		return a.As4()[0]
	}
	return a.As16()[0]
}

func lastByte(a netip.Addr) byte { return a.As16()[15] }

// builtinFirst holds the first bytes of the addresses builtin holds.
var builtinFirst = func() (s byteSet) {
	for _, p := range builtin {
		a := p.Prefix.Masked().Addr()
		free := 0
		if p.Prefix.Bits() < 8 {
			free = 1<<(8-p.Prefix.Bits()) - 1
		}
		for v := int(firstByte(a)); v <= int(firstByte(a))|free; v++ {
			s.add(family(a), byte(v))
		}
	}
	return s
}()

// Set answers Refuse. It is immutable once built: a change (a new ignore
// file, an address added to an interface) builds a new Set.
type Set struct {
	ignore      *ignore.List
	protect     []netip.Prefix
	special     map[netip.Addr]string // single addresses of the host and its subnets
	specialLast byteSet               // the last bytes of special's addresses
	order       []netip.Addr          // special's keys in the order added, for Protections
}

// New builds a Set. Any argument may be nil.
func New(ign *ignore.List, protect []netip.Prefix, sys *System) *Set {
	s := &Set{ignore: ign, protect: protect, special: map[netip.Addr]string{}}
	if sys == nil {
		return s
	}
	add := func(a netip.Addr, why string) {
		a = a.Unmap()
		if _, dup := s.special[a]; !dup {
			s.special[a] = why
			s.order = append(s.order, a)
			s.specialLast.add(family(a), lastByte(a))
		}
	}
	for _, a := range sys.Own {
		add(a, "one of this host's own addresses")
	}
	for _, a := range sys.Gateways {
		add(a, "a default gateway of this host")
	}
	for _, a := range sys.Resolvers {
		add(a, "a name server of this host")
	}
	for _, p := range sys.Subnets {
		if network, broadcast, ok := edges(p); ok {
			p = netip.PrefixFrom(network, p.Bits()-(p.Addr().BitLen()-network.BitLen()))
			add(network, fmt.Sprintf("the network address of this host's subnet %s", p))
			add(broadcast, fmt.Sprintf("the broadcast address of this host's subnet %s", p))
		}
	}
	// In address order: Protections lists them in the order added.
	for _, a := range slices.SortedFunc(maps.Keys(sys.Members), netip.Addr.Compare) {
		add(a, "a member of the fleet ("+sys.Members[a]+")")
	}
	return s
}

// edges returns the network and broadcast addresses of an IPv4 subnet. A
// /31 (RFC 3021, point-to-point) and a /32 have neither: every address is a
// host. IPv6 has no broadcast address.
func edges(p netip.Prefix) (network, broadcast netip.Addr, ok bool) {
	if !p.IsValid() || !p.Addr().Unmap().Is4() {
		return netip.Addr{}, netip.Addr{}, false
	}
	bits := p.Bits()
	if p.Addr().Is4In6() {
		bits -= 96
	}
	if bits < 0 || bits > 30 {
		return netip.Addr{}, netip.Addr{}, false
	}
	b := p.Addr().Unmap().As4()
	n := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	host := uint32(1)<<(32-bits) - 1
	lo, hi := n&^host, n|host
	return netip.AddrFrom4([4]byte{byte(lo >> 24), byte(lo >> 16), byte(lo >> 8), byte(lo)}),
		netip.AddrFrom4([4]byte{byte(hi >> 24), byte(hi >> 16), byte(hi >> 8), byte(hi)}), true
}

// Refuse returns why a must never be blocked, or "" when it may be.
func (s *Set) Refuse(a netip.Addr) string {
	a = a.Unmap()
	if !a.IsValid() {
		return "not a valid address"
	}
	if builtinFirst.has(family(a), firstByte(a)) {
		for _, p := range builtin {
			if p.Prefix.Contains(a) {
				return p.Why
			}
		}
	}
	if s == nil {
		return ""
	}
	if s.specialLast.has(family(a), lastByte(a)) {
		if why, ok := s.special[a]; ok {
			return why
		}
	}
	if s.ignore.Contains(a) {
		return whyIgnored
	}
	for _, p := range s.protect {
		if p.Contains(a) {
			return whyProtected
		}
	}
	return ""
}

const (
	whyIgnored   = "in the ignore file"
	whyProtected = "protected by PROTECT_ADDRESSES"
)

// Protections lists everything Refuse refuses, as prefixes (IPv4 ones
// unmapped): an address is refused exactly when one of them contains it.
func (s *Set) Protections() []Protection {
	out := append([]Protection(nil), builtin...)
	if s == nil {
		return out
	}
	for _, a := range s.order {
		out = append(out, Protection{netip.PrefixFrom(a, a.BitLen()), s.special[a]})
	}
	for _, p := range s.ignore.Prefixes() {
		out = append(out, Protection{p, whyIgnored})
	}
	for _, p := range s.protect {
		out = append(out, Protection{p, whyProtected})
	}
	return out
}
