// Package probe defines what ps-sniff extracts from one packet: who probed which
// port of this host, over which protocol, and how the TCP flags classify the
// scan. It has no dependencies so that every other ps-sniff package can share it.
package probe

import (
	"net/netip"
)

// Proto is the transport protocol of a probe.
type Proto uint8

// The protocols ps-sniff watches. ProtoNone is the zero value.
const (
	ProtoNone Proto = iota
	ProtoTCP
	ProtoUDP
)

func (p Proto) String() string {
	switch p {
	case ProtoTCP:
		return "tcp"
	case ProtoUDP:
		return "udp"
	}
	return "none"
}

// Flags holds the TCP flag byte (header offset 13), bit for bit.
type Flags uint8

// TCP flags in wire order, least significant bit first.
const (
	FIN Flags = 1 << iota
	SYN
	RST
	PSH
	ACK
	URG
	ECE
	CWR
)

// flagLetters is the SPEC's FSRPAUEC order, which is also wire bit order.
const flagLetters = "FSRPAUEC"

// Append appends the letters of the flags that are set, in FSRPAUEC order.
// It does not allocate when dst has room for 8 more bytes.
func (f Flags) Append(dst []byte) []byte {
	for i := range len(flagLetters) {
		if f&(1<<i) != 0 {
			dst = append(dst, flagLetters[i])
		}
	}
	return dst
}

func (f Flags) String() string {
	var b [8]byte
	return string(f.Append(b[:0]))
}

// Scan is how a probe is classified.
type Scan uint8

// Scan kinds, as the SPEC names them. ScanNone is the zero value.
const (
	ScanNone Scan = iota
	ScanSYN
	ScanFIN
	ScanNull
	ScanXmas
	ScanOther
	ScanUDP
)

var scanNames = [...]string{"none", "syn", "fin", "null", "xmas", "other", "udp"}

func (s Scan) String() string {
	if int(s) < len(scanNames) {
		return scanNames[s]
	}
	return "none"
}

// classMask keeps the six flags PortSentry 1.2 looked at. ECE and CWR are left
// out on purpose: an ECN-setup SYN (SYN+ECE+CWR) is an ordinary connection
// attempt and must classify as syn, as it did in 1.2.
const classMask = FIN | SYN | RST | PSH | ACK | URG

// IsProbe reports whether a TCP segment with these flags can be a probe:
// stealth modes never react to a segment with ACK or RST set, since those
// belong to connections (or answers) and are trivially spoofed.
func (f Flags) IsProbe() bool { return f&(ACK|RST) == 0 }

// ClassifyTCP names the scan a TCP segment with flags f belongs to. It returns
// ScanNone when f has ACK or RST set.
func ClassifyTCP(f Flags) Scan {
	if !f.IsProbe() {
		return ScanNone
	}
	switch f & classMask {
	case SYN:
		return ScanSYN
	case FIN:
		return ScanFIN
	case 0:
		return ScanNull
	case FIN | PSH | URG:
		return ScanXmas
	}
	return ScanOther
}

// Probe is one TCP segment or UDP datagram addressed to a port of this host.
type Probe struct {
	Src, Dst     netip.Addr
	Proto        Proto
	Sport, Dport uint16
	Flags        Flags // TCP only
	Scan         Scan
	// Fragmented is set when the probe was rebuilt from IP fragments.
	Fragmented bool
}
