package guard

import (
	"net/netip"
	"testing"
)

// The fleet's members are protected like the host's own addresses, and a
// new member list takes effect at once.
func TestKeeperMembers(t *testing.T) {
	k := NewKeeper("/nonexistent/ignore", nil, func(string, ...any) {})
	b := netip.MustParseAddr("198.18.0.3")
	if why := k.Current().Refuse(b); why != "" {
		t.Fatalf("before the member list: %q", why)
	}
	k.SetMembers(map[netip.Addr]string{b: "host-b", netip.MustParseAddr("2001:db8::3"): "host-b"})
	for _, a := range []string{"198.18.0.3", "::ffff:198.18.0.3", "2001:db8::3"} {
		if why := k.Current().Refuse(netip.MustParseAddr(a)); why != "a member of the fleet (host-b)" {
			t.Errorf("Refuse(%s) = %q", a, why)
		}
	}
	k.SetMembers(nil)
	if why := k.Current().Refuse(b); why != "" {
		t.Errorf("after host-b left: %q", why)
	}
}
