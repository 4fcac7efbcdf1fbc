package guard

import (
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"

	"github.com/portsentry/pipeline/shared/ignore"
)

// lastAddr is the highest address of p.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// TestPrefixesAgreeWithRefuse: the kernel's copy of the guard and Refuse
// must turn down exactly the same addresses. Checked at every edge of every
// network (first, last, and the neighbours just outside) and at random.
func TestPrefixesAgreeWithRefuse(t *testing.T) {
	ign, _, err := ignore.Parse(strings.NewReader("198.18.9.0/24\n198.18.7.7\n2001:db8:77::/64\n"), "t")
	if err != nil {
		t.Fatal(err)
	}
	s := New(ign, []netip.Prefix{netip.MustParsePrefix("2001:db8:ff::/48"), netip.MustParsePrefix("198.19.0.0/16")},
		&System{Own: addrs("198.18.0.2", "2001:db8::2"), Gateways: addrs("198.18.0.254", "fe80::1"), Resolvers: addrs("198.18.0.53")})
	prefixes := s.Prefixes()
	contains := func(a netip.Addr) bool {
		for _, p := range prefixes {
			if p.Contains(a) {
				return true
			}
		}
		return false
	}
	var cands []netip.Addr
	for _, p := range prefixes {
		first, last := p.Masked().Addr(), lastAddr(p)
		cands = append(cands, first, last, first.Prev(), last.Next())
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		var b4 [4]byte
		var b16 [16]byte
		for i := range b4 {
			b4[i] = byte(rng.UintN(256))
		}
		for i := range b16 {
			b16[i] = byte(rng.UintN(256))
		}
		cands = append(cands, netip.AddrFrom4(b4), netip.AddrFrom16(b16))
	}
	checked := 0
	for _, a := range cands {
		if !a.IsValid() || a.Is4In6() {
			continue // Refuse unmaps; the kernel never sees a mapped source
		}
		checked++
		if refused := s.Refuse(a) != ""; refused != contains(a) {
			t.Errorf("%s: Refuse says %q, Prefixes contain it: %v", a, s.Refuse(a), contains(a))
		}
	}
	if checked < 40000 {
		t.Fatalf("only %d addresses checked", checked)
	}
	if got := len(New(nil, nil, nil).Prefixes()); got != len(always) {
		t.Errorf("an empty Set lists %d networks, want the %d fixed ones", got, len(always))
	}
}
