// Package event encodes, decodes and validates the JSON lines that join the
// pipeline's stages (hit, alert, block, run, unblock, result), as fixed by the
// SPEC. Decoding is strict: an event that comes out of Decode has a known kind,
// valid addresses without zones, ports in range and a time.
package event

import (
	"fmt"
	"net/netip"
	"time"
)

// MaxLine is the longest event line, newline included, that a reader accepts.
const MaxLine = 4096

// Version is the only value of "v" this package reads and writes.
const Version = 1

// Kind says what an event line is.
type Kind uint8

// The kinds of the SPEC. KindNone is the zero value and never valid.
const (
	KindNone Kind = iota
	KindHit
	KindAlert
	KindBlock
	KindRun
	KindUnblock
	KindResult
)

var kindNames = [...]string{"", "hit", "alert", "block", "run", "unblock", "result"}

// Administrative reports whether lines of kind k may come only from an
// administrator, never from a sensor or its input (SPEC, Administration):
// `unblock`, and any later kind of the same nature.
func (k Kind) Administrative() bool { return k == KindUnblock }

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", k)
}

// IsDecision reports whether k is one of ps-judge's decisions about a host.
func (k Kind) IsDecision() bool { return k == KindAlert || k == KindBlock || k == KindRun }

// ParseKind maps a kind's name to its Kind.
func ParseKind(s string) (Kind, error) {
	for i, n := range kindNames {
		if i > 0 && n == s {
			return Kind(i), nil
		}
	}
	return KindNone, fmt.Errorf("unknown kind %q", s)
}

// Mode is a sensor's mode, as PortSentry 1.2 named them.
type Mode uint8

// The six modes. ModeNone is the zero value and never valid.
const (
	ModeNone Mode = iota
	ModeTCP
	ModeUDP
	ModeSTCP
	ModeSUDP
	ModeATCP
	ModeAUDP
)

// Modes lists every valid mode, in 1.2's order.
var Modes = []Mode{ModeTCP, ModeUDP, ModeSTCP, ModeSUDP, ModeATCP, ModeAUDP}

var modeNames = [...]string{"", "tcp", "udp", "stcp", "sudp", "atcp", "audp"}

func (m Mode) String() string {
	if int(m) < len(modeNames) {
		return modeNames[m]
	}
	return fmt.Sprintf("mode(%d)", m)
}

// Proto is the protocol a mode watches.
func (m Mode) Proto() Proto {
	switch m {
	case ModeTCP, ModeSTCP, ModeATCP:
		return ProtoTCP
	case ModeUDP, ModeSUDP, ModeAUDP:
		return ProtoUDP
	}
	return ProtoNone
}

// ParseMode maps a mode's name to its Mode.
func ParseMode(s string) (Mode, error) {
	for i, n := range modeNames {
		if i > 0 && n == s {
			return Mode(i), nil
		}
	}
	return ModeNone, fmt.Errorf("unknown mode %q", s)
}

// Proto is tcp or udp.
type Proto uint8

// The protocols. ProtoNone is the zero value and never valid.
const (
	ProtoNone Proto = iota
	ProtoTCP
	ProtoUDP
)

var protoNames = [...]string{"", "tcp", "udp"}

func (p Proto) String() string {
	if int(p) < len(protoNames) {
		return protoNames[p]
	}
	return fmt.Sprintf("proto(%d)", p)
}

// Upper is the protocol as 1.2's log and blocked-file lines write it.
func (p Proto) Upper() string {
	switch p {
	case ProtoTCP:
		return "TCP"
	case ProtoUDP:
		return "UDP"
	}
	return "?"
}

// ParseProto maps a protocol's name to its Proto.
func ParseProto(s string) (Proto, error) {
	switch s {
	case "tcp":
		return ProtoTCP, nil
	case "udp":
		return ProtoUDP, nil
	}
	return ProtoNone, fmt.Errorf("unknown proto %q", s)
}

// Scan is the kind of probe a sensor saw.
type Scan uint8

// The scan kinds. ScanNone is the zero value: absent.
const (
	ScanNone Scan = iota
	ScanConnect
	ScanSYN
	ScanFIN
	ScanNull
	ScanXmas
	ScanUDP
	ScanOther
)

var scanNames = [...]string{"", "connect", "syn", "fin", "null", "xmas", "udp", "other"}

func (s Scan) String() string {
	if int(s) < len(scanNames) {
		return scanNames[s]
	}
	return fmt.Sprintf("scan(%d)", s)
}

// Describe is the scan as 1.2's attackalert lines name it.
func (s Scan) Describe() string {
	switch s {
	case ScanConnect:
		return "Connect"
	case ScanSYN:
		return "TCP SYN/Normal scan"
	case ScanFIN:
		return "TCP FIN scan"
	case ScanNull:
		return "TCP NULL scan"
	case ScanXmas:
		return "TCP XMAS scan"
	case ScanUDP:
		return "UDP scan"
	}
	return "Unknown Type: TCP scan"
}

// ParseScan maps a scan's name to its Scan.
func ParseScan(s string) (Scan, error) {
	for i, n := range scanNames {
		if i > 0 && n == s {
			return Scan(i), nil
		}
	}
	return ScanNone, fmt.Errorf("unknown scan %q", s)
}

// Event is one line of any kind. Which fields are set depends on Kind; Decode
// guarantees that the fields a kind requires are present and valid.
type Event struct {
	Kind Kind
	Time time.Time // UTC

	// hit
	Sensor string
	Src    netip.Addr
	Sport  uint16
	Dst    netip.Addr
	Dport  uint16
	Flags  string // letters from FSRPAUEC, possibly empty

	// hit and decisions
	Mode  Mode
	Proto Proto
	Scan  Scan

	// decisions, unblock and result
	Target netip.Addr
	Port   uint16
	Hits   int
	Until  time.Time // zero: never ends
	Host   string    // the host that made a decision (ValidHost), "" when unnamed

	// result
	Action string
	OK     bool
	Detail string
}

// MaxHost is the longest host name a decision may carry.
const MaxHost = 64

// ValidHost reports whether s may name the host that made a decision: 1 to
// MaxHost letters, digits, _ and -. The name is also a token of NATS
// subjects and a key of the fleet's member bucket, where a dot, a space or
// a wildcard would change the meaning.
func ValidHost(s string) bool {
	if s == "" || len(s) > MaxHost {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// Addr returns the address an event is about: the source of a hit, the
// target of anything else.
func (e *Event) Addr() netip.Addr {
	if e.Kind == KindHit {
		return e.Src
	}
	return e.Target
}
