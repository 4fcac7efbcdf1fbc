// Package decode turns raw packet bytes into probes. It takes Ethernet frames,
// Linux cooked captures (SLL, SLL2) or bare IP packets, walks IPv4 and IPv6
// (extension headers included, with a bound), reassembles fragments through
// package frag, and classifies TCP and UDP probes.
//
// Decoding follows gopacket's DecodingLayerParser style: one set of layers is
// allocated with the Decoder and reused, so a well-formed packet costs no
// allocation. Length checks that would make gopacket build an error are done
// first, so malformed packets are cheap too, and each is counted by Reason.
// Where the kernel would drop a packet before any socket saw it (bad header,
// martian address, overlapping fragments), the packet is not a probe: a scan
// that gets no answer from the host is not reported either.
package decode

import (
	"encoding/binary"
	"net/netip"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/portsentry/pipeline/ps-sniff/frag"
	"github.com/portsentry/pipeline/ps-sniff/probe"
)

// LinkType is the framing of the packet bytes handed to Decode.
type LinkType uint8

// Link types.
const (
	LinkEthernet LinkType = iota // Ethernet II, optionally 802.1Q/802.1ad tagged
	LinkSLL                      // Linux cooked capture v1 (pcap LINKTYPE_LINUX_SLL)
	LinkSLL2                     // Linux cooked capture v2 (LINKTYPE_LINUX_SLL2)
	LinkRaw                      // bare IPv4 or IPv6, told apart by the version nibble
)

// MaxExtHeaders bounds the IPv6 extension headers walked in one packet; a
// longer chain is hostile (no real stack sends one) and is dropped.
const MaxExtHeaders = 8

// maxVLANTags bounds 802.1Q/802.1ad tag nesting (QinQ uses two).
const maxVLANTags = 2

// IP protocol numbers used in the walk.
const (
	protoHopByHop = 0
	protoTCP      = 6
	protoUDP      = 17
	protoRouting  = 43
	protoFragment = 44
	protoICMPv6   = 58
	protoDestOpts = 60
)

// Decoder decodes packets one at a time. It is not safe for concurrent use.
type Decoder struct {
	eth  layers.Ethernet
	sll  layers.LinuxSLL
	vlan layers.Dot1Q
	ip4  layers.IPv4
	ip6  layers.IPv6
	tcp  layers.TCP
	udp  layers.UDP
	frag *frag.Reassembler
	fr   frag.Fragment

	// Stats counts every packet by the Reason Decode returned.
	Stats Stats
}

// New returns a Decoder whose fragment reassembly is bounded by lim.
func New(lim frag.Limits) *Decoder {
	return &Decoder{frag: frag.New(lim)}
}

// Decode decodes one packet captured at ts into p. It returns OK when p holds
// a probe; for AckRst p holds the segment too (replay uses SYN-ACKs to learn
// listening ports); for other reasons p is unspecified.
func (d *Decoder) Decode(lt LinkType, data []byte, ts time.Time, p *probe.Probe) Reason {
	r := d.decode(lt, data, ts, p)
	d.Stats.Reasons[r]++
	d.Stats.FragExpired = d.frag.Expired
	return r
}

// Sweep drops fragment queues whose time ran out by now; call it when no
// packets arrive for a while so that memory is given back.
func (d *Decoder) Sweep(now time.Time) {
	d.frag.Sweep(now)
	d.Stats.FragExpired = d.frag.Expired
}

func (d *Decoder) decode(lt LinkType, data []byte, ts time.Time, p *probe.Probe) Reason {
	var et layers.EthernetType
	switch lt {
	case LinkEthernet:
		if len(data) < 14 {
			return LinkTruncated
		}
		_ = d.eth.DecodeFromBytes(data, gopacket.NilDecodeFeedback) // cannot fail past the check
		et, data = d.eth.EthernetType, d.eth.Payload
		for i := 0; et == layers.EthernetTypeDot1Q || et == layers.EthernetTypeQinQ; i++ {
			if i == maxVLANTags {
				return LinkBad
			}
			if len(data) < 4 {
				return LinkTruncated
			}
			_ = d.vlan.DecodeFromBytes(data, gopacket.NilDecodeFeedback)
			et, data = d.vlan.Type, d.vlan.Payload
		}
	case LinkSLL:
		if len(data) < 16 {
			return LinkTruncated
		}
		// gopacket slices the address by its length field: check it
		// first, or a hostile capture file makes it panic.
		if binary.BigEndian.Uint16(data[4:6]) > 8 {
			return LinkBad
		}
		_ = d.sll.DecodeFromBytes(data, gopacket.NilDecodeFeedback)
		et, data = d.sll.EthernetType, d.sll.Payload
	case LinkSLL2:
		// gopacket v1.1.19 has no SLL2 layer; its protocol is the first field.
		if len(data) < 20 {
			return LinkTruncated
		}
		et, data = layers.EthernetType(binary.BigEndian.Uint16(data[0:2])), data[20:]
	case LinkRaw:
		if len(data) == 0 {
			return LinkTruncated
		}
		switch data[0] >> 4 {
		case 4:
			et = layers.EthernetTypeIPv4
		case 6:
			et = layers.EthernetTypeIPv6
		}
	default:
		return NotIP
	}
	switch et {
	case layers.EthernetTypeIPv4:
		return d.ipv4(data, ts, p)
	case layers.EthernetTypeIPv6:
		return d.ipv6(data, ts, p)
	}
	return NotIP
}

