package decode

import (
	"net/netip"
	"testing"
	"time"

	"github.com/portsentry/pipeline/ps-sniff/frag"
	"github.com/portsentry/pipeline/ps-sniff/probe"
)

const (
	fF = byte(probe.FIN)
	fS = byte(probe.SYN)
	fR = byte(probe.RST)
	fP = byte(probe.PSH)
	fA = byte(probe.ACK)
	fU = byte(probe.URG)
	fE = byte(probe.ECE)
	fC = byte(probe.CWR)
)

var t0 = time.Date(2026, 11, 24, 14, 29, 45, 0, time.UTC)

type pkt struct {
	lt   LinkType
	data []byte
}

func raw(b []byte) pkt { return pkt{LinkRaw, b} }

func TestDecodeSingle(t *testing.T) {
	syn := tcpHdr(41234, 21, fS, nil)
	tcp4 := v4{proto: 6}
	mss := []byte{2, 4, 5, 0xb4}
	tests := []struct {
		name  string
		in    pkt
		want  Reason
		scan  probe.Scan
		flags string
		src   netip.Addr
		sport uint16
		dport uint16
	}{
		{"syn4 raw", raw(tcp4.packet(syn)), OK, probe.ScanSYN, "S", src4, 41234, 21},
		{"syn4 ether", pkt{LinkEthernet, ether(0x0800, tcp4.packet(syn))}, OK, probe.ScanSYN, "S", src4, 41234, 21},
		{"syn4 ether padded", pkt{LinkEthernet, ether(0x0800, append(tcp4.packet(syn), 0, 0, 0, 0, 0, 0))}, OK, probe.ScanSYN, "S", src4, 41234, 21},
		{"syn4 vlan", pkt{LinkEthernet, ether(0x8100, vlanTag(0x0800, tcp4.packet(syn)))}, OK, probe.ScanSYN, "S", src4, 41234, 21},
		{"syn4 qinq", pkt{LinkEthernet, ether(0x88a8, vlanTag(0x8100, vlanTag(0x0800, tcp4.packet(syn))))}, OK, probe.ScanSYN, "S", src4, 41234, 21},
		{"three tags", pkt{LinkEthernet, ether(0x88a8, vlanTag(0x8100, vlanTag(0x8100, vlanTag(0x0800, tcp4.packet(syn)))))}, LinkBad, 0, "", src4, 0, 0},
		{"syn4 sll", pkt{LinkSLL, sll(0x0800, tcp4.packet(syn))}, OK, probe.ScanSYN, "S", src4, 41234, 21},
		{"syn4 sll2", pkt{LinkSLL2, sll2(0x0800, tcp4.packet(syn))}, OK, probe.ScanSYN, "S", src4, 41234, 21},
		{"syn6 raw", raw(ip6(src6, dst6, 6, nil, syn)), OK, probe.ScanSYN, "S", src6, 41234, 21},
		{"syn6 ether", pkt{LinkEthernet, ether(0x86dd, ip6(src6, dst6, 6, nil, syn))}, OK, probe.ScanSYN, "S", src6, 41234, 21},
		{"ecn syn", raw(tcp4.packet(tcpHdr(1, 2, fS|fE|fC, nil))), OK, probe.ScanSYN, "SEC", src4, 1, 2},
		{"syn with options", raw(tcp4.packet(tcpHdr(1, 2, fS, mss))), OK, probe.ScanSYN, "S", src4, 1, 2},
		{"fin", raw(tcp4.packet(tcpHdr(1, 2, fF, nil))), OK, probe.ScanFIN, "F", src4, 1, 2},
		{"null", raw(tcp4.packet(tcpHdr(1, 2, 0, nil))), OK, probe.ScanNull, "", src4, 1, 2},
		{"xmas", raw(tcp4.packet(tcpHdr(1, 2, fF|fP|fU, nil))), OK, probe.ScanXmas, "FPU", src4, 1, 2},
		{"syn-fin", raw(tcp4.packet(tcpHdr(1, 2, fS|fF, nil))), OK, probe.ScanOther, "FS", src4, 1, 2},
		{"syn-ack", raw(tcp4.packet(tcpHdr(1, 2, fS|fA, nil))), AckRst, probe.ScanNone, "SA", src4, 1, 2},
		{"rst", raw(tcp4.packet(tcpHdr(1, 2, fR, nil))), AckRst, probe.ScanNone, "R", src4, 1, 2},
		{"ack", raw(tcp4.packet(tcpHdr(1, 2, fA, nil))), AckRst, probe.ScanNone, "A", src4, 1, 2},
		{"maimon fin-ack", raw(tcp4.packet(tcpHdr(1, 2, fF|fA, nil))), AckRst, probe.ScanNone, "FA", src4, 1, 2},
		{"udp4", raw(v4{proto: 17}.packet(udpHdr(53, 161, []byte("x")))), OK, probe.ScanUDP, "", src4, 53, 161},
		{"udp6", raw(ip6(src6, dst6, 17, nil, udpHdr(53, 161, nil))), OK, probe.ScanUDP, "", src6, 53, 161},
		{"udp6 via dest opts", raw(ip6(src6, dst6, 60, extHdr(17, 0), udpHdr(5, 6, nil))), OK, probe.ScanUDP, "", src6, 5, 6},
		{"tcp6 via hbh, routing, dest opts", raw(ip6(src6, dst6, 0, cat(extHdr(43, 0), routing(60, 0), extHdr(6, 1)), syn)), OK, probe.ScanSYN, "S", src6, 41234, 21},
		{"tcp6 atomic fragment", raw(ip6(src6, dst6, 44, fragHdr(6, 0, false, 9), syn)), OK, probe.ScanSYN, "S", src6, 41234, 21},
		{"tcp bad options still a probe", raw(tcp4.packet(tcpHdr(1, 2, fS, []byte{2, 40, 0, 0}))), OK, probe.ScanSYN, "S", src4, 1, 2},

		{"arp", pkt{LinkEthernet, ether(0x0806, make([]byte, 28))}, NotIP, 0, "", src4, 0, 0},
		{"icmp", raw(v4{proto: 1}.packet(make([]byte, 8))), OtherProto, 0, "", src4, 0, 0},
		{"icmpv6", raw(ip6(src6, dst6, 58, nil, make([]byte, 8))), OtherProto, 0, "", src6, 0, 0},
		{"esp6", raw(ip6(src6, dst6, 50, nil, make([]byte, 16))), OtherProto, 0, "", src6, 0, 0},
		{"empty", raw(nil), LinkTruncated, 0, "", src4, 0, 0},
		{"short ether", pkt{LinkEthernet, make([]byte, 13)}, LinkTruncated, 0, "", src4, 0, 0},
		{"short vlan", pkt{LinkEthernet, ether(0x8100, []byte{0, 1})}, LinkTruncated, 0, "", src4, 0, 0},
		{"short sll", pkt{LinkSLL, make([]byte, 15)}, LinkTruncated, 0, "", src4, 0, 0},
		{"sll addr too long", pkt{LinkSLL, sllAddrLen(sll(0x0800, tcp4.packet(syn)), 0xffff)}, LinkBad, 0, "", src4, 0, 0},
		{"short sll2", pkt{LinkSLL2, make([]byte, 19)}, LinkTruncated, 0, "", src4, 0, 0},
		{"bad link type", pkt{LinkType(99), tcp4.packet(syn)}, NotIP, 0, "", src4, 0, 0},
		{"raw version 5", raw([]byte{0x50, 0, 0}), NotIP, 0, "", src4, 0, 0},
		{"ipv4 short", raw(tcp4.packet(syn)[:19]), IPv4Truncated, 0, "", src4, 0, 0},
		{"ipv4 ihl 4", raw(setByte(tcp4.packet(syn), 0, 0x44)), IPv4Bad, 0, "", src4, 0, 0},
		{"ipv4 version 6 in ethertype 0800", pkt{LinkEthernet, ether(0x0800, setByte(tcp4.packet(syn), 0, 0x65))}, IPv4Bad, 0, "", src4, 0, 0},
		{"ipv4 total below ihl", raw(setByte(setByte(tcp4.packet(syn), 2, 0), 3, 10)), IPv4Bad, 0, "", src4, 0, 0},
		{"ipv4 zero total", raw(setByte(setByte(tcp4.packet(syn), 2, 0), 3, 0)), IPv4Bad, 0, "", src4, 0, 0},
		{"ipv4 ihl past data", raw(setByte(tcp4.packet(nil), 0, 0x4f)[:20]), IPv4Bad, 0, "", src4, 0, 0},
		{"ipv4 options past header", raw(v4{proto: 6, opts: []byte{7, 9, 4, 0}}.packet(syn)), IPv4BadOptions, 0, "", src4, 0, 0},
		{"ipv4 option length 1", raw(v4{proto: 6, opts: []byte{7, 1, 0, 0}}.packet(syn)), IPv4BadOptions, 0, "", src4, 0, 0},
		{"ipv4 lsrr", raw(v4{proto: 6, opts: []byte{131, 3, 4, 0}}.packet(syn)), IPv4BadOptions, 0, "", src4, 0, 0},
		{"ipv4 2-byte option ok", raw(v4{proto: 6, opts: []byte{0x99, 2, 1, 0}}.packet(syn)), OK, probe.ScanSYN, "S", src4, 41234, 21},
		{"ipv4 router alert ok", raw(v4{proto: 6, opts: []byte{148, 4, 0, 0}}.packet(syn)), OK, probe.ScanSYN, "S", src4, 41234, 21},
		{"multicast source", raw(v4{src: netip.MustParseAddr("224.0.0.1"), dst: dst4, proto: 6}.packet(syn)), BadAddress, 0, "", src4, 0, 0},
		{"broadcast source", raw(v4{src: netip.MustParseAddr("255.255.255.255"), dst: dst4, proto: 6}.packet(syn)), BadAddress, 0, "", src4, 0, 0},
		{"zero-net source", raw(v4{src: netip.MustParseAddr("0.1.2.3"), dst: dst4, proto: 6}.packet(syn)), BadAddress, 0, "", src4, 0, 0},
		{"loopback source off loopback", raw(v4{src: netip.MustParseAddr("127.0.0.1"), dst: dst4, proto: 6}.packet(syn)), BadAddress, 0, "", src4, 0, 0},
		{"loopback to loopback", raw(v4{src: netip.MustParseAddr("127.0.0.1"), dst: netip.MustParseAddr("127.0.0.1"), proto: 6}.packet(syn)), OK, probe.ScanSYN, "S", netip.MustParseAddr("127.0.0.1"), 41234, 21},
		{"v4-mapped v6 source", raw(ip6(netip.MustParseAddr("::ffff:198.18.0.1"), dst6, 6, nil, syn)), BadAddress, 0, "", src6, 0, 0},
		{"ipv6 short", raw(ip6(src6, dst6, 6, nil, syn)[:39]), IPv6Truncated, 0, "", src6, 0, 0},
		{"ipv6 version 4 in 86dd", pkt{LinkEthernet, ether(0x86dd, setByte(ip6(src6, dst6, 6, nil, syn), 0, 0x45))}, IPv6Bad, 0, "", src6, 0, 0},
		{"ipv6 zero length", raw(setByte(setByte(ip6(src6, dst6, 6, nil, syn), 4, 0), 5, 0)), IPv6Bad, 0, "", src6, 0, 0},
		{"hbh past end", raw(ip6(src6, dst6, 0, extHdr(6, 4)[:8], nil)), ExtTruncated, 0, "", src6, 0, 0},
		{"hbh option past header", raw(ip6(src6, dst6, 0, []byte{6, 0, 5, 9, 0, 0, 0, 0}, syn)), ExtBadOptions, 0, "", src6, 0, 0},
		{"hbh unknown discard option", raw(ip6(src6, dst6, 0, []byte{6, 0, 0x41, 4, 0, 0, 0, 0}, syn)), ExtBadOptions, 0, "", src6, 0, 0},
		{"hbh unknown skip option ok", raw(ip6(src6, dst6, 0, []byte{6, 0, 0x1e, 4, 0, 0, 0, 0}, syn)), OK, probe.ScanSYN, "S", src6, 41234, 21},
		{"hbh pad too long", raw(ip6(src6, dst6, 0, cat([]byte{6, 1, 1, 12}, make([]byte, 12)), syn)), ExtBadOptions, 0, "", src6, 0, 0},
		{"hbh second", raw(ip6(src6, dst6, 60, cat(extHdr(0, 0), extHdr(6, 0)), syn)), ExtOrder, 0, "", src6, 0, 0},
		{"hbh past payload length", raw(setByte(ip6(src6, dst6, 0, extHdr(6, 1), syn), 5, 8)), ExtTruncated, 0, "", src6, 0, 0},
		{"hbh with link padding", raw(append(ip6(src6, dst6, 0, extHdr(6, 1), syn), make([]byte, 30)...)), OK, probe.ScanSYN, "S", src6, 41234, 21},
		{"dest opts past end", raw(ip6(src6, dst6, 60, []byte{6, 3, 1, 4, 0, 0, 0, 0}, nil)), ExtTruncated, 0, "", src6, 0, 0},
		{"dest opts 1 byte", raw(ip6(src6, dst6, 60, []byte{6}, nil)), ExtTruncated, 0, "", src6, 0, 0},
		{"routing segments left", raw(ip6(src6, dst6, 43, routing(6, 1), syn)), ExtRouting, 0, "", src6, 0, 0},
		{"long chain", raw(ip6(src6, dst6, 60, longChain(MaxExtHeaders+1), syn)), ExtTooLong, 0, "", src6, 0, 0},
		{"chain at bound", raw(ip6(src6, dst6, 60, longChain(MaxExtHeaders), syn)), OK, probe.ScanSYN, "S", src6, 41234, 21},
		{"two atomic fragment headers", raw(ip6(src6, dst6, 44, cat(fragHdr(44, 0, false, 1), fragHdr(6, 0, false, 2)), syn)), OK, probe.ScanSYN, "S", src6, 41234, 21},
		{"fragment header cut", raw(ip6(src6, dst6, 44, []byte{6, 0, 0}, nil)), ExtTruncated, 0, "", src6, 0, 0},
		{"tcp short", raw(tcp4.packet(syn[:19])), TCPTruncated, 0, "", src4, 0, 0},
		{"tcp doff 4", raw(tcp4.packet(setByte(tcpHdr(1, 2, fS, nil), 12, 0x40))), TCPBadOffset, 0, "", src4, 0, 0},
		{"tcp doff past end", raw(tcp4.packet(setByte(tcpHdr(1, 2, fS, nil), 12, 0xf0))), TCPBadOffset, 0, "", src4, 0, 0},
		{"tcp capture cut", raw(tcp4.packet(syn)[:30]), CaptureTruncated, 0, "", src4, 0, 0},
		{"udp short", raw(v4{proto: 17}.packet(make([]byte, 7))), UDPTruncated, 0, "", src4, 0, 0},
		{"udp length 7", raw(v4{proto: 17}.packet(setByte(udpHdr(1, 2, nil), 5, 7))), UDPBadLength, 0, "", src4, 0, 0},
		{"udp length past datagram", raw(v4{proto: 17}.packet(setByte(udpHdr(1, 2, nil), 5, 9))), UDPBadLength, 0, "", src4, 0, 0},
		{"udp4 length 0", raw(v4{proto: 17}.packet(setByte(udpHdr(1, 2, nil), 5, 0))), UDPBadLength, 0, "", src4, 0, 0},
		{"udp6 jumbo length 0 ok", raw(ip6(src6, dst6, 17, nil, setByte(udpHdr(1, 2, nil), 5, 0))), OK, probe.ScanUDP, "", src6, 1, 2},
		{"first v6 fragment without tcp header", raw(ip6(src6, dst6, 44, fragHdr(6, 0, true, 3), syn[:16])), FragHeadersCut, 0, "", src6, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := New(frag.Limits{})
			var p probe.Probe
			got := d.Decode(tt.in.lt, tt.in.data, t0, &p)
			if got != tt.want {
				t.Fatalf("Decode = %v, want %v", got, tt.want)
			}
			if d.Stats.Reasons[got] != 1 {
				t.Errorf("reason %v counted %d times", got, d.Stats.Reasons[got])
			}
			if got != OK && got != AckRst {
				return
			}
			if p.Scan != tt.scan || p.Flags.String() != tt.flags || p.Src != tt.src || p.Sport != tt.sport || p.Dport != tt.dport {
				t.Errorf("probe = %+v (flags %q), want scan %v flags %q src %v %d->%d", p, p.Flags, tt.scan, tt.flags, tt.src, tt.sport, tt.dport)
			}
		})
	}
}

func setByte(b []byte, i int, v byte) []byte {
	b = append([]byte(nil), b...)
	b[i] = v
	return b
}

func sllAddrLen(b []byte, n uint16) []byte {
	b = setByte(b, 4, byte(n>>8))
	b[5] = byte(n)
	return b
}

func routing(next byte, segsLeft byte) []byte {
	b := make([]byte, 8)
	b[0], b[2], b[3] = next, 0, segsLeft
	return b
}

// longChain builds n destination options headers, the last pointing to TCP.
func longChain(n int) []byte {
	var b []byte
	for i := range n {
		next := byte(60)
		if i == n-1 {
			next = 6
		}
		b = append(b, extHdr(next, 0)...)
	}
	return b
}
