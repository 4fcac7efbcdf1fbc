package decode

import (
	"testing"
	"time"

	"github.com/portsentry/pipeline/ps-sniff/frag"
	"github.com/portsentry/pipeline/ps-sniff/probe"
)

// split4 cuts an IPv4 transport payload into fragments of size bytes (a
// multiple of 8), the way nmap -f and fragroute do.
func split4(id uint16, proto byte, payload []byte, size int) [][]byte {
	var out [][]byte
	for off := 0; off < len(payload); off += size {
		end := min(off+size, len(payload))
		h := v4{proto: proto, id: id, offset: off, more: end < len(payload)}
		out = append(out, h.packet(payload[off:end]))
	}
	return out
}

// split6 does the same for IPv6, with the fragment header right after the
// fixed header.
func split6(id uint32, next byte, payload []byte, size int) [][]byte {
	var out [][]byte
	for off := 0; off < len(payload); off += size {
		end := min(off+size, len(payload))
		out = append(out, ip6(src6, dst6, 44, fragHdr(next, off, end < len(payload), id), payload[off:end]))
	}
	return out
}

func TestDecodeFragments(t *testing.T) {
	syn := tcpHdr(40000, 23, fS, []byte{2, 4, 5, 0xb4}) // 24 bytes
	xmas := tcpHdr(40000, 25, fF|fP|fU, nil)
	udp := udpHdr(53, 137, make([]byte, 30))
	rev := func(in [][]byte) [][]byte {
		out := make([][]byte, len(in))
		for i := range in {
			out[len(in)-1-i] = in[i]
		}
		return out
	}
	// RFC 1858 overlap: the last piece starts again inside the header.
	overlap := split4(5, 6, syn, 8)
	overlap[2] = v4{proto: 6, id: 5, offset: 8}.packet(syn[8:])
	tests := []struct {
		name  string
		pkts  [][]byte
		last  Reason
		scan  probe.Scan
		dport uint16
	}{
		{"v4 syn 8-byte fragments", split4(1, 6, syn, 8), OK, probe.ScanSYN, 23},
		{"v4 xmas 8-byte fragments reversed", rev(split4(2, 6, xmas, 8)), OK, probe.ScanXmas, 25},
		{"v4 udp fragments", split4(3, 17, udp, 16), OK, probe.ScanUDP, 137},
		{"v4 overlap", overlap, FragOverlap, 0, 0},
		{"v6 syn fragments", split6(9, 6, cat(syn, make([]byte, 8)), 24), OK, probe.ScanSYN, 23},
		{"v6 udp fragments reversed", rev(split6(10, 17, udp, 16)), OK, probe.ScanUDP, 137},
		{"v6 dest opts inside fragmentable part", split6(11, 60, cat(extHdr(6, 0), syn, make([]byte, 16)), 32), OK, probe.ScanSYN, 23},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := New(frag.Limits{})
			var p probe.Probe
			var r Reason
			for i, b := range tt.pkts {
				r = d.Decode(LinkRaw, b, t0, &p)
				if i < len(tt.pkts)-1 && r != FragPending && r != FragOverlap {
					t.Fatalf("fragment %d: %v", i, r)
				}
			}
			if r != tt.last {
				t.Fatalf("last fragment: %v, want %v", r, tt.last)
			}
			if r != OK {
				return
			}
			if !p.Fragmented || p.Scan != tt.scan || p.Dport != tt.dport || p.Sport == 0 {
				t.Fatalf("probe %+v", p)
			}
			if d.Stats.Reassembled != 1 {
				t.Fatalf("reassembled %d", d.Stats.Reassembled)
			}
		})
	}
}

func TestDecodeFragmentOverlapCounted(t *testing.T) {
	d := New(frag.Limits{})
	var p probe.Probe
	syn := tcpHdr(1, 2, fS, nil)
	d.Decode(LinkRaw, v4{proto: 6, id: 1, more: true}.packet(syn[:16]), t0, &p)
	if r := d.Decode(LinkRaw, v4{proto: 6, id: 1, offset: 8}.packet(syn[8:]), t0, &p); r != FragOverlap {
		t.Fatalf("got %v", r)
	}
	// The datagram is gone: the missing piece alone completes nothing.
	if r := d.Decode(LinkRaw, v4{proto: 6, id: 1, offset: 16}.packet(syn[16:]), t0, &p); r != FragPending {
		t.Fatalf("got %v", r)
	}
	if d.Stats.Reasons[FragOverlap] != 1 {
		t.Fatal("overlap not counted")
	}
}

