package main

import (
	"bytes"
	"io"
	"net/netip"
	"os/exec"
	"testing"
	"time"

	"github.com/portsentry/pipeline/shared/alert"
	"github.com/portsentry/pipeline/shared/guard"
	"github.com/portsentry/pipeline/shared/judge"
	"github.com/portsentry/pipeline/shared/transport"
)

func genHits(tb testing.TB, args ...string) []byte {
	cmd := exec.Command("go", append([]string{"run", "../tests/hitgen"}, args...)...)
	out, err := cmd.Output()
	if err != nil {
		tb.Fatalf("hitgen: %v", err)
	}
	return out
}

func newStage(out io.Writer, trigger, maxHosts int) *judgeStage {
	j := &judgeStage{
		log:    alert.NewWriter("ps-judge", io.Discard),
		guard:  guard.NewKeeper("/nonexistent", []netip.Prefix{netip.MustParsePrefix("198.18.0.2/32")}, func(string, ...any) {}),
		out:    transport.NewWriter(out),
		model:  judge.NewTrigger(judge.Settings{ScanTrigger: trigger, BlockTCP: 1, BlockUDP: 1, IdleTimeout: 6 * time.Hour, MaxHosts: maxHosts}),
		failed: make(chan error, 1),
	}
	return j.ready()
}

// BenchmarkReplay replays 100,000 hits from 1,000 scanners through the
// judging stage, decoding and guard included.
func BenchmarkReplay(b *testing.B) {
	benchReplay(b, 2, 100000, "-n", "100000", "-sources", "1000")
}

// BenchmarkReplaySpoofed is make bench's spoofed workload (2,000,000 hits
// from 1,000,000 sources, each twice, half IPv6, STATE_MAX_HOSTS 100,000)
// at a tenth of its size, SCAN_TRIGGER=0: every hit is a host the table no
// longer holds, a decision to encode and a host to forget.
func BenchmarkReplaySpoofed(b *testing.B) {
	benchReplay(b, 0, 10000, "-n", "200000", "-sources", "100000", "-cycle", "-v6", "0.5")
}

// benchReplay replays the hits hitgen makes with args, whole, each op
// from a fresh stage, and reports hits/s and ns/hit.
func benchReplay(b *testing.B, trigger, maxHosts int, args ...string) {
	data := genHits(b, args...)
	n := bytes.Count(data, []byte("\n"))
	b.SetBytes(int64(len(data)))
	hits := 0
	for b.Loop() {
		j := newStage(io.Discard, trigger, maxHosts)
		if err := transport.Read(bytes.NewReader(data), "bench", j); err != nil {
			b.Fatal(err)
		}
		hits += n
	}
	b.ReportMetric(float64(hits)/b.Elapsed().Seconds(), "hits/s")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(hits), "ns/hit")
}
