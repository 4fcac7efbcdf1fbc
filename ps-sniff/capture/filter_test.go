package capture

import (
	"net"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"golang.org/x/net/bpf"
)

// The kernel-only loads (packet type, interface, protocol) cannot run in
// x/net/bpf's VM, so the tests run each family's body on its own, exactly
// as program() lays it out after the protocol dispatch.
func vm(t *testing.T, f Filter, v6 bool) *bpf.VM {
	t.Helper()
	var a asm
	if v6 {
		f.body6(&a)
	} else {
		f.body4(&a)
	}
	a.epilogue()
	raw, err := a.assemble()
	if err != nil {
		t.Fatal(err)
	}
	ins := make([]bpf.Instruction, len(raw))
	for i, r := range raw {
		ins[i] = r.Disassemble()
	}
	m, err := bpf.NewVM(ins)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func serialize(t *testing.T, ls ...gopacket.SerializableLayer) []byte {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true}, ls...); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestFilterBodies(t *testing.T) {
	ip4 := func(proto layers.IPProtocol, flags layers.IPv4Flag, frag uint16, ihl uint8) *layers.IPv4 {
		ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: proto, Flags: flags, FragOffset: frag,
			SrcIP: net.IP{198, 18, 0, 1}, DstIP: net.IP{198, 18, 0, 2}}
		if ihl > 5 {
			ip.Options = []layers.IPv4Option{{OptionType: 148, OptionLength: 4, OptionData: []byte{0, 0}}}
		}
		return ip
	}
	ip6 := func(next layers.IPProtocol) *layers.IPv6 {
		return &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: next,
			SrcIP: net.ParseIP("2001:db8::1"), DstIP: net.ParseIP("2001:db8::2")}
	}
	tcp := func(dport uint16, syn, ack, rst bool) *layers.TCP {
		return &layers.TCP{SrcPort: 40000, DstPort: layers.TCPPort(dport), SYN: syn, ACK: ack, RST: rst, DataOffset: 5}
	}
	udp := func(dport uint16) *layers.UDP { return &layers.UDP{SrcPort: 40000, DstPort: layers.UDPPort(dport)} }
	both := Filter{TCP: true, UDP: true, TCPBelow: 1024, UDPBelow: 65536}
	tests := []struct {
		name string
		f    Filter
		v6   bool
		pkt  []byte
		want int
	}{
		{"syn4", both, false, serialize(t, ip4(6, 0, 0, 5), tcp(21, true, false, false)), snapHeader},
		{"syn4 with ip options", both, false, serialize(t, ip4(6, 0, 0, 6), tcp(21, true, false, false)), snapHeader},
		{"null4", both, false, serialize(t, ip4(6, 0, 0, 5), tcp(21, false, false, false)), snapHeader},
		{"ack4", both, false, serialize(t, ip4(6, 0, 0, 5), tcp(21, false, true, false)), 0},
		{"syn-ack4", both, false, serialize(t, ip4(6, 0, 0, 5), tcp(21, true, true, false)), 0},
		{"rst4", both, false, serialize(t, ip4(6, 0, 0, 5), tcp(21, false, false, true)), 0},
		{"syn4 above advanced ports", both, false, serialize(t, ip4(6, 0, 0, 5), tcp(1024, true, false, false)), 0},
		{"syn4 tcp off", Filter{UDP: true}, false, serialize(t, ip4(6, 0, 0, 5), tcp(21, true, false, false)), 0},
		{"udp4", both, false, serialize(t, ip4(17, 0, 0, 5), udp(60000)), snapHeader},
		{"udp4 udp off", Filter{TCP: true}, false, serialize(t, ip4(17, 0, 0, 5), udp(53)), 0},
		{"udp4 above limit", Filter{UDP: true, UDPBelow: 1024}, false, serialize(t, ip4(17, 0, 0, 5), udp(1024)), 0},
		{"icmp4", both, false, serialize(t, ip4(1, 0, 0, 5), gopacket.Payload(make([]byte, 8))), 0},
		{"first fragment", both, false, serialize(t, ip4(6, layers.IPv4MoreFragments, 0, 5), gopacket.Payload(make([]byte, 8))), snapAll},
		{"later fragment", both, false, serialize(t, ip4(6, 0, 1, 5), gopacket.Payload(make([]byte, 8))), snapAll},
		{"icmp fragment passes too", both, false, serialize(t, ip4(1, 0, 1, 5), gopacket.Payload(make([]byte, 8))), snapAll},
		{"syn6", both, true, serialize(t, ip6(6), tcp(22, true, false, false)), snapHeader},
		{"ack6", both, true, serialize(t, ip6(6), tcp(22, false, true, false)), 0},
		{"syn6 above limit", both, true, serialize(t, ip6(6), tcp(4000, true, false, false)), 0},
		{"udp6", both, true, serialize(t, ip6(17), udp(53)), snapHeader},
		{"icmp6", both, true, serialize(t, ip6(58), gopacket.Payload(make([]byte, 8))), 0},
		{"fragment header6", both, true, serialize(t, ip6(44), gopacket.Payload(make([]byte, 16))), snapAll},
		{"dest opts6", both, true, serialize(t, ip6(60), gopacket.Payload(make([]byte, 16))), snapAll},
		{"hop-by-hop6", both, true, serialize(t, ip6(0), gopacket.Payload(make([]byte, 16))), snapAll},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := vm(t, tt.f, tt.v6).Run(tt.pkt)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Fatalf("filter returns %d, want %d", got, tt.want)
			}
		})
	}
}

func TestProgramAssembles(t *testing.T) {
	for _, f := range []Filter{
		{TCP: true, UDP: true},
		{TCP: true, TCPBelow: 1024, SkipIfindex: 1},
		{UDP: true, UDPBelow: 1},
	} {
		if _, err := f.program(); err != nil {
			t.Errorf("%+v: %v", f, err)
		}
	}
}
