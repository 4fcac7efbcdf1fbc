package frag

import (
	"encoding/binary"
	"testing"
	"time"
)

// FuzzAdd drives the reassembler with fragments described by 8-byte records:
// id, offset/8 (2 bytes), length (2 bytes), flags (bit 0 more, bit 1 IPv6),
// time step in seconds, next header. It checks the bounds hold whatever comes.
func FuzzAdd(f *testing.F) {
	f.Add([]byte{1, 0, 0, 0, 8, 1, 0, 6, 1, 0, 1, 0, 8, 0, 0, 6})
	f.Add([]byte{1, 0, 2, 0, 8, 0, 0, 6, 1, 0, 1, 0, 8, 1, 0, 6, 1, 0, 0, 0, 8, 1, 0, 6})
	f.Add([]byte{2, 0, 0, 0, 12, 3, 0, 17, 2, 0, 1, 0, 4, 2, 0, 17})
	lim := Limits{MaxDatagrams: 3, MaxFragments: 4, MaxHeader: 32}
	f.Fuzz(func(t *testing.T, recs []byte) {
		r := New(lim)
		data := make([]byte, 65536)
		now := t0
		for ; len(recs) >= 8; recs = recs[8:] {
			k := key
			k.ID = uint32(recs[0] % 4)
			k.V6 = recs[5]&2 != 0
			now = now.Add(time.Duration(recs[6]) * time.Second)
			off := int(binary.BigEndian.Uint16(recs[1:])&0x1fff) * 8
			n := int(binary.BigEndian.Uint16(recs[3:]))
			end := min(off+n, len(data))
			fr := Fragment{Key: k, Offset: off, More: recs[5]&1 != 0, Len: n, Data: data[off:end], Next: recs[7], HeaderLen: 20}
			dg, v := r.Add(&fr, now)
			if v >= numVerdicts {
				t.Fatalf("verdict %d", v)
			}
			if v == Complete && (len(dg.Payload) > dg.Len || len(dg.Payload) > lim.MaxHeader || dg.Len <= 0 || dg.Fragments > lim.MaxFragments) {
				t.Fatalf("datagram out of bounds: len %d payload %d fragments %d", dg.Len, len(dg.Payload), dg.Fragments)
			}
			if r.InProgress() > lim.MaxDatagrams {
				t.Fatalf("%d datagrams in progress", r.InProgress())
			}
		}
	})
}
