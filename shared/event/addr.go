package event

import "net/netip"

// scanAddr reads an IPv4 or IPv6 address without a zone, as
// netip.ParseAddr does (the same texts, the same address), IPv4-mapped
// ones unmapped. It also says whether s is the address's own form, the
// text netip.Addr.AppendTo writes (RFC 5952 for IPv6), which a writer may
// then copy. FuzzScanAddr holds it to netip.
func scanAddr(s []byte) (a netip.Addr, canonical, ok bool) {
	a, canonical, n, ok := readAddr(s)
	return a, canonical, ok && n == len(s)
}

// readAddr is scanAddr on the text that starts b and ends at its first
// quote, or at its end, and also returns the text's length. It is the hit
// template's parser, which reads a string in place: a flood of spoofed
// sources is one address to parse per line, and a table of hex digits
// with no error to build costs a third of netip's.
func readAddr(b []byte) (a netip.Addr, canonical bool, n int, ok bool) {
	for i := 0; i < len(b) && i < 5; i++ {
		switch b[i] {
		case '.':
			var ip [4]byte
			if n, ok = readIPv4(b, &ip); !ok {
				return netip.Addr{}, false, 0, false
			}
			// netip takes no other form of an IPv4 address.
			return netip.AddrFrom4(ip), true, n, true
		case ':':
			return readIPv6(b)
		}
	}
	return netip.Addr{}, false, 0, false
}

// ends reports whether an address's text ends at b.
func ends(b []byte) bool { return len(b) == 0 || b[0] == '"' }

// readIPv4 reads dotted decimal at the start of b into ip: four fields of
// 0 to 255, no leading zero; the text ends as readAddr's does.
func readIPv4(b []byte, ip *[4]byte) (n int, ok bool) {
	i := 0
	for f := range 4 {
		if f > 0 {
			if i >= len(b) || b[i] != '.' {
				return 0, false
			}
			i++
		}
		if i >= len(b) || b[i]-'0' > 9 {
			return 0, false
		}
		v := uint(b[i] - '0')
		i++
		if i < len(b) && b[i]-'0' <= 9 {
			if v == 0 {
				return 0, false
			}
			v = v*10 + uint(b[i]-'0')
			i++
			if i < len(b) && b[i]-'0' <= 9 {
				v = v*10 + uint(b[i]-'0')
				i++
			}
		}
		if v > 255 {
			return 0, false
		}
		ip[f] = byte(v)
	}
	return i, ends(b[i:])
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

// readIPv6 reads groups of one to four hex digits separated by colons, one
// "::" standing for at least one group of zeros, and maybe an IPv4 address
// in place of the last two groups; the text ends as readAddr's does.
func readIPv6(b []byte) (a netip.Addr, canonical bool, n int, ok bool) {
	var ip [16]byte
	s := b
	ellipsis := -1 // where "::" is in ip
	if len(s) >= 2 && s[0] == ':' && s[1] == ':' {
		ellipsis, s = 0, s[2:]
		if ends(s) {
			return netip.IPv6Unspecified(), true, 2, true
		}
	}
	// Off its own form: a capital, a leading zero, an embedded IPv4
	// address (netip writes none but in ::ffff:, which is unmapped here).
	odd := false
	i := 0
	for i < 16 {
		off, acc, seen := 0, 0, byte(0)
		if len(s) > 4 {
			// Most groups of a random address have four digits: read
			// them without a test on each.
			d0, d1, d2, d3 := hexDigit[s[0]], hexDigit[s[1]], hexDigit[s[2]], hexDigit[s[3]]
			if seen = d0 | d1 | d2 | d3; seen != 0xff && hexDigit[s[4]] == 0xff {
				off, acc = 4, int(d0&0xf)<<12|int(d1&0xf)<<8|int(d2&0xf)<<4|int(d3&0xf)
			} else {
				seen = 0
			}
		}
		for ; off < len(s) && off < 5; off++ {
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
			return netip.Addr{}, false, 0, false
		}
		if seen&upperHex != 0 || s[0] == '0' && off > 1 {
			odd = true
		}
		if off < len(s) && s[off] == '.' {
			if ellipsis < 0 && i != 12 || i+4 > 16 {
				return netip.Addr{}, false, 0, false
			}
			m, ok := readIPv4(s, (*[4]byte)(ip[i:i+4]))
			if !ok {
				return netip.Addr{}, false, 0, false
			}
			s, i, odd = s[m:], i+4, true
			break
		}
		ip[i], ip[i+1] = byte(acc>>8), byte(acc)
		i += 2
		if s = s[off:]; ends(s) {
			break
		}
		if s[0] != ':' || ends(s[1:]) {
			return netip.Addr{}, false, 0, false
		}
		if s = s[1:]; s[0] == ':' {
			if ellipsis >= 0 {
				return netip.Addr{}, false, 0, false
			}
			ellipsis, s = i, s[1:]
			if ends(s) {
				break
			}
		}
	}
	if !ends(s) {
		return netip.Addr{}, false, 0, false
	}
	n = len(b) - len(s)
	zeros := 16 - i // bytes of zeros "::" stands for
	if i < 16 {
		if ellipsis < 0 {
			return netip.Addr{}, false, 0, false
		}
		copy(ip[ellipsis+zeros:], ip[ellipsis:i])
		clear(ip[ellipsis : ellipsis+zeros])
	} else if ellipsis >= 0 {
		return netip.Addr{}, false, 0, false
	}
	a = netip.AddrFrom16(ip)
	if a.Is4In6() {
		return a.Unmap(), false, n, true
	}
	// Its own form shortens the first longest run of two or more zero
	// groups, and only that.
	start, end := zeroRun(&ip)
	if ellipsis < 0 {
		canonical = !odd && start == end
	} else {
		canonical = !odd && ellipsis == 2*start && zeros == 2*(end-start)
	}
	return a, canonical, n, true
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
