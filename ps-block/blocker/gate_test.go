package blocker

import (
	"bytes"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/portsentry/pipeline/ps-block/gate"
	"github.com/portsentry/pipeline/shared/event"
)

// TestRestoreAsksGate: a block restored at start passes the gate; one the
// guard refuses now (added to the ignore file since) is lifted, everywhere,
// and the others are put back.
func TestRestoreAsksGate(t *testing.T) {
	r := newRig(t, nil)
	r.feed(block("198.18.0.1", "atcp", 21, ""), block("198.18.0.2", "atcp", 22, ""), block("198.18.0.2", "tcp", 23, ""))
	r.results(t)
	ignored := netip.MustParseAddr("198.18.0.2")
	r2 := r.restart(func(c *Config) {
		c.Gate = gate.New(func(a netip.Addr) string { return map[netip.Addr]string{ignored: "in the ignore file"}[a] })
	})
	got := slices.Clone(*r2.c)
	slices.Sort(got)
	want := []string{"exec unroute 198.18.0.2", "hosts.deny del 198.18.0.2", "nft add 198.18.0.1", "nft del 198.18.0.2"}
	if !slices.Equal(got, want) {
		t.Errorf("restore calls %q, want %q", got, want)
	}
	res := strings.Join(r2.results(t), "\n")
	if !strings.Contains(res, "refused by the guard at start: in the ignore file") {
		t.Errorf("results do not say why the block was lifted:\n%s", res)
	}
	for _, m := range []string{"atcp", "tcp"} {
		b, _ := os.ReadFile(filepath.Join(r.dir, "portsentry.blocked."+m))
		if bytes.Contains(b, []byte("198.18.0.2")) {
			t.Errorf("blocked file %s keeps the refused host: %q", m, b)
		}
	}
	// Not blocked any more: a new decision for it is refused, not "already blocked".
	r2.feed(block("198.18.0.2", "atcp", 22, ""))
	if res := r2.results(t); len(res) != 1 || !strings.HasPrefix(res[0], "block false 198.18.0.2 atcp: refused: 198.18.0.2 is in the ignore file") {
		t.Errorf("after the lift: %q", res)
	}
	if !r2.b.cfg.HostsDeny.Has(netip.MustParseAddr("198.18.0.1")) {
		t.Error("the admitted block was not kept")
	}
}

// TestReleasedAsksGate: a decision held back by the rate limit asks the
// guard again when it is carried out, not only when it came.
func TestReleasedAsksGate(t *testing.T) {
	r := newRig(t, func(c *Config) { c.Rate, c.Burst = 1, 1; c.Route, c.RunCmd = nil, nil })
	r.feed(block("198.18.0.1", "atcp", 21, ""), block("198.18.0.2", "atcp", 21, ""), block("198.18.0.3", "atcp", 21, ""))
	r.results(t)
	*r.c = nil
	// Meanwhile the administrator adds 198.18.0.2 to the ignore file.
	r.refuse[netip.MustParseAddr("198.18.0.2")] = "in the ignore file"
	r.now = r.now.Add(2 * time.Second)
	r.b.LiftDue()
	if want := []string{"nft add 198.18.0.3", "hosts.deny add 198.18.0.3"}; !slices.Equal(*r.c, want) {
		t.Errorf("calls %q, want %q", *r.c, want)
	}
	got := r.results(t)
	if len(got) == 0 || got[0] != "block false 198.18.0.2 atcp: refused (released from the rate-limit queue): 198.18.0.2 is in the ignore file" {
		t.Errorf("results %q", got)
	}
}

// TestKernelAct: a block the kernel fast path made passes the gate like
// any other; refused, it is taken out of the set; admitted, it is recorded
// and its other actions carried out, without waiting for the rate limit.
func TestKernelAct(t *testing.T) {
	r := newRig(t, func(c *Config) { c.Rate, c.Burst = 1, 1; c.Route, c.RunCmd = nil, nil })
	r.feed(block("198.18.0.9", "atcp", 21, "")) // spends the one token
	r.results(t)
	*r.c = nil
	r.refuse[netip.MustParseAddr("198.18.0.53")] = "a name server of this host"
	ev := func(a string) event.Event {
		return event.Event{Kind: event.KindBlock, Time: r.now, Target: netip.MustParseAddr(a), Mode: event.ModeATCP, Proto: event.ProtoTCP, Port: 22, Hits: 1}
	}
	if err := r.b.Act(gate.Kernel, ev("198.18.0.53"), ev("198.18.0.7")); err != nil {
		t.Fatal(err)
	}
	if want := []string{"nft del 198.18.0.53", "hosts.deny add 198.18.0.7"}; !slices.Equal(*r.c, want) {
		t.Errorf("calls %q, want %q", *r.c, want)
	}
	want := []string{
		"block false 198.18.0.53 atcp: refused (made by the kernel fast path): 198.18.0.53 is a name server of this host",
		"nft true 198.18.0.53 atcp: removed from set portsentry4: the gate refused it",
		"nft true 198.18.0.7 atcp: added by the kernel fast path to its map for mode atcp",
		"hosts.deny true 198.18.0.7 atcp: added to hosts.deny",
	}
	if got := r.results(t); !slices.Equal(got, want) {
		t.Errorf("results\n%q\nwant\n%q", got, want)
	}
	if err := r.b.Act(gate.Restored, ev("198.18.0.8")); err == nil {
		t.Error("Act took an origin that is not its to take")
	}
}