func TestDecodeFragmentTimeout(t *testing.T) {
	d := New(frag.Limits{})
	var p probe.Probe
	fs := split4(1, 6, tcpHdr(1, 2, fS, nil), 8)
	d.Decode(LinkRaw, fs[0], t0, &p)
	d.Decode(LinkRaw, fs[1], t0, &p)
	d.Sweep(t0.Add(31 * time.Second))
	if r := d.Decode(LinkRaw, fs[2], t0.Add(31*time.Second), &p); r != FragPending {
		t.Fatalf("got %v after timeout", r)
	}
	if d.Stats.FragExpired != 1 {
		t.Fatalf("expired %d", d.Stats.FragExpired)
	}
}

func TestDecodeAllocs(t *testing.T) {
	syn4 := pkt{LinkEthernet, ether(0x0800, v4{proto: 6}.packet(tcpHdr(1, 2, fS, []byte{2, 4, 5, 0xb4, 1, 1, 4, 2})))}
	tests := []struct {
		name string
		pkts []pkt
	}{
		{"syn4 ether", []pkt{syn4}},
		{"syn6 with dest opts", []pkt{raw(ip6(src6, dst6, 60, extHdr(6, 1), tcpHdr(1, 2, fS, nil)))}},
		{"udp4 sll", []pkt{{LinkSLL, sll(0x0800, v4{proto: 17}.packet(udpHdr(1, 2, nil)))}}},
		{"ack4", []pkt{raw(v4{proto: 6}.packet(tcpHdr(1, 2, fA, nil)))}},
		{"malformed", []pkt{raw(v4{proto: 6}.packet(nil)[:10]), raw(ip6(src6, dst6, 60, longChain(20), nil))}},
		{"v4 fragments", func() []pkt {
			var ps []pkt
			for _, b := range split4(1, 6, tcpHdr(1, 2, fS, nil), 8) {
				ps = append(ps, raw(b))
			}
			return ps
		}()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := New(frag.Limits{})
			var p probe.Probe
			for _, x := range tt.pkts { // warm up: the reassembler allocates once
				d.Decode(x.lt, x.data, t0, &p)
			}
			allocs := testing.AllocsPerRun(500, func() {
				for _, x := range tt.pkts {
					d.Decode(x.lt, x.data, t0, &p)
				}
			})
			if allocs != 0 {
				t.Fatalf("%v allocations per run", allocs)
			}
		})
	}
}

func BenchmarkDecode(b *testing.B) {
	cases := []struct {
		name string
		in   pkt
	}{
		{"syn4-ether", pkt{LinkEthernet, ether(0x0800, v4{proto: 6}.packet(tcpHdr(41234, 21, fS, []byte{2, 4, 5, 0xb4, 1, 1, 4, 2})))}},
		{"syn6-raw", raw(ip6(src6, dst6, 6, nil, tcpHdr(41234, 21, fS, nil)))},
		{"udp4-raw", raw(v4{proto: 17}.packet(udpHdr(41234, 161, make([]byte, 32))))},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			d := New(frag.Limits{})
			var p probe.Probe
			b.ReportAllocs()
			b.SetBytes(int64(len(c.in.data)))
			for b.Loop() {
				if d.Decode(c.in.lt, c.in.data, t0, &p) != OK {
					b.Fatal("not a probe")
				}
			}
		})
	}
	b.Run("syn4-8byte-fragments", func(b *testing.B) {
		d := New(frag.Limits{})
		var p probe.Probe
		fs := split4(1, 6, tcpHdr(41234, 21, fS, nil), 8)
		b.ReportAllocs()
		for b.Loop() {
			for _, f := range fs {
				d.Decode(LinkRaw, f, t0, &p)
			}
			if !p.Fragmented {
				b.Fatal("not reassembled")
			}
		}
	})
}
