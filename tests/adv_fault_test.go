package tests

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/portsentry/pipeline/ps-block/blockfile"
	"github.com/portsentry/pipeline/shared/event"
	"github.com/portsentry/pipeline/shared/netlab"
)

// TestAdvKillBlocker: ps-judge --connect feeds ps-block --listen (its own
// namespace: nftables, hosts.deny, blocked file) while ps-block is killed
// with SIGKILL at seeded random moments and restarted. At the end every
// decision ps-judge makes for that input (a replay gives them: ps-judge is
// deterministic) is applied once: each host in the nftables set and in
// hosts.deny, no line twice, every line of hosts.deny and of the blocked
// file whole and parseable, and no host reported added twice. ps-judge
// reconnects by itself after each restart.
func TestAdvKillBlocker(t *testing.T) {
	ns := netlab.NewNS(t, "advkill")
	dir := t.TempDir()
	deny := writeFile(t, dir, "hosts.deny", "# hosts.deny\nsshd: 198.51.100.1\n")
	sock := filepath.Join(dir, "block.sock")
	conf := advConf(t, dir, "p.conf", map[string]string{
		"SCAN_TRIGGER":    "0",
		"BLOCK_RATE":      "1000000",
		"BLOCK_BURST":     "100000",
		"NFT_TABLE":       "advkill",
		"IGNORE_FILE":     filepath.Join(dir, "ignore"),
		"BLOCKED_FILE":    filepath.Join(dir, "blocked"),
		"HISTORY_FILE":    filepath.Join(dir, "history"),
		"KILL_HOSTS_DENY": "ALL: $TARGET$",
		"HOSTS_DENY_FILE": deny,
	})
	const hosts = 1500
	t0 := time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC)
	var hits []string
	for i := 0; i < hosts; i++ {
		src := fmt.Sprintf("198.18.%d.%d", 200+i/250, i%250+1)
		hits = append(hits, hitLine(src, 1+i%1000, t0.Add(time.Duration(i)*time.Millisecond)))
	}
	want := advExpectedTargets(t, conf, strings.Join(hits, ""))
	if len(want) != hosts {
		t.Fatalf("replay gives %d decisions, want %d", len(want), hosts)
	}

	results, err := os.OpenFile(filepath.Join(dir, "results"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer results.Close()
	startBlock := func(n int) *advStage {
		cmd := advCommand(ns.Name, "ps-block", "-c", conf, "--listen", sock)
		cmd.Stdout = results
		s := advStart(t, dir, "ps-block", cmd)
		s.name = fmt.Sprintf("ps-block run %d", n)
		s.waitLog(t, "PortSentry ps-block is active", 10*time.Second)
		return s
	}
	block := startBlock(1)
	judge := advCommand("", "ps-judge", "-c", conf, "--connect", sock)
	stdin, err := judge.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	j := advStart(t, dir, "ps-judge", judge)

	// Feed 50 hits every 20 ms (about 0.6 s in all), killing ps-block at
	// three moments the seed picks.
	rng := rand.New(rand.NewPCG(7, 7))
	kills := map[int]bool{}
	for len(kills) < 3 {
		kills[1+rng.IntN(hosts/50-1)] = true
	}
	runs := 1
	for i := 0; i < hosts; i += 50 {
		if _, err := stdin.Write([]byte(strings.Join(hits[i:min(i+50, hosts)], ""))); err != nil {
			t.Fatalf("ps-judge: %v\n%s", err, j.log(t))
		}
		if kills[i/50] {
			time.Sleep(time.Duration(rng.IntN(20)) * time.Millisecond)
			block.kill()
			runs++
			block = startBlock(runs)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Every wanted host must be in the set within a few seconds.
	var got []string
	for end := time.Now().Add(15 * time.Second); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
		if got = advNFTAll(t, ns.Name, "advkill"); len(got) >= hosts {
			break
		}
	}
	stdin.Close()
	slices.Sort(got)
	if missing := advMinus(want, got); len(missing) > 0 {
		t.Errorf("%d of %d decisions never applied after %d kills of ps-block (block lost), e.g. %q", len(missing), hosts, runs-1, missing[:min(5, len(missing))])
	}
	// hosts.deny: whole lines, each host once, every host there.
	var denied []string
	for i, l := range advLines(t, deny) {
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
	advCheckOnce(t, "hosts.deny", denied, want)
	// The blocked file: every line parses, each host once.
	var inFile []string
	for i, l := range advLines(t, filepath.Join(dir, "blocked.atcp")) {
		bl, err := blockfile.Parse(l)
		if err != nil {
			t.Errorf("blocked.atcp line %d: %v: %q", i+1, err, l)
			continue
		}
		inFile = append(inFile, bl.Addr.String())
	}
	advCheckOnce(t, "blocked.atcp", inFile, want)
	// Results: no host added to the set twice across the runs.
	added := map[string]int{}
	for _, r := range advLines(t, filepath.Join(dir, "results")) {
		ev, err := event.Decode([]byte(r))
		if err != nil {
			t.Errorf("result line %q: %v", r, err)
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
	// ps-judge reconnects by itself; a run of ps-block killed within the
	// half second between retries may be missed, which loses nothing (the
	// checks above), so only the reconnecting is asserted.
	if n := strings.Count(j.log(t), "connected to "+sock); n < 2 {
		t.Errorf("ps-judge connected %d times to %d runs of ps-block:\n%s", n, runs, j.log(t))
	}
	if t.Failed() {
		t.Logf("ps-judge:\n%s\nps-block:\n%s", j.log(t), block.log(t))
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
