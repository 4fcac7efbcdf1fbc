package blocker

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/portsentry/pipeline/shared/event"
)

func TestKernel(t *testing.T) {
	r := newRig(t, func(c *Config) { c.Rate, c.Burst = 1, 1 }) // the rate limit must not hold these back
	src, lo := netip.MustParseAddr("198.18.0.7"), netip.MustParseAddr("127.0.0.9")
	listing := []KernelBlock{
		{Addr: src, Mode: event.ModeATCP, Port: 23, Hits: 3, Expires: time.Hour, Set: "fp_atcp4"},
		{Addr: netip.MustParseAddr("198.18.0.8"), Mode: event.ModeATCP, Port: 24, Hits: 3, Set: "fp_atcp4"},
		{Addr: lo, Mode: event.ModeATCP, Port: 25, Hits: 3, Set: "fp_atcp4"},
	}
	fetch := func() ([]KernelBlock, error) { return listing, nil }
	if err := r.b.Kernel(fetch); err != nil {
		t.Fatal(err)
	}
	got := r.results(t)
	want := []string{
		"block false 127.0.0.9 atcp: refused: 127.0.0.9 is a loopback address; lifted from the kernel's set fp_atcp4",
		"nft true 198.18.0.7 atcp: blocked by the kernel fast path: in set fp_atcp4 until 2026-11-24T15:00:00Z",
		"nft true 198.18.0.8 atcp: blocked by the kernel fast path: in set fp_atcp4",
		"hosts.deny true 198.18.0.7 atcp",
		"hosts.deny true 198.18.0.8 atcp",
		"route true 198.18.0.7 atcp",
		"route true 198.18.0.8 atcp",
		"run true 198.18.0.7 atcp",
		"run true 198.18.0.8 atcp",
	}
	if len(got) != len(want) {
		t.Fatalf("results %q, want %d", got, len(want))
	}
	for i := range got {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("result %d: %q, want prefix %q", i, got[i], want[i])
		}
	}
	// The refused one is lifted from the kernel; nothing is added there
	// (the kernel did it); the others' actions ran.
	if !slices.Contains(*r.c, "nft del 127.0.0.9") || slices.ContainsFunc(*r.c, func(c string) bool { return strings.HasPrefix(c, "nft add") }) {
		t.Errorf("calls %q", *r.c)
	}
	hist, err := os.ReadFile(filepath.Join(r.dir, "portsentry.history"))
	if err != nil || strings.Count(string(hist), "\n") != 2 || !strings.Contains(string(hist), "198.18.0.7 Port: 23 TCP Blocked") {
		t.Errorf("history %q, %v", hist, err)
	}

	// The next listing holds the same blocks, less the one lifted: nothing
	// is reported twice, and a decision for the host finds it blocked
	// already.
	listing = listing[:2]
	if err := r.b.Kernel(fetch); err != nil {
		t.Fatal(err)
	}
	r.feed(block("198.18.0.7", "atcp", 23, ""))
	if got := r.results(t); len(got) != 1 || !strings.HasPrefix(got[0], "block true 198.18.0.7 atcp: already blocked") {
		t.Errorf("after a second listing and a decision: %q", got)
	}
	// Its end comes: lifted everywhere, the kernel's map included.
	r.now = r.now.Add(time.Hour)
	r.b.LiftDue()
	if !slices.Contains(*r.c, "nft del 198.18.0.7") {
		t.Errorf("calls at the end %q", *r.c)
	}
	// A listing that fails says so and changes nothing.
	if err := r.b.Kernel(func() ([]KernelBlock, error) { return nil, errors.New("netlink gone") }); err == nil {
		t.Error("a failed listing was not reported")
	}
}
