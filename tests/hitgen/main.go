// Command hitgen writes a repeatable stream of hit lines for benchmarks and
// flood tests: n hits from a number of sources drawn from the benchmarking
// ranges 198.18.0.0/15 and 2001:db8::/32 (with -cycle, IPv4 from the shared
// address space 100.64.0.0/10), to random tripwire ports, one event-time
// millisecond apart. The lines are for replay only: no packet is sent.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"time"

	"github.com/portsentry/pipeline/shared/event"
)

func main() {
	n := flag.Int("n", 1_000_000, "hits to write")
	sources := flag.Int("sources", 0, "distinct sources to draw from (0: a new source for every hit)")
	cycle := flag.Bool("cycle", false, "take the sources in turn, not at random: each of -sources appears n/sources times, and no two are one address (IPv4 ones are numbered from 100.64.0.0/10, as a /15 holds too few)")
	v6 := flag.Float64("v6", 0.25, "share of IPv6 sources")
	seed := flag.Uint64("seed", 1, "random seed")
	mode := flag.String("mode", "atcp", "sensor mode")
	flag.Parse()
	m, err := event.ParseMode(*mode)
	if err != nil {
		fmt.Fprintln(os.Stderr, "hitgen:", err)
		os.Exit(2)
	}
	rng := rand.New(rand.NewPCG(*seed, *seed^0x9e3779b97f4a7c15))
	w := bufio.NewWriterSize(os.Stdout, 1<<20)
	t := time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC)
	scan := event.ScanSYN
	if m.Proto() == event.ProtoUDP {
		scan = event.ScanUDP
	}
	e := event.Event{Kind: event.KindHit, Sensor: "ps-sniff", Mode: m, Proto: m.Proto(), Scan: scan,
		Dst: netip.MustParseAddr("198.18.0.2")}
	dst6 := netip.MustParseAddr("2001:db8::2")
	var buf []byte
	for i := 0; i < *n; i++ {
		id := uint64(i)
		switch {
		case *sources > 0 && *cycle:
			id = uint64(i % *sources)
		case *sources > 0:
			id = rng.Uint64N(uint64(*sources))
		}
		// The source is a function of its id, so -sources repeats hosts.
		h := rand.New(rand.NewPCG(id, *seed))
		if h.Float64() < *v6 {
			var a [16]byte
			copy(a[:], dst6.AsSlice()[:4])
			for j := 4; j < 16; j++ {
				a[j] = byte(h.Uint32())
			}
			e.Src, e.Dst = netip.AddrFrom16(a), dst6
		} else if *cycle {
			x := uint32(id)&0x3fffff | 100<<24 | 64<<16 // 100.64.0.0/10
			e.Src, e.Dst = netip.AddrFrom4([4]byte{byte(x >> 24), byte(x >> 16), byte(x >> 8), byte(x)}), netip.MustParseAddr("198.18.0.2")
		} else {
			x := h.Uint32() & 0x1ffff // 198.18.0.0/15
			e.Src, e.Dst = netip.AddrFrom4([4]byte{198, 18 + byte(x>>16), byte(x >> 8), byte(x)}), netip.MustParseAddr("198.18.0.2")
		}
		e.Sport = uint16(1024 + rng.IntN(60000))
		e.Dport = uint16(1 + rng.IntN(1023))
		e.Time = t.Add(time.Duration(i) * time.Millisecond)
		if e.Proto == event.ProtoTCP {
			e.Flags = "S"
		}
		buf = event.Append(buf[:0], &e)
		if _, err := w.Write(buf); err != nil {
			fmt.Fprintln(os.Stderr, "hitgen:", err)
			os.Exit(1)
		}
	}
	if err := w.Flush(); err != nil {
		fmt.Fprintln(os.Stderr, "hitgen:", err)
		os.Exit(1)
	}
}