func (d *Decoder) ipv4(data []byte, ts time.Time, p *probe.Probe) Reason {
	if len(data) < 20 {
		return IPv4Truncated
	}
	ihl := int(data[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(data[2:4]))
	// ip_rcv_core drops these; gopacket would also accept a zero total
	// length (TSO), which never reaches the stack from the wire.
	if data[0]>>4 != 4 || ihl < 20 || total < ihl {
		return IPv4Bad
	}
	if len(data) < ihl {
		return IPv4Truncated
	}
	if !validIPv4Options(data[20:ihl]) {
		return IPv4BadOptions
	}
	// Past the checks above only gopacket's option parser can fail, and it
	// is stricter than the kernel (2-byte options): its error is ignored,
	// the fields used here are set before it runs.
	_ = d.ip4.DecodeFromBytes(data, gopacket.NilDecodeFeedback)
	p.Src = netip.AddrFrom4([4]byte(d.ip4.SrcIP))
	p.Dst = netip.AddrFrom4([4]byte(d.ip4.DstIP))
	p.Fragmented = false
	if r := checkAddrs(p.Src, p.Dst); r != OK {
		return r
	}
	payload, wire := d.ip4.Payload, total-ihl
	if d.ip4.Flags&layers.IPv4MoreFragments != 0 || d.ip4.FragOffset != 0 {
		d.fr = frag.Fragment{
			Key:       frag.Key{Src: p.Src, Dst: p.Dst, ID: uint32(d.ip4.Id), Proto: uint8(d.ip4.Protocol)},
			Offset:    int(d.ip4.FragOffset) * 8,
			More:      d.ip4.Flags&layers.IPv4MoreFragments != 0,
			Len:       wire,
			Data:      payload,
			Next:      uint8(d.ip4.Protocol),
			HeaderLen: ihl,
		}
		dg, r := d.reassemble(ts)
		if r != OK {
			return r
		}
		payload, wire = dg.Payload, dg.Len
		p.Fragmented = true
	}
	return d.transport(uint8(d.ip4.Protocol), payload, wire, p)
}

func (d *Decoder) ipv6(data []byte, ts time.Time, p *probe.Probe) Reason {
	if len(data) < 40 {
		return IPv6Truncated
	}
	if data[0]>>4 != 6 {
		return IPv6Bad
	}
	if data[6] == protoHopByHop {
		if len(data) < 42 || (int(data[41])+1)*8 > len(data)-40 {
			return ExtTruncated
		}
		if !validTLVs(data[40:], true) {
			return ExtBadOptions
		}
	}
	if err := d.ip6.DecodeFromBytes(data, gopacket.NilDecodeFeedback); err != nil {
		return IPv6Bad // payload length zero without a valid jumbo option
	}
	p.Src = netip.AddrFrom16([16]byte(d.ip6.SrcIP))
	p.Dst = netip.AddrFrom16([16]byte(d.ip6.DstIP))
	p.Fragmented = false
	if r := checkAddrs(p.Src, p.Dst); r != OK {
		return r
	}
	// wire is the payload length the packet had on the wire, payload what
	// the capture holds of it, without link padding. Both are computed here:
	// gopacket v1.1.19 cuts its Payload at the wrong end after a hop-by-hop
	// header.
	next := uint8(d.ip6.NextHeader)
	wire := int(d.ip6.Length)
	if wire == 0 {
		wire = len(data) - 40 // jumbogram, accepted by gopacket's check
	}
	payload := data[40:min(40+wire, len(data))]
	headers, unfrag := 0, 0 // unfrag: bytes of extension headers walked
	if d.ip6.HopByHop != nil {
		next = uint8(d.ip6.HopByHop.NextHeader)
		n := d.ip6.HopByHop.ActualLength
		if n > wire {
			return ExtTruncated
		}
		payload, wire, headers, unfrag = payload[n:], wire-n, 1, n
	}
	fragmented := false
	for ; ; headers++ {
		if headers > MaxExtHeaders {
			return ExtTooLong
		}
		switch next {
		case protoHopByHop:
			return ExtOrder // ip6_input: hop-by-hop is only valid first
		case protoRouting, protoDestOpts:
			if len(payload) < 2 {
				return ExtTruncated
			}
			n := (int(payload[1]) + 1) * 8
			if n > len(payload) || n > wire {
				return ExtTruncated
			}
			if next == protoRouting && payload[3] != 0 {
				// Segments left: the packet is routed on, not delivered here.
				return ExtRouting
			}
			if next == protoDestOpts && !validTLVs(payload[:n], false) {
				return ExtBadOptions
			}
			next, payload, wire, unfrag = payload[0], payload[n:], wire-n, unfrag+n
		case protoFragment:
			if fragmented {
				return ExtOrder
			}
			if len(payload) < 8 || wire < 8 {
				return ExtTruncated
			}
			if d.ip6.Length == 0 {
				return IPv6Bad // ipv6_frag_rcv: no fragmented jumbograms
			}
			offset := int(binary.BigEndian.Uint16(payload[2:4]) &^ 7)
			more := payload[3]&1 != 0
			fnext, id := payload[0], binary.BigEndian.Uint32(payload[4:8])
			payload, wire = payload[8:], wire-8
			if offset == 0 && !more {
				// Atomic fragment (RFC 6946): processed as unfragmented.
				next, unfrag = fnext, unfrag+8
				continue
			}
			if offset == 0 && headerChainCut(fnext, payload, MaxExtHeaders-headers) {
				return FragHeadersCut
			}
			d.fr = frag.Fragment{
				Key:       frag.Key{Src: p.Src, Dst: p.Dst, ID: id, V6: true},
				Offset:    offset,
				More:      more,
				Len:       wire,
				Data:      payload,
				Next:      fnext,
				HeaderLen: unfrag,
			}
			dg, r := d.reassemble(ts)
			if r != OK {
				return r
			}
			next, payload, wire = dg.Next, dg.Payload, dg.Len
			fragmented = true
			p.Fragmented = true
		default:
			return d.transport(next, payload, wire, p)
		}
	}
}

// reassemble queues d.fr and maps the reassembler's verdict to a Reason.
func (d *Decoder) reassemble(ts time.Time) (frag.Datagram, Reason) {
	dg, v := d.frag.Add(&d.fr, ts)
	switch v {
	case frag.Complete:
		d.Stats.Reassembled++
		return dg, OK
	case frag.Pending:
		return dg, FragPending
	case frag.Duplicate:
		return dg, FragDuplicate
	case frag.Overlap:
		return dg, FragOverlap
	case frag.Corrupt:
		return dg, FragCorrupt
	case frag.Empty:
		return dg, FragEmpty
	case frag.Oversize:
		return dg, FragOversize
	case frag.Misaligned:
		return dg, FragMisaligned
	case frag.TableFull:
		return dg, FragTableFull
	}
	return dg, FragTooMany
}

// transport decodes the TCP or UDP header at the start of payload; wire is
// the transport length the packet had, payload what was captured of it.
func (d *Decoder) transport(next uint8, payload []byte, wire int, p *probe.Probe) Reason {
	switch next {
	case protoTCP:
		// tcp_v4_rcv/tcp_v6_rcv: header present and data offset sane.
		if wire < 20 {
			return TCPTruncated
		}
		if len(payload) < 20 {
			return CaptureTruncated
		}
		doff := int(payload[12]>>4) * 4
		if doff < 20 || doff > wire {
			return TCPBadOffset
		}
		if len(payload) < doff {
			return CaptureTruncated
		}
		if err := d.tcp.DecodeFromBytes(payload, gopacket.NilDecodeFeedback); err != nil {
			// Only the options can fail here; the kernel ignores bad
			// options and answers the segment, so it is still a probe.
			d.Stats.TCPBadOptions++
		}
		p.Proto = probe.ProtoTCP
		p.Sport, p.Dport = uint16(d.tcp.SrcPort), uint16(d.tcp.DstPort)
		p.Flags = probe.Flags(payload[13])
		p.Scan = probe.ClassifyTCP(p.Flags)
		if p.Scan == probe.ScanNone {
			return AckRst
		}
		return OK
	case protoUDP:
		if wire < 8 {
			return UDPTruncated
		}
		if len(payload) < 8 {
			return CaptureTruncated
		}
		_ = d.udp.DecodeFromBytes(payload, gopacket.NilDecodeFeedback)
		// __udp4_lib_rcv/udpv6_rcv: length below 8 or past the datagram
		// is a short packet; 0 is a jumbogram, valid only in IPv6.
		if n := int(d.udp.Length); n > wire || (n < 8 && !(n == 0 && p.Src.Is6())) {
			return UDPBadLength
		}
		p.Proto = probe.ProtoUDP
		p.Sport, p.Dport = uint16(d.udp.SrcPort), uint16(d.udp.DstPort)
		p.Flags = 0
		p.Scan = probe.ScanUDP
		return OK
	}
	return OtherProto
}

// validIPv4Options checks IPv4 options as ip_options_compile does for the
// lengths, and drops source-routed packets as ip_rcv_options does while
// accept_source_route is off (the default).
func validIPv4Options(opts []byte) bool {
	for len(opts) > 0 {
		switch t := opts[0]; t {
		case 0: // end of list
			return true
		case 1: // no-op
			opts = opts[1:]
		default:
			if len(opts) < 2 || opts[1] < 2 || int(opts[1]) > len(opts) {
				return false
			}
			if t == 131 || t == 137 { // LSRR, SSRR
				return false
			}
			opts = opts[opts[1]:]
		}
	}
	return true
}

// checkAddrs rejects what ip_route_input and ipv6_rcv treat as martian, so
// that a spoofed probe "from" a multicast or loopback address never becomes
// a hit (and a block) downstream.
func checkAddrs(src, dst netip.Addr) Reason {
	switch {
	case src.IsUnspecified(), src.IsMulticast(), dst.IsUnspecified(),
		src.Is4() && (src.As4()[0] == 0 || src == netip.AddrFrom4([4]byte{255, 255, 255, 255})),
		src.Is4In6(),
		src.IsLoopback() != dst.IsLoopback():
		return BadAddress
	}
	return OK
}

// validTLVs checks the options of a hop-by-hop or destination options header
// (hdr holds the whole header) as ip6_parse_tlv does: each option fits,
// padding stays below 8 bytes in a row, and an unknown option whose type asks
// for the packet to be discarded (top bits not 00) discards it.
func validTLVs(hdr []byte, hopByHop bool) bool {
	if len(hdr) < 2 {
		return false
	}
	n := (int(hdr[1]) + 1) * 8
	if n > len(hdr) {
		return false
	}
	opts := hdr[2:n]
	pad, count := 0, 0
	for len(opts) > 0 {
		t := opts[0]
		size := 1
		if t != 0 {
			if len(opts) < 2 || int(opts[1])+2 > len(opts) {
				return false
			}
			size = int(opts[1]) + 2
		}
		if t == 0 || t == 1 {
			pad += size
			if pad > 7 {
				return false
			}
		} else {
			pad = 0
			count++
			if count > 8 || (!knownOption(t, hopByHop) && t>>6 != 0) {
				return false
			}
		}
		opts = opts[size:]
	}
	return true
}

// knownOption lists the options Linux handles, by header.
func knownOption(t byte, hopByHop bool) bool {
	if hopByHop {
		// router alert, CALIPSO, IOAM, jumbo payload
		return t == 0x05 || t == 0x07 || t == 0x31 || t == 0xc2
	}
	return t == 0xc9 // home address (Mobile IPv6)
}

// headerChainCut reports whether a first fragment lacks part of the header
// chain through the upper-layer header, which Linux drops since RFC 8200
// (ipv6frag_thdr_truncated). Unknown upper layers need one byte.
func headerChainCut(next uint8, b []byte, budget int) bool {
	for range budget {
		switch next {
		case protoHopByHop, protoRouting, protoDestOpts, protoFragment:
			if len(b) < 2 {
				return true
			}
			n := (int(b[1]) + 1) * 8
			if next == protoFragment {
				n = 8
			}
			if n > len(b) {
				return true
			}
			next, b = b[0], b[n:]
			continue
		case protoTCP:
			return len(b) < 20
		case protoUDP:
			return len(b) < 8
		case protoICMPv6:
			return len(b) < 8
		}
		return len(b) < 1
	}
	return false
}