// TestFromFleet: a fleet decision is held back by the rate limit like a
// line of this host's, asked again when released, and its refusal names
// the fleet.
func TestFromFleet(t *testing.T) {
	r := newRig(t, func(c *Config) { c.Rate, c.Burst = 1, 1; c.Route, c.RunCmd, c.HostsDeny = nil, nil, nil })
	r.refuse[netip.MustParseAddr("198.18.0.53")] = "a name server of this host"
	fleet := r.b.FromFleet()
	for i, l := range []string{block("198.18.0.1", "atcp", 21, ""), block("198.18.0.2", "atcp", 21, ""), block("198.18.0.53", "atcp", 21, "")} {
		fleet.Line("fleet", i+1, []byte(l), nil)
	}
	fleet.Idle()
	if want := []string{"nft add 198.18.0.1"}; !slices.Equal(*r.c, want) {
		t.Errorf("calls %q, want %q", *r.c, want)
	}
	if got := r.results(t); len(got) != 3 || got[2] != "block false 198.18.0.53 atcp: refused (from the fleet): 198.18.0.53 is a name server of this host" {
		t.Errorf("results %q", got)
	}
	r.refuse[netip.MustParseAddr("198.18.0.2")] = "in the ignore file"
	r.now = r.now.Add(time.Second)
	r.b.LiftDue()
	if len(*r.c) != 1 {
		t.Errorf("a refused fleet decision was carried out: %q", *r.c)
	}
}

// TestResultsInDecisionOrder: the results of a batch come in the order of
// its decisions, each decision's in 1.2's order of actions, although the
// actions run phase by phase over the batch.
func TestResultsInDecisionOrder(t *testing.T) {
	r := newRig(t, func(c *Config) { c.Route = nil })
	r.feed(
		block("198.18.0.1", "atcp", 21, ""),
		block("198.18.0.1", "atcp", 22, ""), // a repeat: "already blocked"
		block("127.0.0.1", "atcp", 21, ""),  // refused
		block("198.18.0.2", "atcp", 21, ""),
	)
	var got []string
	for _, l := range r.results(t) {
		f := strings.Fields(l)
		got = append(got, f[0]+" "+f[2])
	}
	want := []string{
		"nft 198.18.0.1", "hosts.deny 198.18.0.1", "run 198.18.0.1",
		"block 198.18.0.1",
		"block 127.0.0.1",
		"nft 198.18.0.2", "hosts.deny 198.18.0.2", "run 198.18.0.2",
	}
	if !slices.Equal(got, want) {
		t.Errorf("results in order\n%q\nwant\n%q", got, want)
	}
}

// TestDryRunSaysWhatARealRunDoes: a dry run remembers what it would have
// done, so a repeat is "already blocked" and an unblock lifts, as in a
// real run, and it changes nothing.
func TestDryRunSaysWhatARealRunDoes(t *testing.T) {
	r := newRig(t, func(c *Config) { c.DryRun = true })
	r.feed(block("198.18.0.1", "atcp", 21, ""))
	r.feed(block("198.18.0.1", "atcp", 22, ""))
	r.results(t)
	r.feed(block("198.18.0.1", "atcp", 23, ""))
	if got := r.results(t); len(got) != 1 || !strings.Contains(got[0], "already blocked") {
		t.Errorf("repeat in a dry run: %q", got)
	}
	r.feed(`{"v":1,"kind":"unblock","time":"2026-11-24T14:00:00Z","target":"198.18.0.1","mode":"atcp"}`)
	got := r.results(t)
	if len(got) != 3 {
		t.Fatalf("unblock in a dry run: %q", got)
	}
	for _, l := range got {
		if !strings.Contains(l, "true 198.18.0.1 atcp: dry run: would") {
			t.Errorf("unblock result %q", l)
		}
	}
	if len(*r.c) != 0 {
		t.Errorf("dry run changed something: %q", *r.c)
	}
	for _, f := range []string{"portsentry.history", "portsentry.blocked.atcp"} {
		if _, err := os.Stat(filepath.Join(r.dir, f)); err == nil {
			t.Errorf("dry run wrote %s", f)
		}
	}
}
