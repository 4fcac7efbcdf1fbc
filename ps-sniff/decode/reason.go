package decode

// Reason says what became of one packet: a probe, a packet that is fine but
// not a probe, or a malformed one. Decoder.Stats counts every reason.
type Reason uint8

// Reasons. OK means the packet is a probe. The ones up to FragDuplicate are
// ordinary traffic; from LinkTruncated on the packet was malformed or hostile
// (Malformed reports which).
const (
	OK            Reason = iota
	NotIP                // not IPv4 or IPv6 (ARP, LLDP, ...)
	OtherProto           // neither TCP nor UDP (ICMP, ESP, no next header, ...)
	AckRst               // TCP with ACK or RST: never a probe
	FragPending          // fragment queued, datagram not complete yet
	FragDuplicate        // fragment already received

	LinkTruncated    // link-layer header cut short
	LinkBad          // link-layer header invalid (SLL address length, VLAN nesting)
	IPv4Truncated    // fewer bytes than the IPv4 header needs
	IPv4Bad          // version, header length or total length invalid
	IPv4BadOptions   // IPv4 options malformed or running past the header
	IPv6Truncated    // fewer than 40 bytes
	IPv6Bad          // version or payload length invalid
	ExtTruncated     // an IPv6 extension header runs past the packet
	ExtBadOptions    // IPv6 option TLVs malformed or asking to discard
	ExtOrder         // hop-by-hop not first, or a second fragment header
	ExtTooLong       // more extension headers than MaxExtHeaders
	ExtRouting       // routing header with segments left: not for this host
	FragHeadersCut   // first IPv6 fragment without the whole header chain (RFC 8200)
	FragOverlap      // overlapping fragments: datagram dropped
	FragCorrupt      // fragment end inconsistent: datagram dropped
	FragEmpty        // fragment without data: datagram dropped
	FragOversize     // datagram over 65535 bytes: dropped
	FragMisaligned   // IPv6 fragment length not a multiple of 8
	FragTableFull    // too many datagrams in reassembly
	FragTooMany      // too many fragments in one datagram
	BadAddress       // source or destination the kernel treats as martian
	TCPTruncated     // fewer bytes than the TCP header
	TCPBadOffset     // data offset below 5 or past the segment
	UDPTruncated     // fewer than 8 bytes
	UDPBadLength     // UDP length below 8 or past the datagram
	CaptureTruncated // wire data present but not captured (snap length)
	numReasons
)

var reasonNames = [numReasons]string{
	"probe", "not-ip", "other-proto", "ack-rst", "frag-pending", "frag-duplicate",
	"link-truncated", "link-bad", "ipv4-truncated", "ipv4-bad", "ipv4-bad-options",
	"ipv6-truncated", "ipv6-bad", "ext-truncated", "ext-bad-options", "ext-order",
	"ext-too-long", "ext-routing", "frag-headers-cut", "frag-overlap", "frag-corrupt",
	"frag-empty", "frag-oversize", "frag-misaligned", "frag-table-full",
	"frag-too-many", "bad-address", "tcp-truncated", "tcp-bad-offset",
	"udp-truncated", "udp-bad-length", "capture-truncated",
}

func (r Reason) String() string {
	if r < numReasons {
		return reasonNames[r]
	}
	return "unknown"
}

// Malformed reports whether r means a malformed or hostile packet.
func (r Reason) Malformed() bool { return r >= LinkTruncated && r < numReasons }

// Stats counts packets by reason, plus the anomalies that do not stop a probe.
type Stats struct {
	Reasons [numReasons]uint64
	// TCPBadOptions counts probes whose TCP options were malformed. The
	// kernel answers those segments anyway (tcp_parse_options just stops),
	// so they still count as probes.
	TCPBadOptions uint64
	// Reassembled counts probes rebuilt from fragments.
	Reassembled uint64
	// FragExpired counts datagrams dropped because their time ran out.
	FragExpired uint64
}

// Each calls fn for every reason with a non-zero count, in Reason order.
func (s *Stats) Each(fn func(r Reason, n uint64)) {
	for r, n := range s.Reasons {
		if n != 0 {
			fn(Reason(r), n)
		}
	}
}
