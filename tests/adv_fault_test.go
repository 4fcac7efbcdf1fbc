package tests

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portsentry/pipeline/ps-block/blockfile"
	"github.com/portsentry/pipeline/shared/event"
	"github.com/portsentry/pipeline/shared/netlab"
	"github.com/portsentry/pipeline/shared/transport"
)

// advKillRig is the setting of the kill tests: ps-block --listen in a
// namespace of its own (nftables, hosts.deny, blocked file), 1500 hits from
// as many hosts, and the decisions a replay of them gives (ps-judge is
// deterministic).
type advKillRig struct {
	ns         string
	dir, conf  string
	deny, sock string
	results    *os.File
	hits, want []string
	table      string
}

const advKillHosts = 1500

func newAdvKillRig(t *testing.T, name string) *advKillRig {
	r := &advKillRig{ns: netlab.NewNS(t, name).Name, dir: t.TempDir(), table: name}
	r.deny = writeFile(t, r.dir, "hosts.deny", "# hosts.deny\nsshd: 198.51.100.1\n")
	r.sock = filepath.Join(r.dir, "block.sock")
	r.conf = advConf(t, r.dir, "p.conf", map[string]string{
		"SCAN_TRIGGER":    "0",
		"BLOCK_RATE":      "1000000",
		"BLOCK_BURST":     "100000",
		"NFT_TABLE":       name,
		"IGNORE_FILE":     filepath.Join(r.dir, "ignore"),
		"BLOCKED_FILE":    filepath.Join(r.dir, "blocked"),
		"HISTORY_FILE":    filepath.Join(r.dir, "history"),
		"KILL_HOSTS_DENY": "ALL: $TARGET$",
		"HOSTS_DENY_FILE": r.deny,
	})
	t0 := time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC)
	for i := 0; i < advKillHosts; i++ {
		src := fmt.Sprintf("198.18.%d.%d", 200+i/250, i%250+1)
		r.hits = append(r.hits, hitLine(src, 1+i%1000, t0.Add(time.Duration(i)*time.Millisecond)))
	}
	r.want = advExpectedTargets(t, r.conf, strings.Join(r.hits, ""))
	if len(r.want) != advKillHosts {
		t.Fatalf("replay gives %d decisions, want %d", len(r.want), advKillHosts)
	}
	var err error
	if r.results, err = os.OpenFile(filepath.Join(r.dir, "results"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.results.Close() })
	return r
}

// startBlock starts run n of ps-block and waits until it is ready.
func (r *advKillRig) startBlock(t *testing.T, n int) *advStage {
	cmd := advCommand(r.ns, "ps-block", "-c", r.conf, "--listen", r.sock)
	cmd.Stdout = r.results
	s := advStart(t, r.dir, fmt.Sprintf("ps-block-%d", n), cmd)
	s.waitLog(t, "PortSentry ps-block is active", 10*time.Second)
	return s
}

