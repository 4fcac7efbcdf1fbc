package blocker

import (
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/portsentry/pipeline/ps-block/hostsdeny"
	"github.com/portsentry/pipeline/ps-block/nft"
	"github.com/portsentry/pipeline/shared/netlab"
	"github.com/portsentry/pipeline/shared/transport"
)

func decisionLines(n int) [][]byte {
	lines := make([][]byte, n)
	for i := range lines {
		var a netip.Addr
		if i%2 == 0 {
			a = netip.AddrFrom4([4]byte{198, 18 + byte(i>>16), byte(i >> 8), byte(i)})
		} else {
			a = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 13: byte(i >> 16), 14: byte(i >> 8), 15: byte(i)})
		}
		lines[i] = []byte(block(a.String(), "atcp", 21, "2099-01-01T00:00:00Z"))
	}
	return lines
}

// feedAll is what the transport does with a burst: lines, then Idle.
func feedAll(b *Blocker, lines [][]byte) {
	for i, l := range lines {
		b.Line("bench", i+1, l, nil)
	}
	b.Idle()
}

// BenchmarkEndToEndNFT100k: 100,000 block decision lines, decoded, checked,
// added to the kernel sets (in a namespace of its own) and recorded in the
// blocked and history files, with one result line each.
func BenchmarkEndToEndNFT100k(b *testing.B) {
	benchNFT(b, "e2e", 100_000, feedAll)
}

// BenchmarkFleetBursts10k: what a fleet member does in make bench's fleet
// figures: 10,000 decisions from the fleet (FromFleet, through the gate),
// in bursts of 100 each followed by Idle, into the kernel sets and the
// blocked and history files.
func BenchmarkFleetBursts10k(b *testing.B) {
	benchNFT(b, "fleetb", 10_000, func(bl *Blocker, lines [][]byte) {
		h := bl.FromFleet()
		for i, l := range lines {
			h.Line("NATS bench", i+1, l, nil)
			if i%100 == 99 {
				h.Idle()
			}
		}
	})
}

// benchNFT times feed with n decision lines into a new Blocker whose nft
// action has a table of its own in a namespace of its own, and checks that
// every line became a block.
func benchNFT(b *testing.B, tag string, n int, feed func(*Blocker, [][]byte)) {
	ns := netlab.NewNS(b, tag)
	conn, err := nft.Open(ns.Fd)
	if err != nil {
		netlab.SkipOrFail(b, "nftables netlink: %v", err)
	}
	defer conn.CloseLasting()
	lines := decisionLines(n)
	for range b.N {
		b.StopTimer()
		dir := b.TempDir()
		a := nft.New(conn, nft.Config{Table: fmt.Sprintf("bench%d", time.Now().UnixNano())}, time.Now)
		bl := New(Config{NFT: a, BlockedFile: filepath.Join(dir, "blocked"), HistoryFile: filepath.Join(dir, "history"),
			Log: nopLog{}, Out: transport.NewWriter(io.Discard)})
		bl.Restore()
		b.StartTimer()
		feed(bl, lines)
		b.StopTimer()
		if got := len(bl.state); got != len(lines) {
			b.Fatalf("%d blocks applied, want %d", got, len(lines))
		}
	}
}

// BenchmarkEndToEndHostsDeny10k: 10,000 block decision lines into a
// hosts.deny in a temporary directory.
func BenchmarkEndToEndHostsDeny10k(b *testing.B) {
	lines := decisionLines(10_000)
	for range b.N {
		b.StopTimer()
		hd, _ := emptyHostsDeny(b)
		bl := New(Config{HostsDeny: hd, Log: nopLog{}, Out: transport.NewWriter(io.Discard)})
		bl.Restore()
		b.StartTimer()
		feedAll(bl, lines)
		b.StopTimer()
		if n := len(bl.state); n != len(lines) {
			b.Fatalf("%d blocks applied, want %d", n, len(lines))
		}
	}
}

// emptyHostsDeny makes an empty hosts.deny in a new temporary directory:
// its action, and the directory.
func emptyHostsDeny(b *testing.B) (*hostsdeny.File, string) {
	b.Helper()
	tmpl, err := hostsdeny.NewTemplate("ALL: $TARGET$")
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	p := filepath.Join(dir, "hosts.deny")
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		b.Fatal(err)
	}
	return hostsdeny.New(p, filepath.Join(dir, "blocked"+hostsdeny.RecordSuffix), tmpl), dir
}

// BenchmarkLift2000: 2,000 blocks in hosts.deny and BLOCKED_FILE that end
// at one moment, lifted by one LiftDue.
func BenchmarkLift2000(b *testing.B) {
	lines := decisionLines(2000)
	for range b.N {
		b.StopTimer()
		hd, dir := emptyHostsDeny(b)
		now := time.Date(2098, 1, 1, 0, 0, 0, 0, time.UTC)
		bl := New(Config{HostsDeny: hd, BlockedFile: filepath.Join(dir, "blocked"),
			Now: func() time.Time { return now }, Log: nopLog{}, Out: transport.NewWriter(io.Discard)})
		bl.Restore()
		feedAll(bl, lines)
		now = now.AddDate(2, 0, 0) // past the blocks' end in 2099
		b.StartTimer()
		bl.LiftDue()
		b.StopTimer()
		if n := len(bl.state); n != 0 {
			b.Fatalf("%d blocks left after their end", n)
		}
	}
}
