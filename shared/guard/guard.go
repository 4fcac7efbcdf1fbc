// Package guard decides which addresses may never be acted upon: the
// unspecified, loopback, multicast and broadcast addresses, this host's own
// addresses, its default gateways and name servers, the ignore file and the
// PROTECT_ADDRESSES key. ps-judge asks it before deciding and ps-block asks
// again before acting, so a forged probe cannot make either turn on the host
// itself or on what it depends on.
package guard

import (
	"net/netip"

	"github.com/portsentry/pipeline/shared/ignore"
)

// System is what the host itself is and depends on, looked up by Discover.
type System struct {
	Own       []netip.Addr
	Gateways  []netip.Addr
	Resolvers []netip.Addr
}

// Set answers Refuse. It is immutable once built: a change (a new ignore
// file, an address added to an interface) builds a new Set.
type Set struct {
	ignore  *ignore.List
	protect []netip.Prefix
	special map[netip.Addr]string
}

// New builds a Set. Any argument may be nil.
func New(ign *ignore.List, protect []netip.Prefix, sys *System) *Set {
	s := &Set{ignore: ign, protect: protect, special: map[netip.Addr]string{}}
	if sys != nil {
		add := func(list []netip.Addr, why string) {
			for _, a := range list {
				if _, dup := s.special[a.Unmap()]; !dup {
					s.special[a.Unmap()] = why
				}
			}
		}
		add(sys.Own, "one of this host's own addresses")
		add(sys.Gateways, "a default gateway of this host")
		add(sys.Resolvers, "a name server of this host")
	}
	return s
}

var broadcast4 = netip.AddrFrom4([4]byte{255, 255, 255, 255})

// Refuse returns why a must never be blocked, or "" when it may be.
func (s *Set) Refuse(a netip.Addr) string {
	a = a.Unmap()
	switch {
	case !a.IsValid():
		return "not a valid address"
	case a.IsUnspecified():
		return "the unspecified address"
	case a.IsLoopback():
		return "a loopback address"
	case a.IsMulticast():
		return "a multicast address"
	case a == broadcast4:
		return "the broadcast address"
	}
	if s == nil {
		return ""
	}
	if why, ok := s.special[a]; ok {
		return why
	}
	if s.ignore.Contains(a) {
		return "in the ignore file"
	}
	for _, p := range s.protect {
		if p.Contains(a) {
			return "protected by PROTECT_ADDRESSES"
		}
	}
	return ""
}