// feed writes the hits, 50 every 20 ms (about 0.6 s in all), and calls kill
// at three moments a seeded generator picks, each after 0-20 ms more.
func (r *advKillRig) feed(t *testing.T, write func(string) error, kill func()) {
	rng := rand.New(rand.NewPCG(7, 7))
	kills := map[int]bool{}
	for len(kills) < 3 {
		kills[1+rng.IntN(advKillHosts/50-1)] = true
	}
	for i := 0; i < advKillHosts; i += 50 {
		if err := write(strings.Join(r.hits[i:min(i+50, advKillHosts)], "")); err != nil {
			t.Fatal(err)
		}
		if kills[i/50] {
			time.Sleep(time.Duration(rng.IntN(20)) * time.Millisecond)
			kill()
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// check waits for every wanted host to be in the nftables set, then
// asserts each was applied once: in hosts.deny and the blocked file once,
// whole lines only, and no host reported added to the set twice.
func (r *advKillRig) check(t *testing.T, killed string) {
	t.Helper()
	var got []string
	for end := time.Now().Add(15 * time.Second); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
		if got = advNFTAll(t, r.ns, r.table); len(got) >= advKillHosts {
			break
		}
	}
	slices.Sort(got)
	if missing := advMinus(r.want, got); len(missing) > 0 {
		t.Errorf("%d of %d decisions never applied after kills of %s (block lost), e.g. %q", len(missing), advKillHosts, killed, missing[:min(5, len(missing))])
	}
	// hosts.deny: whole lines, each host once, every host there.
	var denied []string
	for i, l := range advLines(t, r.deny) {
		if i < 2 {
			continue // the administrator's lines
		}
		a, ok := strings.CutPrefix(l, "ALL: ")
		a = strings.Trim(a, "[]")
		if _, err := netip.ParseAddr(a); !ok || err != nil {
			t.Errorf("hosts.deny line %d torn or foreign: %q", i+1, l)
			continue
		}
		denied = append(denied, a)
	}
	advCheckOnce(t, "hosts.deny", denied, r.want)
	// The blocked file: every line parses, each host once.
	var inFile []string
	for i, l := range advLines(t, filepath.Join(r.dir, "blocked.atcp")) {
		bl, err := blockfile.Parse(l)
		if err != nil {
			t.Errorf("blocked.atcp line %d: %v: %q", i+1, err, l)
			continue
		}
		inFile = append(inFile, bl.Addr.String())
	}
	advCheckOnce(t, "blocked.atcp", inFile, r.want)
	// The history: every line whole, each host once.
	var history []string
	for i, l := range advLines(t, filepath.Join(r.dir, "history")) {
		f := strings.Fields(l)
		// "SECONDS - MM/DD/YYYY HH:MM:SS Host: ADDR/ADDR Port: N TCP Blocked"
		if len(f) != 10 || f[4] != "Host:" || f[9] != "Blocked" {
			t.Errorf("history line %d torn: %q", i+1, l)
			continue
		}
		history = append(history, strings.SplitN(f[5], "/", 2)[0])
	}
	advCheckOnce(t, "history", history, r.want)
	// Results: no host added to the set twice across the runs.
	added := map[string]int{}
	for _, l := range advLines(t, filepath.Join(r.dir, "results")) {
		ev, err := event.Decode([]byte(l))
		if err != nil {
			t.Errorf("result line %q: %v", l, err)
			continue
		}
		if ev.Action == "nft" && ev.OK && strings.HasPrefix(ev.Detail, "added to set") {
			added[ev.Target.String()]++
		}
	}
	for a, n := range added {
		if n > 1 {
			t.Errorf("%s added to the nftables set %d times", a, n)
		}
	}
}

// TestAdvKillBlocker: ps-judge --connect feeds ps-block --listen while
// ps-block is killed with SIGKILL at seeded random moments and restarted.
// Every decision is applied once (advKillRig.check), and ps-judge
// reconnects by itself after each restart.
func TestAdvKillBlocker(t *testing.T) {
	r := newAdvKillRig(t, "advkill")
	block := r.startBlock(t, 1)
	judge := advCommand("", "ps-judge", "-c", r.conf, "--connect", r.sock)
	stdin, err := judge.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	j := advStart(t, r.dir, "ps-judge", judge)
	runs := 1
	r.feed(t, func(s string) error {
		if _, err := io.WriteString(stdin, s); err != nil {
			return fmt.Errorf("ps-judge: %w\n%s", err, j.log(t))
		}
		return nil
	}, func() {
		block.kill()
		runs++
		block = r.startBlock(t, runs)
	})
	r.check(t, "ps-block")
	stdin.Close()
	// ps-judge reconnects by itself; a run of ps-block killed within the
	// half second between retries may be missed, which loses nothing (the
	// checks above), so only the reconnecting is asserted.
	if n := strings.Count(j.log(t), "connected to "+r.sock); n < 2 {
		t.Errorf("ps-judge connected %d times to %d runs of ps-block:\n%s", n, runs, j.log(t))
	}
	if t.Failed() {
		t.Logf("ps-judge:\n%s\nps-block:\n%s", j.log(t), block.log(t))
	}
}

// TestAdvKillJudge: a sensor's writer (the transport's own Sink, as
// ps-sniff --connect uses it) feeds ps-judge --listen, which feeds ps-block
// --listen, while ps-judge is killed with SIGKILL at seeded random moments
// and restarted with no memory of what it decided. The sensor's writer
// reconnects and sends its last lines again; the new ps-judge decides those
// hosts again, and ps-block, which remembers, applies none twice and loses
// none (advKillRig.check).
func TestAdvKillJudge(t *testing.T) {
	r := newAdvKillRig(t, "advkillj")
	block := r.startBlock(t, 1)
	jsock := filepath.Join(r.dir, "judge.sock")
	startJudge := func(n int) *advStage {
		s := advStart(t, r.dir, fmt.Sprintf("ps-judge-%d", n), advCommand("", "ps-judge", "-c", r.conf, "--listen", jsock, "--connect", r.sock))
		s.waitLog(t, "reading event lines from "+jsock, 10*time.Second)
		return s
	}
	judge := startJudge(1)
	var connects atomic.Int32
	sensor := transport.Connect(jsock, func(format string, args ...any) {
		msg := fmt.Sprintf(format, args...)
		if strings.HasPrefix(msg, "connected to ") {
			connects.Add(1)
		}
		t.Log(msg)
	})
	defer sensor.Close()
	runs := 1
	r.feed(t, func(s string) error {
		for _, l := range strings.SplitAfter(s, "\n") {
			if err := sensor.Write([]byte(l)); err != nil { // the line with its newline
				return err
			}
		}
		return sensor.Flush()
	}, func() {
		judge.kill()
		runs++
		judge = startJudge(runs)
	})
	r.check(t, "ps-judge")
	if n := connects.Load(); n < 2 {
		t.Errorf("the sensor's writer connected %d times to %d runs of ps-judge", n, runs)
	}
	if t.Failed() {
		t.Logf("ps-judge (last run):\n%s\nps-block:\n%s", judge.log(t), block.log(t))
	}
}

// advExpectedTargets replays hits through ps-judge: the sorted targets of
// its block decisions.
func advExpectedTargets(t *testing.T, conf, hits string) []string {
	t.Helper()
	cmd := exec.Command(bin("ps-judge"), "-c", conf)
	cmd.Stdin = strings.NewReader(hits)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("ps-judge replay: %v", err)
	}
	var targets []string
	for _, l := range bytes.Split(bytes.TrimSpace(out), []byte("\n")) {
		ev, err := event.Decode(l)
		if err != nil {
			t.Fatalf("decision %q: %v", l, err)
		}
		targets = append(targets, ev.Target.String())
	}
	slices.Sort(targets)
	return targets
}

// advMinus is what of want (sorted) is missing from got (sorted).
func advMinus(want, got []string) []string {
	var out []string
	for _, w := range want {
		if _, ok := slices.BinarySearch(got, w); !ok {
			out = append(out, w)
		}
	}
	return out
}

// advCheckOnce asserts that list names every wanted host, and none twice.
func advCheckOnce(t *testing.T, what string, list, want []string) {
	t.Helper()
	seen := map[string]bool{}
	for _, a := range list {
		if seen[a] {
			t.Errorf("%s names %s twice", what, a)
		}
		seen[a] = true
	}
	sorted := slices.Sorted(func(yield func(string) bool) {
		for a := range seen {
			if !yield(a) {
				return
			}
		}
	})
	if missing := advMinus(want, sorted); len(missing) > 0 {
		t.Errorf("%s lacks %d of %d hosts, e.g. %q", what, len(missing), len(want), missing[:min(5, len(missing))])
	}
}
