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
	kb := func(a netip.Addr, port uint16, until time.Time) event.Event {
		return event.Event{Kind: event.KindBlock, Time: r.now, Target: a, Mode: event.ModeATCP, Proto: event.ProtoTCP, Port: port, Hits: 3, Until: until}
	}
	listing := []event.Event{kb(src, 23, r.now.Add(time.Hour)), kb(netip.MustParseAddr("198.18.0.8"), 24, time.Time{}), kb(lo, 25, time.Time{})}
	fetch := func() ([]event.Event, error) { return slices.Clone(listing), nil }
	if err := r.b.Kernel(fetch); err != nil {
		t.Fatal(err)
	}
	got := r.results(t)
	want := []string{
		"nft true 198.18.0.7 atcp: added by the kernel fast path to its map for mode atcp until 2026-11-24T15:00:00Z",
		"hosts.deny true 198.18.0.7 atcp",
		"route true 198.18.0.7 atcp",
		"run true 198.18.0.7 atcp",
		"nft true 198.18.0.8 atcp: added by the kernel fast path to its map for mode atcp",
		"hosts.deny true 198.18.0.8 atcp",
		"route true 198.18.0.8 atcp",
		"run true 198.18.0.8 atcp",
		"block false 127.0.0.9 atcp: refused (made by the kernel fast path): 127.0.0.9 is a loopback address",
		"nft true 127.0.0.9 atcp: removed from set portsentry4: the gate refused it",
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
	if err := r.b.Kernel(func() ([]event.Event, error) { return nil, errors.New("netlink gone") }); err == nil {
		t.Error("a failed listing was not reported")
	}
}
