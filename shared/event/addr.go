package event

import "net/netip"

// scanAddr reads an IPv4 or IPv6 address without a zone, as
// netip.ParseAddr does (the same texts, the same address), IPv4-mapped
// ones unmapped. It also says whether s is the address's own form, the
// text netip.Addr.AppendTo writes (RFC 5952 for IPv6), which a writer may
// then copy. It is the hit template's parser: a flood of spoofed sources
// is one address to parse per line, and a table of hex digits with no
// error to build costs half of netip's. FuzzScanAddr holds it to netip.
func scanAddr(s []byte) (a netip.Addr, canonical, ok bool) {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '.':
			var ip [4]byte
			if !scanIPv4(s, ip[:]) {
				return netip.Addr{}, false, false
			}
			// netip takes no other form of an IPv4 address.
			return netip.AddrFrom4(ip), true, true
		case ':':
			return scanIPv6(s)
		case '%':
			return netip.Addr{}, false, false
		}
	}
	return netip.Addr{}, false, false
}

// scanIPv4 reads dotted decimal into ip: four fields of 0 to 255, no
// leading zero.
func scanIPv4(s []byte, ip []byte) bool {
	val, pos, digits := 0, 0, 0
	for i, c := range s {
		switch {
		case c >= '0' && c <= '9':
			if digits == 1 && val == 0 {
				return false
			}
			val = val*10 + int(c-'0')
			digits++
			if val > 255 {
				return false
			}
		case c == '.':
			if i == 0 || i == len(s)-1 || s[i-1] == '.' || pos == 3 {
				return false
			}
			ip[pos] = byte(val)
			pos++
			val, digits = 0, 0
		default:
			return false
		}
	}
	if pos < 3 {
		return false
	}
	ip[3] = byte(val)
	return true
}

// hexDigit is each byte's value as a hex digit, or 0xff; upperHex is set
// in those of the capital letters.
var hexDigit = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xff
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = byte(c - '0')
	}
	for c := 'a'; c <= 'f'; c++ {
		t[c], t[c-'a'+'A'] = byte(c-'a'+10), byte(c-'a'+10)|upperHex
	}
	return t
}()

const upperHex = 0x10

// scanIPv6 reads groups of one to four hex digits separated by colons, one
// "::" standing for at least one group of zeros, and maybe an IPv4 address
// in place of the last two groups.
func scanIPv6(s []byte) (a netip.Addr, canonical, ok bool) {
	var ip [16]byte
	ellipsis := -1 // where "::" is in ip
	if len(s) >= 2 && s[0] == ':' && s[1] == ':' {
		ellipsis, s = 0, s[2:]
		if len(s) == 0 {
			return netip.IPv6Unspecified(), true, true
		}
	}
	// Off its own form: a capital, a leading zero, an embedded IPv4
	// address (netip writes none but in ::ffff:, which is unmapped here).
	odd := false
	i := 0
	for i < 16 {
		off, acc, seen := 0, 0, byte(0)
		for ; off < len(s); off++ {
			d := hexDigit[s[off]]
			if d == 0xff {
				break
			}
			// No branch on the kind of digit: a random address's
			// digits would mispredict it.
			seen |= d
			acc = acc<<4 | int(d&0xf)
		}
		if off == 0 || off > 4 {
			return netip.Addr{}, false, false
		}
		if seen&upperHex != 0 || s[0] == '0' && off > 1 {
			odd = true
		}
		if off < len(s) && s[off] == '.' {
			if ellipsis < 0 && i != 12 || i+4 > 16 || !scanIPv4(s, ip[i:i+4]) {
				return netip.Addr{}, false, false
			}
			s, i, odd = nil, i+4, true
			break
		}
		ip[i], ip[i+1] = byte(acc>>8), byte(acc)
		i += 2
		if s = s[off:]; len(s) == 0 {
			break
		}
		if s[0] != ':' || len(s) == 1 {
			return netip.Addr{}, false, false
		}
		if s = s[1:]; s[0] == ':' {
			if ellipsis >= 0 {
				return netip.Addr{}, false, false
			}
			ellipsis, s = i, s[1:]
			if len(s) == 0 {
				break
			}
		}
	}
	if len(s) != 0 {
		return netip.Addr{}, false, false
	}
	n := 16 - i // bytes of zeros "::" stands for
	if i < 16 {
		if ellipsis < 0 {
			return netip.Addr{}, false, false
		}
		copy(ip[ellipsis+n:], ip[ellipsis:i])
		clear(ip[ellipsis : ellipsis+n])
	} else if ellipsis >= 0 {
		return netip.Addr{}, false, false
	}
	a = netip.AddrFrom16(ip)
	if a.Is4In6() {
		return a.Unmap(), false, true
	}
	// Its own form shortens the first longest run of two or more zero
	// groups, and only that.
	start, end := zeroRun(&ip)
	if ellipsis < 0 {
		canonical = !odd && start == end
	} else {
		canonical = !odd && ellipsis == 2*start && n == 2*(end-start)
	}
	return a, canonical, true
}

// zeroRun returns the groups [start, end) of the first longest run of two
// or more zero groups of ip, or start == end when there is none.
func zeroRun(ip *[16]byte) (start, end int) {
	zero := 0 // bit g: group g is zero
	for g := range 8 {
		if ip[2*g]|ip[2*g+1] == 0 {
			zero |= 1 << g
		}
	}
	r := zeroRuns[zero]
	return int(r[0]), int(r[1])
}

// zeroRuns is the first longest run of two or more set bits of each byte,
// bit 0 first, as [start, end).
var zeroRuns = func() (t [256][2]uint8) {
	for m := range t {
		var start, end int
		for i := 0; i < 8; i++ {
			j := i
			for j < 8 && m&(1<<j) != 0 {
				j++
			}
			if j-i >= 2 && j-i > end-start {
				start, end = i, j
			}
		}
		t[m] = [2]uint8{uint8(start), uint8(end)}
	}
	return t
}()
