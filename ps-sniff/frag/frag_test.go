package frag

import (
	"bytes"
	"net/netip"
	"testing"
	"time"
)

var (
	t0  = time.Date(2026, 11, 24, 14, 0, 0, 0, time.UTC)
	key = Key{Src: netip.MustParseAddr("198.18.0.1"), Dst: netip.MustParseAddr("198.18.0.2"), ID: 7, Proto: 6}
	k6  = Key{Src: netip.MustParseAddr("2001:db8::1"), Dst: netip.MustParseAddr("2001:db8::2"), ID: 7, V6: true}
)

// payload is the datagram the fragments below cut up; byte i is i.
func payload(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i)
	}
	return b
}

type fr struct {
	off, n int
	more   bool
	at     time.Duration // after t0
	want   Verdict
}

func run(t *testing.T, r *Reassembler, k Key, frs []fr) Datagram {
	t.Helper()
	data := payload(70000)
	var dg Datagram
	for i, f := range frs {
		frag := Fragment{Key: k, Offset: f.off, More: f.more, Len: f.n, Data: data[f.off : f.off+f.n], Next: 6, HeaderLen: 20}
		got, v := r.Add(&frag, t0.Add(f.at))
		if v != f.want {
			t.Fatalf("fragment %d [%d,%d) more=%v: verdict %v, want %v", i, f.off, f.off+f.n, f.more, v, f.want)
		}
		if v == Complete {
			dg = got
		}
	}
	return dg
}

func TestSequences(t *testing.T) {
	tests := []struct {
		name    string
		v6      bool
		frs     []fr
		wantLen int
	}{
		{"in order, 8-byte pieces (nmap -f)", false, []fr{{0, 8, true, 0, Pending}, {8, 8, true, 0, Pending}, {16, 4, false, 0, Complete}}, 20},
		{"reverse order", false, []fr{{16, 4, false, 0, Pending}, {8, 8, true, 0, Pending}, {0, 8, true, 0, Complete}}, 20},
		{"middle last", false, []fr{{0, 8, true, 0, Pending}, {16, 8, false, 0, Pending}, {8, 8, true, 0, Complete}}, 24},
		{"duplicate kept", false, []fr{{0, 8, true, 0, Pending}, {0, 8, true, 0, Duplicate}, {8, 8, false, 0, Complete}}, 16},
		{"duplicate inside earlier run", false, []fr{{0, 16, true, 0, Pending}, {32, 8, false, 0, Pending}, {8, 8, true, 0, Duplicate}, {16, 16, true, 0, Complete}}, 40},
		{"overlap at tail drops datagram", false, []fr{{0, 16, true, 0, Pending}, {8, 16, false, 0, Overlap}, {16, 8, false, 0, Pending}}, 0},
		{"overlap RFC 1858 offset 1", false, []fr{{0, 24, true, 0, Pending}, {8, 8, true, 0, Duplicate}, {16, 16, false, 0, Overlap}}, 0},
		{"overlap spanning two runs", false, []fr{{16, 8, true, 0, Pending}, {32, 8, false, 0, Pending}, {0, 8, true, 0, Pending}, {8, 16, true, 0, Overlap}}, 0},
		{"second last disagrees", false, []fr{{8, 8, false, 0, Pending}, {8, 16, false, 0, Corrupt}}, 0},
		{"data beyond last", false, []fr{{8, 8, false, 0, Pending}, {16, 8, true, 0, Corrupt}}, 0},
		{"last before data", false, []fr{{16, 8, true, 0, Pending}, {0, 8, false, 0, Corrupt}}, 0},
		{"empty", false, []fr{{0, 8, true, 0, Pending}, {8, 0, false, 0, Empty}}, 0},
		{"v4 unaligned non-last trimmed", false, []fr{{0, 12, true, 0, Pending}, {8, 4, false, 0, Complete}}, 12},
		{"v6 unaligned non-last dropped alone", true, []fr{{0, 12, true, 0, Misaligned}, {0, 8, true, 0, Pending}, {8, 4, false, 0, Complete}}, 12},
		{"v6 end past 65535", true, []fr{{65528, 16, false, 0, Oversize}}, 0},
		{"v4 oversize at reassembly", false, []fr{{0, 65520, true, 0, Pending}, {65520, 8, false, 0, Oversize}}, 0},
		{"timeout restarts", false, []fr{{0, 8, true, 0, Pending}, {8, 8, false, 31 * time.Second, Pending}, {0, 8, true, 31 * time.Second, Complete}}, 16},
		{"v6 lives 60s", true, []fr{{0, 8, true, 0, Pending}, {8, 8, false, 45 * time.Second, Complete}}, 16},
		{"within timeout", false, []fr{{0, 8, true, 0, Pending}, {8, 8, false, 29 * time.Second, Complete}}, 16},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := New(Limits{})
			k := key
			if tt.v6 {
				k = k6
			}
			dg := run(t, r, k, tt.frs)
			if tt.wantLen == 0 {
				return
			}
			if dg.Len != tt.wantLen || dg.Next != 6 || dg.Key != k {
				t.Fatalf("datagram len %d next %d key %v, want len %d", dg.Len, dg.Next, dg.Key, tt.wantLen)
			}
			if !bytes.Equal(dg.Payload, payload(tt.wantLen)) {
				t.Fatalf("payload %v", dg.Payload)
			}
			if r.InProgress() != 0 {
				t.Fatalf("%d datagrams left in progress", r.InProgress())
			}
		})
	}
}

