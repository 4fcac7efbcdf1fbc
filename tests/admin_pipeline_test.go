package tests

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/portsentry/pipeline/shared/netlab"
)

// TestAdminPipeline is issue 12's administrator at work on a running
// pipeline (ps-judge --admin --metrics | ps-block --metrics, nftables in a
// namespace of its own): after the scanners' hits, `ps-block list` shows
// the blocks, `ps-judge stats` and `ps-block stats` read the counters over
// HTTP (Prometheus' text parser), `ps-block unblock` lifts one through
// ps-judge's admin socket (gone from the kernel's set, hosts.deny and the
// records; ps-judge forgot it: its next hit is decided again), and
// `ps-block history` reads every decision.
func TestAdminPipeline(t *testing.T) {
	ns := netlab.NewNS(t, "admin")
	dir := t.TempDir()
	hostsDeny := filepath.Join(dir, "hosts.deny")
	for _, f := range []string{hostsDeny, filepath.Join(dir, "ignore")} {
		if err := os.WriteFile(f, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	conf := advConf(t, dir, "portsentry.conf", map[string]string{
		"SCAN_TRIGGER": "0", "NFT_BLOCK": "1", "KILL_HOSTS_DENY": "ALL: $TARGET$", "HOSTS_DENY_FILE": hostsDeny,
		"KILL_ROUTE": "", "KILL_RUN_CMD": "", "BLOCKED_FILE": filepath.Join(dir, "blocked"),
		"HISTORY_FILE": filepath.Join(dir, "history"), "IGNORE_FILE": filepath.Join(dir, "ignore"),
	})
	sock := filepath.Join(dir, "admin.sock")

	hitsR, hitsW := advPipe(t)
	decR, decW := advPipe(t)
	judge := advCommand(ns.Name, "ps-judge", "-c", conf, "--admin", sock, "--metrics", "127.0.0.1:0")
	judge.Stdin, judge.Stdout = hitsR, decW
	results, err := os.Create(filepath.Join(dir, "results.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer results.Close()
	block := advCommand(ns.Name, "ps-block", "-c", conf, "--metrics", "127.0.0.1:0")
	block.Stdin, block.Stdout = decR, results
	js := advStart(t, dir, "ps-judge", judge)
	bs := advStart(t, dir, "ps-block", block)
	hitsR.Close()
	decW.Close()
	decR.Close()
	js.waitLog(t, "taking administrative lines", 10*time.Second)
	bs.waitLog(t, "ps-block is active", 10*time.Second)
	judgeAddr, blockAddr := metricsAddr(t, js), metricsAddr(t, bs)

	hit := func(src, mode, proto, scan string, port int) {
		t.Helper()
		dst := "198.18.0.254"
		if strings.Contains(src, ":") {
			dst = "2001:db8::fe"
		}
		line := fmt.Sprintf(`{"v":1,"kind":"hit","time":"%s","sensor":"ps-sniff","mode":"%s","proto":"%s","src":"%s","sport":40000,"dst":"%s","dport":%d,"scan":"%s"}`+"\n",
			time.Now().UTC().Format(time.RFC3339Nano), mode, proto, src, dst, port, scan)
		if _, err := hitsW.WriteString(line); err != nil {
			t.Fatal(err)
		}
	}
	// The bad line first: once the blocks are listed, ps-judge has read it.
	if _, err := hitsW.WriteString("not an event line\n"); err != nil {
		t.Fatal(err)
	}
	hit("198.18.0.1", "atcp", "tcp", "syn", 21)
	hit("198.18.0.2", "atcp", "tcp", "syn", 22)
	hit("2001:db8::5", "sudp", "udp", "udp", 53)

	admin := func(want int, prog string, args ...string) string {
		t.Helper()
		cmd := advCommand(ns.Name, prog, args...)
		out, err := cmd.Output()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
			out = append(out, ee.Stderr...)
		} else if err != nil {
			t.Fatalf("%s %v: %v", prog, args, err)
		}
		if code != want {
			t.Fatalf("%s %v: exit %d, want %d\n%s", prog, args, code, want, out)
		}
		return string(out)
	}
	type row struct {
		Address, Mode, Kind string
		Actions             []string
	}
	list := func() []row {
		var rows []row
		if err := json.Unmarshal([]byte(admin(0, "ps-block", "list", "-c", conf, "--json")), &rows); err != nil {
			t.Fatal(err)
		}
		return rows
	}
	waitRows := func(n int) []row {
		t.Helper()
		for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
			if rows := list(); len(rows) == n {
				return rows
			}
		}
		t.Fatalf("ps-block list: not %d rows within 10s: %+v\n%s\n%s", n, list(), js.log(t), bs.log(t))
		return nil
	}
	rows := waitRows(3)
	for _, r := range rows {
		if r.Kind != "block" || !slices.Contains(r.Actions, "nft") || !slices.Contains(r.Actions, "hosts.deny") {
			t.Errorf("ps-block list: %+v: want a block by nft and hosts.deny", r)
		}
	}
	table := admin(0, "ps-block", "list", "-c", conf)
	if !regexp.MustCompile(`(?m)^198\.18\.0\.1 +atcp +block .* 21 +nft,hosts\.deny$`).MatchString(table) {
		t.Errorf("ps-block list table:\n%s", table)
	}
	if set := advNFT(t, ns.Name, "portsentry", "portsentry4"); !slices.Contains(set, "198.18.0.1") {
		t.Fatalf("nft set: %v, want 198.18.0.1", set)
	}

	// The counters, as the administrator reads them.
	stats := func(prog, addr string) map[string]float64 {
		t.Helper()
		var samples []struct {
			Name   string
			Labels map[string]string
			Value  float64
		}
		out := admin(0, prog, "stats", "--metrics", addr, "--json")
		if err := json.Unmarshal([]byte(out), &samples); err != nil {
			t.Fatalf("%s stats --json: %v\n%s", prog, err, out)
		}
		m := map[string]float64{}
		for _, s := range samples {
			var keys []string
			for k, v := range s.Labels {
				keys = append(keys, k+"="+v)
			}
			slices.Sort(keys)
			m[s.Name+"{"+strings.Join(keys, ",")+"}"] = s.Value
		}
		return m
	}
	jm := stats("ps-judge", judgeAddr)
	for k, want := range map[string]float64{
		"portsentry_hits_total{mode=atcp,scan=syn}":  2,
		"portsentry_hits_total{mode=sudp,scan=udp}":  1,
		"portsentry_decisions_total{kind=block}":     3,
		"portsentry_bad_lines_total{stage=ps-judge}": 1,
		"portsentry_unblocks_total{}":                0,
	} {
		if jm[k] != want {
			t.Errorf("ps-judge stats: %s = %v, want %v", k, jm[k], want)
		}
	}
	// Three probes from a blocked host, forged on the namespace's loopback
	// (bounded: -c 3), meet the set's drop rule.
	if _, err := exec.LookPath("hping3"); err != nil {
		netlab.SkipOrFail(t, "hping3 is missing: %v", err)
	}
	if out, err := exec.Command("ip", "netns", "exec", ns.Name, "hping3", "-q", "-c", "3", "-i", "u20000", "-S", "-p", "80", "-a", "198.18.0.2", "127.0.0.1").CombinedOutput(); err != nil && !strings.Contains(string(out), "100% packet loss") {
		t.Fatalf("hping3: %v: %s", err, out)
	}
	bm := stats("ps-block", blockAddr)
	for k, want := range map[string]float64{
		"portsentry_results_total{action=nft,outcome=ok}":        3,
		"portsentry_results_total{action=hosts.deny,outcome=ok}": 3,
		"portsentry_reaction_seconds{action=nft}":                3, // observations
		"portsentry_blocks_in_force{}":                           3,
		"portsentry_bad_lines_total{stage=ps-block}":             0,
		"portsentry_kernel_drops_total{}":                        3,
	} {
		if bm[k] != want {
			t.Errorf("ps-block stats: %s = %v, want %v", k, bm[k], want)
		}
	}

	// Lift one, through ps-judge's admin socket.
	out := admin(0, "ps-block", "unblock", "-c", conf, "--admin", sock, "198.18.0.1")
	if !strings.Contains(out, "lifted through ps-judge's admin socket") {
		t.Errorf("ps-block unblock:\n%s", out)
	}
	if set := advNFT(t, ns.Name, "portsentry", "portsentry4"); slices.Contains(set, "198.18.0.1") || !slices.Contains(set, "198.18.0.2") {
		t.Errorf("nft set after the unblock: %v", set)
	}
	if hd, _ := os.ReadFile(hostsDeny); strings.Contains(string(hd), "198.18.0.1\n") || !strings.Contains(string(hd), "198.18.0.2") {
		t.Errorf("hosts.deny after the unblock:\n%s", hd)
	}
	if rows := list(); len(rows) != 2 || slices.ContainsFunc(rows, func(r row) bool { return r.Address == "198.18.0.1" }) {
		t.Errorf("ps-block list after the unblock: %+v", rows)
	}
	admin(3, "ps-block", "list", "-c", conf, "198.18.0.1")
	admin(3, "ps-block", "unblock", "-c", conf, "--admin", sock, "198.18.0.1")
	js.waitLog(t, "unblock of 198.18.0.1 in mode atcp", 5*time.Second)
	if got := stats("ps-judge", judgeAddr)["portsentry_unblocks_total{}"]; got != 1 {
		t.Errorf("ps-judge unblocks_total = %v, want 1", got)
	}

	// ps-judge forgot the host: its next hit is a new decision.
	hit("198.18.0.1", "atcp", "tcp", "syn", 23)
	waitRows(3)
	if got := stats("ps-judge", judgeAddr)["portsentry_decisions_total{kind=block}"]; got != 4 {
		t.Errorf("ps-judge decisions after the unblock and a new hit: %v, want 4", got)
	}
	hist := admin(0, "ps-block", "history", "-c", conf, "198.18.0.1")
	if n := strings.Count(hist, "198.18.0.1"); n != 2 {
		t.Errorf("ps-block history 198.18.0.1: %d lines, want 2\n%s", n, hist)
	}
	hitsW.Close()
}

// metricsAddr is the address a stage says it serves its metrics on.
func metricsAddr(t *testing.T, s *advStage) string {
	t.Helper()
	s.waitLog(t, "serving Prometheus metrics on http://", 10*time.Second)
	m := regexp.MustCompile(`serving Prometheus metrics on http://(\S+)/metrics`).FindStringSubmatch(s.log(t))
	if m == nil {
		t.Fatalf("%s: no metrics address in\n%s", s.name, s.log(t))
	}
	return m[1]
}
