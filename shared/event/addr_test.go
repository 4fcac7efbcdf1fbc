package event

import (
	"bytes"
	"math/rand/v2"
	"net/netip"
	"testing"
)

// FuzzScanAddr holds scanAddr to netip.ParseAddr: the same texts, the same
// addresses (unmapped), and no zone ever; and readAddr to scanAddr, on the
// same text closed by a quote and followed by more.
func FuzzScanAddr(f *testing.F) {
	for _, s := range []string{"198.18.0.1", "0.0.0.0", "255.255.255.255", "01.2.3.4", "1.2.3", "1.2.3.4.5", "1..2.3", "256.1.1.1",
		"::", "::1", "2001:db8::2", "2001:db8:853b:797e:2e9b:79db:553:9b95", "2001:DB8::A", "::ffff:198.18.0.1", "::198.18.0.1",
		"1:2:3:4:5:6:1.2.3.4", "1:2:3:4:5:6:7:1.2.3.4", "1::2::3", "1:2:3:4:5:6:7:8:9", "1:2:3:4:5:6:7::", "::1:2:3:4:5:6:7:8",
		"12345::", "fe80::1%eth0", "%eth0", ":", ":::", "1:", ":1", "", "1.2.3.4%x", "0:0:0:0:0:ffff:c612:1", "::ffff:1.2.3",
		"1:0:0:2:0:0:0:3", "1::2:0:0:0:3", "1:0:0:2::3", "1::2:3:4:5:6:7", "1:0:2:3:4:5:6:7", "2001:db8:0::1", "2001:db8::01", "::1:0:0:0:0:0", "1:2:3:4:5:6:7:0"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, s []byte) {
		got, canonical, ok := scanAddr(s)
		if bytes.IndexByte(s, '"') < 0 {
			quoted := append(append(bytes.Clone(s), '"'), s...)
			if a, c, n, qok := readAddr(quoted); qok != ok || ok && (a != got || c != canonical || n != len(s)) {
				t.Fatalf("readAddr(%q) = %v, %v, %d, %v; scanAddr: %v, %v, %v", quoted, a, c, n, qok, got, canonical, ok)
			}
		}
		want, err := netip.ParseAddr(string(s))
		if bytes.IndexByte(s, '%') >= 0 {
			if ok {
				t.Fatalf("scanAddr(%q) took a zone: %v", s, got)
			}
			return
		}
		if ok != (err == nil) || ok && got != want.Unmap() {
			t.Fatalf("scanAddr(%q) = %v, %v; netip: %v, %v", s, got, ok, want, err)
		}
		if ok && canonical != (string(s) == got.String()) {
			t.Fatalf("scanAddr(%q) = %v, its own form %v", s, got, canonical)
		}
	})
}

// BenchmarkScanAddr reads spoofed sources as the flood workload has them
// (random IPv6 addresses, each written in its own form), against
// netip.ParseAddr. They vary, as a flood's do, so that no branch predictor
// learns one address.
func BenchmarkScanAddr(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	texts := make([][]byte, 4096)
	for i := range texts {
		var a [16]byte
		copy(a[:], []byte{0x20, 0x01, 0x0d, 0xb8})
		for j := 4; j < 16; j++ {
			a[j] = byte(rng.Uint32())
		}
		texts[i] = []byte(netip.AddrFrom16(a).String())
	}
	b.Run("scanAddr", func(b *testing.B) {
		i := 0
		for b.Loop() {
			if _, _, ok := scanAddr(texts[i%len(texts)]); !ok {
				b.Fatal("refused")
			}
			i++
		}
	})
	b.Run("netip", func(b *testing.B) {
		i := 0
		for b.Loop() {
			if _, err := netip.ParseAddr(string(texts[i%len(texts)])); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
}