func TestLimits(t *testing.T) {
	lim := Limits{MaxDatagrams: 2, MaxFragments: 3, MaxHeader: 16}
	t.Run("table full, then freed by time", func(t *testing.T) {
		r := New(lim)
		for id := range uint32(2) {
			k := key
			k.ID = id
			run(t, r, k, []fr{{0, 8, true, 0, Pending}})
		}
		k := key
		k.ID = 9
		run(t, r, k, []fr{{0, 8, true, time.Second, TableFull}, {0, 8, true, 31 * time.Second, Pending}})
		if r.Expired != 2 {
			t.Fatalf("expired %d, want 2", r.Expired)
		}
	})
	t.Run("too many fragments", func(t *testing.T) {
		r := New(lim)
		run(t, r, key, []fr{{0, 8, true, 0, Pending}, {8, 8, true, 0, Pending}, {16, 8, true, 0, Pending}, {24, 8, false, 0, TooMany}})
		if r.InProgress() != 0 {
			t.Fatal("datagram kept")
		}
	})
	t.Run("too many runs", func(t *testing.T) {
		r := New(Limits{MaxDatagrams: 1, MaxFragments: 2, MaxHeader: 16})
		run(t, r, key, []fr{{0, 8, true, 0, Pending}, {16, 8, true, 0, Pending}, {32, 8, false, 0, TooMany}})
	})
	t.Run("header prefix only", func(t *testing.T) {
		r := New(lim)
		dg := run(t, r, key, []fr{{0, 8, true, 0, Pending}, {8, 32, false, 0, Complete}})
		if dg.Len != 40 || !bytes.Equal(dg.Payload, payload(16)) {
			t.Fatalf("len %d payload %v", dg.Len, dg.Payload)
		}
	})
	t.Run("sweep", func(t *testing.T) {
		r := New(lim)
		run(t, r, key, []fr{{0, 8, true, 0, Pending}})
		r.Sweep(t0.Add(29 * time.Second))
		if r.InProgress() != 1 {
			t.Fatal("swept too early")
		}
		r.Sweep(t0.Add(30 * time.Second))
		if r.InProgress() != 0 || r.Expired != 1 {
			t.Fatal("not swept")
		}
	})
}

func TestCaptureCut(t *testing.T) {
	r := New(Limits{})
	data := payload(40)
	f := Fragment{Key: key, Offset: 0, More: true, Len: 16, Data: data[:10], Next: 6}
	if _, v := r.Add(&f, t0); v != Pending {
		t.Fatal(v)
	}
	f = Fragment{Key: key, Offset: 16, Len: 24, Data: data[16:], Next: 6}
	dg, v := r.Add(&f, t0)
	if v != Complete || dg.Len != 40 || len(dg.Payload) != 10 {
		t.Fatalf("%v len %d payload %d", v, dg.Len, len(dg.Payload))
	}
}

func TestFragmentAllocs(t *testing.T) {
	r := New(Limits{})
	data := payload(24)
	a := Fragment{Key: key, Offset: 0, More: true, Len: 16, Data: data[:16], Next: 6}
	b := Fragment{Key: key, Offset: 16, Len: 8, Data: data[16:], Next: 6}
	r.Add(&a, t0)
	r.Add(&b, t0)
	allocs := testing.AllocsPerRun(1000, func() {
		r.Add(&a, t0)
		if _, v := r.Add(&b, t0); v != Complete {
			t.Fatal(v)
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per datagram", allocs)
	}
}

func TestVerdictNames(t *testing.T) {
	for v := range numVerdicts + 1 {
		if v.String() == "" {
			t.Errorf("verdict %d has no name", v)
		}
	}
}
