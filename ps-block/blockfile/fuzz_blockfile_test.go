package blockfile

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

// FuzzParse: reading any line back (the blocked file is ps-block's memory
// across restarts, and an administrator or another tool may have edited
// it) never panics, and a line it accepts names a valid address and
// writes back to a line that parses to the same host, port and protocol.
func FuzzParse(f *testing.F) {
	f.Add("1763994585 - 11/24/2025 14:29:45 Host: 198.18.0.1/198.18.0.1 Port: 21 TCP Blocked")
	f.Add("1763994585 - 11/24/2025 14:29:45 Host: scanner.example/2001:db8::1 Port: 65535 UDP Blocked")
	f.Add("99999999999999999999 - 00/00/0000 00:00:00 Host: /x Port: 99999 TCP Blocked")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		l, err := Parse(s)
		if err != nil {
			return
		}
		if !l.Addr.IsValid() || (l.Proto != "TCP" && l.Proto != "UDP") {
			t.Fatalf("Parse(%q) accepted %+v", s, l)
		}
		out := l.String()
		if strings.ContainsAny(out, "\r\n") {
			t.Fatalf("line %q written back with a line break: %q", s, out)
		}
		back, err := Parse(out)
		if err != nil || back.Addr != l.Addr || back.Port != l.Port || back.Proto != l.Proto {
			t.Fatalf("round trip of %q: %q -> %+v, %v", s, out, back, err)
		}
	})
}

// FuzzLineString: a host name chosen by the attacker (a PTR answer) can
// never forge a second line or a different address.
func FuzzLineString(f *testing.F) {
	f.Add("scanner.example", "198.18.0.1")
	f.Add("evil\n1 - 01/01/2026 00:00:00 Host: x/198.18.0.9 Port: 1 TCP Blocked", "198.18.0.1")
	f.Add("a/b", "2001:db8::1")
	f.Fuzz(func(t *testing.T, name, addr string) {
		a, err := netip.ParseAddr(addr)
		if err != nil || a.Zone() != "" {
			return
		}
		out := Line{Time: time.Unix(1763994585, 0), Name: name, Addr: a, Port: 21, Proto: "TCP"}.String()
		back, err := Parse(out)
		if err != nil || back.Addr != a || strings.ContainsAny(out, "\r\n") {
			t.Fatalf("name %q address %s wrote %q: %+v, %v", name, a, out, back, err)
		}
	})
}
