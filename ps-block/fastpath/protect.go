package fastpath

import (
	"cmp"
	"net/netip"
	"slices"

	"github.com/google/nftables"
	"github.com/portsentry/pipeline/shared/guard"
)

// PrefixRange is an inclusive range of addresses of one family.
type PrefixRange struct{ Lo, Hi netip.Addr }

// Ranges turns networks (overlapping or not, IPv4 and IPv6 mixed) into
// sorted, disjoint, non-adjacent ranges, which is what the kernel's
// interval sets accept. IPv4-mapped networks count as IPv4.
func Ranges(prefixes []netip.Prefix) []PrefixRange {
	rs := make([]PrefixRange, 0, len(prefixes))
	for _, p := range prefixes {
		if !p.IsValid() {
			continue
		}
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		p = p.Masked()
		rs = append(rs, PrefixRange{p.Addr(), last(p)})
	}
	slices.SortFunc(rs, func(a, b PrefixRange) int { return cmp.Or(a.Lo.Compare(b.Lo), a.Hi.Compare(b.Hi)) })
	var out []PrefixRange
	for _, r := range rs {
		if n := len(out); n > 0 && out[n-1].Lo.Is4() == r.Lo.Is4() {
			prev := &out[n-1]
			// Overlapping or adjacent: one range.
			if next := prev.Hi.Next(); !next.IsValid() || r.Lo.Compare(next) <= 0 {
				if r.Hi.Compare(prev.Hi) > 0 {
					prev.Hi = r.Hi
				}
				continue
			}
		}
		out = append(out, r)
	}
	return out
}

func last(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// protectElements makes the interval set elements of the IPv4 and IPv6
// protected sets, as nft(8) makes them: an interval end at the zero
// address when the first range does not start there, then each range's
// start and the end just past it (none when it runs to the top).
func protectElements(rs []PrefixRange) (v4, v6 []nftables.SetElement) {
	for _, r := range rs {
		dst := &v6
		if r.Lo.Is4() {
			dst = &v4
		}
		if len(*dst) == 0 && !r.Lo.IsUnspecified() {
			*dst = append(*dst, nftables.SetElement{Key: make([]byte, r.Lo.BitLen()/8), IntervalEnd: true})
		}
		*dst = append(*dst, nftables.SetElement{Key: r.Lo.AsSlice()})
		if next := r.Hi.Next(); next.IsValid() {
			*dst = append(*dst, nftables.SetElement{Key: next.AsSlice(), IntervalEnd: true})
		}
	}
	return v4, v6
}

// portElements does the same for port ranges.
func portElements(ps []PortRange) []nftables.SetElement {
	var out []nftables.SetElement
	for i, p := range ps {
		if i == 0 && p.Lo != 0 {
			out = append(out, nftables.SetElement{Key: []byte{0, 0}, IntervalEnd: true})
		}
		out = append(out, nftables.SetElement{Key: []byte{byte(p.Lo >> 8), byte(p.Lo)}})
		if p.Hi != 65535 {
			end := p.Hi + 1
			out = append(out, nftables.SetElement{Key: []byte{byte(end >> 8), byte(end)}, IntervalEnd: true})
		}
	}
	return out
}

// Protected is the guard's one definition of "protected" as the kernel's
// interval sets take it.
func Protected(s *guard.Set) []PrefixRange {
	ps := s.Protections()
	prefixes := make([]netip.Prefix, len(ps))
	for i, p := range ps {
		prefixes[i] = p.Prefix
	}
	return Ranges(prefixes)
}
