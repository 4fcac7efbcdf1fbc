package guard

import (
	"net/netip"
	"slices"
)

// always are the networks Refuse turns down whatever the host: the
// unspecified, loopback, multicast and broadcast addresses.
var always = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/32"),
	netip.MustParsePrefix("::/128"),
	netip.MustParsePrefix("127.0.0.0/8"),
	netip.MustParsePrefix("::1/128"),
	netip.MustParsePrefix("224.0.0.0/4"),
	netip.MustParsePrefix("ff00::/8"),
	netip.PrefixFrom(broadcast4, 32),
}

// Prefixes lists every network Refuse turns down, so that the kernel's
// copy of "protected" (ps-block's fast path) is made from this Set and
// nothing else. The list is sorted and may hold overlapping networks.
func (s *Set) Prefixes() []netip.Prefix {
	out := slices.Clone(always)
	if s != nil {
		for a := range s.special {
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
		}
		out = append(out, s.ignore.Prefixes()...)
		out = append(out, s.protect...)
	}
	slices.SortFunc(out, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
	return slices.Compact(out)
}
