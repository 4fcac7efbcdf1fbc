package capture

import (
	"fmt"

	"golang.org/x/net/bpf"
)

// Filter says which packets the kernel passes to ps-sniff.
type Filter struct {
	TCP, UDP bool
	// TCPBelow and UDPBelow pass only destination ports below them
	// (65536: every port); the advanced modes watch no port above.
	TCPBelow, UDPBelow int
	// SkipIfindex, when not 0, drops packets received on that interface
	// (loopback, unless asked for).
	SkipIfindex int
}

// Snap lengths the filter returns: whole packets where user space may need
// data deep inside (fragments, IPv6 extension chains, which a hostile sender
// can make long), else enough for the longest IPv4 and TCP headers (60+60),
// so that a UDP flood costs little copying.
const (
	snapAll    = 1 << 18
	snapHeader = 128
)

const (
	etherIPv4  = 0x0800
	etherIPv6  = 0x86dd
	packetHost = 0 // PACKET_HOST
	tcpAckRst  = 0x14
)

// program assembles the classic BPF program for a SOCK_DGRAM packet socket,
// where offset 0 is the network header. It passes:
//   - only PACKET_HOST packets (sent to this host; not outgoing, not
//     broadcast or multicast, not for another host in promiscuous mode);
//   - TCP segments without ACK and RST, so established connections never
//     wake user space, and UDP datagrams, to watched ports;
//   - IPv4 fragments (later fragments carry no transport header) and IPv6
//     packets whose first header is an extension header, for user space to
//     walk and reassemble.
func (f Filter) program() ([]bpf.RawInstruction, error) {
	var a asm
	a.add(bpf.LoadExtension{Num: bpf.ExtType})
	a.jump(bpf.JumpNotEqual, packetHost, "drop", "")
	if f.SkipIfindex != 0 {
		a.add(bpf.LoadExtension{Num: bpf.ExtInterfaceIndex})
		a.jump(bpf.JumpEqual, uint32(f.SkipIfindex), "drop", "")
	}
	a.add(bpf.LoadExtension{Num: bpf.ExtProto})
	a.jump(bpf.JumpEqual, etherIPv4, "v4", "")
	a.jump(bpf.JumpEqual, etherIPv6, "v6", "drop")
	a.label("v4")
	f.body4(&a)
	a.label("v6")
	f.body6(&a)
	a.epilogue()
	return a.assemble()
}

func (f Filter) body4(a *asm) {
	a.add(bpf.LoadAbsolute{Off: 6, Size: 2})
	a.jump(bpf.JumpBitsSet, 0x3fff, "all", "") // MF or an offset: a fragment
	a.add(bpf.LoadAbsolute{Off: 9, Size: 1})
	a.jump(bpf.JumpEqual, 6, "tcp4", "")
	a.jump(bpf.JumpEqual, 17, "udp4", "drop")
	a.label("tcp4")
	a.add(bpf.LoadMemShift{Off: 0})
	a.add(bpf.LoadIndirect{Off: 13, Size: 1})
	f.tcpTail(a, bpf.LoadIndirect{Off: 2, Size: 2})
	a.label("udp4")
	a.add(bpf.LoadMemShift{Off: 0})
	f.udpTail(a, bpf.LoadIndirect{Off: 2, Size: 2})
}

func (f Filter) body6(a *asm) {
	a.add(bpf.LoadAbsolute{Off: 6, Size: 1})
	a.jump(bpf.JumpEqual, 6, "tcp6", "")
	a.jump(bpf.JumpEqual, 17, "udp6", "")
	// Hop-by-hop, routing, fragment, destination options.
	for _, h := range []uint32{0, 43, 44, 60} {
		a.jump(bpf.JumpEqual, h, "all", "")
	}
	a.add(bpf.RetConstant{Val: 0})
	a.label("tcp6")
	a.add(bpf.LoadAbsolute{Off: 40 + 13, Size: 1})
	f.tcpTail(a, bpf.LoadAbsolute{Off: 40 + 2, Size: 2})
	a.label("udp6")
	f.udpTail(a, bpf.LoadAbsolute{Off: 40 + 2, Size: 2})
}

// tcpTail expects the TCP flags in A; dport loads the destination port.
func (f Filter) tcpTail(a *asm, dport bpf.Instruction) {
	if !f.TCP {
		a.add(bpf.RetConstant{Val: 0})
		return
	}
	a.jump(bpf.JumpBitsSet, tcpAckRst, "drop", "")
	f.portTail(a, dport, f.TCPBelow)
}

func (f Filter) udpTail(a *asm, dport bpf.Instruction) {
	if !f.UDP {
		a.add(bpf.RetConstant{Val: 0})
		return
	}
	f.portTail(a, dport, f.UDPBelow)
}

func (f Filter) portTail(a *asm, dport bpf.Instruction, below int) {
	if below > 0 && below < 65536 {
		a.add(dport)
		a.jump(bpf.JumpGreaterOrEqual, uint32(below), "drop", "")
	}
	a.add(bpf.RetConstant{Val: snapHeader})
}

// asm is a minimal assembler with forward labels, since classic BPF jumps
// are relative skips that are easy to get wrong by hand.
type asm struct {
	ins    []bpf.Instruction
	jumps  map[int][2]string // instruction index -> true, false labels ("" = next)
	labels map[string]int
}

func (a *asm) add(i bpf.Instruction) { a.ins = append(a.ins, i) }

func (a *asm) jump(cond bpf.JumpTest, val uint32, t, f string) {
	if a.jumps == nil {
		a.jumps = map[int][2]string{}
	}
	a.jumps[len(a.ins)] = [2]string{t, f}
	a.add(bpf.JumpIf{Cond: cond, Val: val})
}

func (a *asm) label(name string) {
	if a.labels == nil {
		a.labels = map[string]int{}
	}
	a.labels[name] = len(a.ins)
}

// epilogue adds the shared exits.
func (a *asm) epilogue() {
	a.label("all")
	a.add(bpf.RetConstant{Val: snapAll})
	a.label("drop")
	a.add(bpf.RetConstant{Val: 0})
}

func (a *asm) assemble() ([]bpf.RawInstruction, error) {
	for i, lt := range a.jumps {
		j := a.ins[i].(bpf.JumpIf)
		for k, name := range lt {
			if name == "" {
				continue
			}
			to, ok := a.labels[name]
			skip := to - i - 1
			if !ok || skip < 0 || skip > 255 {
				return nil, fmt.Errorf("bpf: bad jump from %d to %q", i, name)
			}
			if k == 0 {
				j.SkipTrue = uint8(skip)
			} else {
				j.SkipFalse = uint8(skip)
			}
		}
		a.ins[i] = j
	}
	raw, err := bpf.Assemble(a.ins)
	if err != nil {
		return nil, fmt.Errorf("bpf: %w", err)
	}
	return raw, nil
}
