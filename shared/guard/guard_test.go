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
		&System{Own: addrs("198.18.0.2", "2001:db8::2", "192.0.2.10", "198.18.3.0", "198.18.4.9", "10.9.0.1"),
			Subnets: []netip.Prefix{netip.MustParsePrefix("198.18.0.2/24"), netip.MustParsePrefix("2001:db8::2/64"),
				netip.MustParsePrefix("192.0.2.10/24"), netip.MustParsePrefix("198.18.3.0/31"), netip.MustParsePrefix("198.18.4.9/32"),
				netip.MustParsePrefix("10.9.0.1/30"), netip.MustParsePrefix("::ffff:172.16.0.1/112")},
			Gateways: addrs("198.18.0.254"), Resolvers: addrs("198.18.0.53")})
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
		// The network and broadcast addresses of the host's IPv4 subnets; a
		// /31 and a /32 have none, IPv6 no broadcast.
		"192.0.2.0":                     "the network address of this host's subnet 192.0.2.0/24",
		"192.0.2.255":                   "the broadcast address of this host's subnet 192.0.2.0/24",
		"::ffff:192.0.2.255":            "the broadcast address of this host's subnet 192.0.2.0/24",
		"192.0.2.11":                    "",
		"198.18.0.0":                    "the network address of this host's subnet 198.18.0.0/24",
		"198.18.0.255":                  "the broadcast address of this host's subnet 198.18.0.0/24",
		"10.9.0.0":                      "the network address of this host's subnet 10.9.0.0/30",
		"10.9.0.3":                      "the broadcast address of this host's subnet 10.9.0.0/30",
		"10.9.0.2":                      "",
		"198.18.3.0":                    "one of this host's own addresses",
		"198.18.3.1":                    "",
		"198.18.4.8":                    "",
		"198.18.4.10":                   "",
		"172.16.0.0":                    "the network address of this host's subnet 172.16.0.0/16",
		"172.16.255.255":                "the broadcast address of this host's subnet 172.16.0.0/16",
		"2001:db8::":                    "",
		"2001:db8::ffff:ffff:ffff:ffff": "",
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

// TestProtectionsAreRefuse: the prefixes Protections lists are exactly what
// Refuse refuses, with the same reason, so that what enforces them
// elsewhere (the kernel's fast path) cannot disagree with the guard.
func TestProtectionsAreRefuse(t *testing.T) {
	ign, _, err := ignore.Parse(strings.NewReader("198.18.9.0/24\n198.18.10.1\n2001:db8:9::/48\n"), "t")
	if err != nil {
		t.Fatal(err)
	}
	s := New(ign, []netip.Prefix{netip.MustParsePrefix("2001:db8:ff::/48"), netip.MustParsePrefix("198.19.0.0/16")},
		&System{Own: addrs("198.18.0.2", "2001:db8::2"), Subnets: []netip.Prefix{netip.MustParsePrefix("198.18.0.2/24")},
			Gateways: addrs("198.18.0.254", "198.18.0.2"), Resolvers: addrs("198.18.0.53", "2001:db8::53")})
	ps := s.Protections()
	probe := addrs("0.0.0.0", "::", "127.1.2.3", "::1", "239.1.1.1", "ff05::2", "255.255.255.255", "198.18.0.0",
		"198.18.0.255", "198.18.0.2", "198.18.0.254", "198.18.0.53", "2001:db8::53", "198.18.9.9", "198.18.10.1",
		"198.18.10.2", "2001:db8:9:1::1", "2001:db8:ff::9", "198.19.200.1", "198.18.1.1", "2001:db8::1", "8.8.8.8")
	for i := range 2000 { // and a spread of others
		probe = append(probe, netip.AddrFrom4([4]byte{198, 18, byte(i >> 3), byte(i * 37)}))
	}
	// Every first and last byte, at the ends of their ranges: Refuse
	// filters on both.
	for b := range 256 {
		v := byte(b)
		probe = append(probe, netip.AddrFrom4([4]byte{v, 0, 0, 0}), netip.AddrFrom4([4]byte{v, 255, 255, 255}),
			netip.AddrFrom4([4]byte{198, 18, 0, v}), netip.AddrFrom16([16]byte{v}),
			netip.AddrFrom16([16]byte{v, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255}),
			netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: v}))
	}
	for _, a := range probe {
		want := ""
		for _, p := range ps {
			if p.Prefix.Contains(a) {
				want = p.Why
				break
			}
		}
		if got := s.Refuse(a); got != want {
			t.Errorf("Refuse(%s) = %q, Protections say %q", a, got, want)
		}
	}
	for _, p := range ps {
		if p.Prefix != p.Prefix.Masked() || p.Prefix.Addr().Is4In6() {
			t.Errorf("protection %v is not a masked, unmapped prefix", p.Prefix)
		}
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
	if !slices.Contains(sys.Subnets, netip.MustParsePrefix("127.0.0.1/8")) {
		t.Errorf("subnets %v lack 127.0.0.1/8", sys.Subnets)
	}
}

// TestDiscoverSystemdResolved: with /etc/resolv.conf naming only
// systemd-resolved's stub, the upstream servers come from resolved's file.
func TestDiscoverSystemdResolved(t *testing.T) {
	sys, err := Discover("testdata/resolv-stub.conf", "testdata/resolved-resolv.conf", "testdata/no-such-file")
	if err != nil {
		t.Fatal(err)
	}
	if want := addrs("127.0.0.53", "198.18.0.153", "2001:db8:53::1"); !slices.Equal(sys.Resolvers, want) {
		t.Errorf("resolvers = %v, want %v", sys.Resolvers, want)
	}
	k := NewKeeper("testdata/no-such-ignore", nil, func(string, ...any) {})
	if !slices.Equal(k.resolvConfs, []string{ResolvConf, ResolvedConf}) {
		t.Errorf("a Keeper reads %v", k.resolvConfs)
	}
}
