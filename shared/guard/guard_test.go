package guard

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/portsentry/pipeline/shared/ignore"
)

func addrs(s ...string) []netip.Addr {
	var out []netip.Addr
	for _, a := range s {
		out = append(out, netip.MustParseAddr(a))
	}
	return out
}

func TestRefuse(t *testing.T) {
	ign, _, err := ignore.Parse(strings.NewReader("198.18.9.0/24\n"), "t")
	if err != nil {
		t.Fatal(err)
	}
	s := New(ign, []netip.Prefix{netip.MustParsePrefix("2001:db8:ff::/48")},
		&System{Own: addrs("198.18.0.2", "2001:db8::2"), Gateways: addrs("198.18.0.254"), Resolvers: addrs("198.18.0.53")})
	tests := map[string]string{
		"198.18.0.1":        "",
		"2001:db8::1":       "",
		"0.0.0.0":           "the unspecified address",
		"::":                "the unspecified address",
		"127.0.0.5":         "a loopback address",
		"::1":               "a loopback address",
		"224.0.0.1":         "a multicast address",
		"ff02::1":           "a multicast address",
		"255.255.255.255":   "the broadcast address",
		"198.18.0.2":        "one of this host's own addresses",
		"::ffff:198.18.0.2": "one of this host's own addresses",
		"2001:db8::2":       "one of this host's own addresses",
		"198.18.0.254":      "a default gateway of this host",
		"198.18.0.53":       "a name server of this host",
		"198.18.9.77":       "in the ignore file",
		"2001:db8:ff::1":    "protected by PROTECT_ADDRESSES",
	}
	for a, want := range tests {
		if got := s.Refuse(netip.MustParseAddr(a)); got != want {
			t.Errorf("Refuse(%s) = %q, want %q", a, got, want)
		}
	}
	var nilSet *Set
	if nilSet.Refuse(netip.MustParseAddr("127.0.0.1")) == "" {
		t.Error("a nil Set must still refuse loopback")
	}
}

func TestSystemFiles(t *testing.T) {
	if got, want := readRoutes4("testdata/route"), addrs("192.168.0.1"); !slices.Equal(got, want) {
		t.Errorf("routes4 = %v, want %v", got, want)
	}
	if got, want := readRoutes6("testdata/ipv6_route"), addrs("2001:db8::1"); !slices.Equal(got, want) {
		t.Errorf("routes6 = %v, want %v", got, want)
	}
	if got, want := readResolvers("testdata/resolv.conf"), addrs("198.18.0.53", "fe80::53"); !slices.Equal(got, want) {
		t.Errorf("resolvers = %v, want %v", got, want)
	}
}

func TestDiscoverFindsLoopback(t *testing.T) {
	sys, err := Discover("testdata/resolv.conf")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(sys.Own, netip.MustParseAddr("127.0.0.1")) {
		t.Errorf("own addresses %v lack 127.0.0.1", sys.Own)
	}
}
