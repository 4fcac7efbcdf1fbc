package decode

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/portsentry/pipeline/ps-sniff/frag"
	"github.com/portsentry/pipeline/ps-sniff/probe"
)

// checkProbe asserts what every decoded probe must satisfy.
func checkProbe(t *testing.T, r Reason, p *probe.Probe) {
	t.Helper()
	if r != OK {
		return
	}
	switch p.Proto {
	case probe.ProtoTCP:
		if p.Scan != probe.ClassifyTCP(p.Flags) || !p.Flags.IsProbe() {
			t.Fatalf("TCP probe with flags %s classified %v", p.Flags, p.Scan)
		}
	case probe.ProtoUDP:
		if p.Scan != probe.ScanUDP {
			t.Fatalf("UDP probe classified %v", p.Scan)
		}
	default:
		t.Fatalf("probe without protocol: %+v", p)
	}
	if !p.Src.IsValid() || !p.Dst.IsValid() || p.Src.IsMulticast() {
		t.Fatalf("probe with bad addresses: %+v", p)
	}
}

// FuzzDecode feeds one packet of any link type to a fresh decoder.
func FuzzDecode(f *testing.F) {
	f.Add(byte(LinkRaw), v4{proto: 6}.packet(tcpHdr(1, 2, fS, nil)))
	f.Add(byte(LinkEthernet), ether(0x86dd, ip6(src6, dst6, 0, cat(extHdr(60, 0), extHdr(6, 1)), tcpHdr(1, 2, fF|fP|fU, nil))))
	f.Fuzz(func(t *testing.T, lt byte, data []byte) {
		d := New(frag.Limits{})
		var p probe.Probe
		r := d.Decode(LinkType(lt%4), data, t0, &p)
		checkProbe(t, r, &p)
		if d.Stats.Reasons[r] != 1 {
			t.Fatalf("reason %v not counted", r)
		}
	})
}

// FuzzDecodeStream feeds a sequence of raw IP packets, each prefixed by a
// 2-byte length and a 1-byte time step, to one decoder, so that fragments
// meet in the reassembler.
func FuzzDecodeStream(f *testing.F) {
	var seed []byte
	for _, b := range split4(1, 6, tcpHdr(1, 2, fS, nil), 8) {
		seed = appendRecord(seed, b, 0)
	}
	for _, b := range split6(2, 17, udpHdr(1, 2, make([]byte, 24)), 16) {
		seed = appendRecord(seed, b, 1)
	}
	f.Add(seed)
	f.Fuzz(func(t *testing.T, stream []byte) {
		d := New(frag.Limits{MaxDatagrams: 4, MaxFragments: 8, MaxHeader: 64})
		var p probe.Probe
		now := t0
		for n := 0; len(stream) >= 3 && n < 1000; n++ {
			size := int(binary.BigEndian.Uint16(stream))
			now = now.Add(time.Duration(stream[2]) * time.Second)
			stream = stream[3:]
			size = min(size, len(stream))
			r := d.Decode(LinkRaw, stream[:size], now, &p)
			checkProbe(t, r, &p)
			stream = stream[size:]
		}
	})
}

func appendRecord(dst, pkt []byte, step byte) []byte {
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(pkt)))
	dst = append(dst, step)
	return append(dst, pkt...)
}
