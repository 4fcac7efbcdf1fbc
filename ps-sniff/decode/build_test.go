package decode

import (
	"encoding/binary"
	"net/netip"
)

// Packet builders for the tests. They compute no checksums (the decoder does
// not check them) and let a test set any field to a hostile value.

var (
	src4 = netip.MustParseAddr("198.18.0.1")
	dst4 = netip.MustParseAddr("198.18.0.2")
	src6 = netip.MustParseAddr("2001:db8::1")
	dst6 = netip.MustParseAddr("2001:db8::2")
)

func tcpHdr(sport, dport uint16, flags byte, opts []byte) []byte {
	b := make([]byte, 20+len(opts))
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	b[12] = byte((20+len(opts))/4) << 4
	b[13] = flags
	binary.BigEndian.PutUint16(b[14:], 1024)
	copy(b[20:], opts)
	return b
}

func udpHdr(sport, dport uint16, payload []byte) []byte {
	b := make([]byte, 8+len(payload))
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	binary.BigEndian.PutUint16(b[4:], uint16(8+len(payload)))
	copy(b[8:], payload)
	return b
}

type v4 struct {
	src, dst netip.Addr
	proto    byte
	id       uint16
	offset   int // bytes, multiple of 8
	more     bool
	opts     []byte
}

func (h v4) packet(payload []byte) []byte {
	if !h.src.IsValid() {
		h.src, h.dst = src4, dst4
	}
	ihl := 20 + len(h.opts)
	b := make([]byte, ihl+len(payload))
	b[0] = 0x40 | byte(ihl/4)
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	binary.BigEndian.PutUint16(b[4:], h.id)
	ff := uint16(h.offset / 8)
	if h.more {
		ff |= 0x2000
	}
	binary.BigEndian.PutUint16(b[6:], ff)
	b[8] = 64
	b[9] = h.proto
	s, d := h.src.As4(), h.dst.As4()
	copy(b[12:], s[:])
	copy(b[16:], d[:])
	copy(b[20:], h.opts)
	copy(b[ihl:], payload)
	return b
}

// ip6 builds an IPv6 packet; ext holds ready-made extension headers and
// first is the next header value of the fixed header.
func ip6(src, dst netip.Addr, first byte, ext, payload []byte) []byte {
	if !src.IsValid() {
		src, dst = src6, dst6
	}
	b := make([]byte, 40+len(ext)+len(payload))
	b[0] = 0x60
	binary.BigEndian.PutUint16(b[4:], uint16(len(ext)+len(payload)))
	b[6] = first
	b[7] = 64
	s, d := src.As16(), dst.As16()
	copy(b[8:], s[:])
	copy(b[24:], d[:])
	copy(b[40:], ext)
	copy(b[40+len(ext):], payload)
	return b
}

// extHdr builds a generic extension header of 8*(n+1) bytes.
func extHdr(next byte, n int) []byte {
	b := make([]byte, 8*(n+1))
	b[0], b[1] = next, byte(n)
	b[2], b[3] = 0x1e, byte(len(b)-4) // an unknown option to skip (PadN may not exceed 7 bytes)
	return b
}

func fragHdr(next byte, offset int, more bool, id uint32) []byte {
	b := make([]byte, 8)
	b[0] = next
	fo := uint16(offset)
	if more {
		fo |= 1
	}
	binary.BigEndian.PutUint16(b[2:], fo)
	binary.BigEndian.PutUint32(b[4:], id)
	return b
}

func ether(et uint16, payload []byte) []byte {
	b := make([]byte, 14+len(payload))
	copy(b, []byte{2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1})
	binary.BigEndian.PutUint16(b[12:], et)
	copy(b[14:], payload)
	return b
}

func vlanTag(et uint16, payload []byte) []byte {
	b := make([]byte, 4+len(payload))
	binary.BigEndian.PutUint16(b[0:], 7)
	binary.BigEndian.PutUint16(b[2:], et)
	copy(b[4:], payload)
	return b
}

func sll(et uint16, payload []byte) []byte {
	b := make([]byte, 16+len(payload))
	binary.BigEndian.PutUint16(b[2:], 1)
	binary.BigEndian.PutUint16(b[4:], 6)
	binary.BigEndian.PutUint16(b[14:], et)
	copy(b[16:], payload)
	return b
}

func sll2(et uint16, payload []byte) []byte {
	b := make([]byte, 20+len(payload))
	binary.BigEndian.PutUint16(b[0:], et)
	copy(b[20:], payload)
	return b
}

func cat(bs ...[]byte) []byte {
	var out []byte
	for _, b := range bs {
		out = append(out, b...)
	}
	return out
}
