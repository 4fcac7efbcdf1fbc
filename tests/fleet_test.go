package tests

// The fleet over NATS (issue 14), with a real nats-server: two protected
// hosts and a scanner, each in its own network namespace, joined by a
// bridge in a fourth that also runs the server.

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portsentry/pipeline/ps-block/blockfile"
	"github.com/portsentry/pipeline/shared/event"
	"github.com/portsentry/pipeline/shared/netlab"
)

var (
	natsServerOnce sync.Once
	natsServerBin  string
	natsServerErr  error
)

// natsServer builds nats-server from the module the Go tests embed (the
// version go.mod names), once per test run. Debian's package (2.9) is too
// old for per-message TTLs, which keep each decision while it lasts.
func natsServer(t *testing.T) string {
	t.Helper()
	natsServerOnce.Do(func() {
		natsServerBin = filepath.Join(binDir, "nats-server")
		cmd := exec.Command("go", "build", "-o", natsServerBin, "github.com/nats-io/nats-server/v2")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			natsServerErr = fmt.Errorf("building nats-server: %v\n%s", err, out)
		}
	})
	if natsServerErr != nil {
		t.Fatal(natsServerErr)
	}
	return natsServerBin
}

// fleetLab is the fleet's network: hub (bridge and NATS server), hosts a
// and b, and a scanner, on 198.18.250.0/24.
type fleetLab struct {
	dir                  string
	hub, a, b, scan      string // namespaces
	hubIP, aIP, bIP, sIP netip.Addr
	url                  string
}

func newFleetLab(t *testing.T) *fleetLab {
	l := &fleetLab{dir: t.TempDir(),
		hubIP: netip.MustParseAddr("198.18.250.10"), aIP: netip.MustParseAddr("198.18.250.2"),
		bIP: netip.MustParseAddr("198.18.250.3"), sIP: netip.MustParseAddr("198.18.250.1")}
	l.hub = netlab.NewNS(t, "fhub").Name
	l.a = netlab.NewNS(t, "fa").Name
	l.b = netlab.NewNS(t, "fb").Name
	l.scan = netlab.NewNS(t, "fscan").Name
	l.url = "nats://" + l.hubIP.String() + ":4222"
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	ip("-n", l.hub, "link", "add", "br0", "type", "bridge")
	ip("-n", l.hub, "addr", "add", l.hubIP.String()+"/24", "dev", "br0")
	ip("-n", l.hub, "link", "set", "br0", "up")
	for i, h := range []struct {
		ns   string
		addr netip.Addr
	}{{l.a, l.aIP}, {l.b, l.bIP}, {l.scan, l.sIP}} {
		port := fmt.Sprintf("port%d", i)
		ip("link", "add", port, "netns", l.hub, "type", "veth", "peer", "name", "eth0", "netns", h.ns)
		ip("-n", l.hub, "link", "set", port, "master", "br0", "up")
		ip("-n", h.ns, "addr", "add", h.addr.String()+"/24", "dev", "eth0")
		ip("-n", h.ns, "link", "set", "eth0", "up")
	}
	for _, a := range []netip.Addr{l.aIP, l.bIP, l.hubIP} {
		_ = exec.Command("ip", "netns", "exec", l.scan, "ping", "-c", "1", "-W", "2", a.String()).Run()
	}
	return l
}

// startNATS runs the server in the hub, its JetStream store in the lab's
// directory, so that a restart finds what the killed one stored.
func (l *fleetLab) startNATS(t *testing.T, run int) *advStage {
	cmd := exec.Command("ip", "netns", "exec", l.hub, natsServer(t), "-a", l.hubIP.String(), "-p", "4222",
		"-js", "-sd", filepath.Join(l.dir, "jetstream"))
	s := advStart(t, l.dir, fmt.Sprintf("nats-server-%d", run), cmd)
	s.waitLog(t, "Server is ready", 20*time.Second)
	return s
}

// conf is a host's configuration: every hit blocks for an hour, no rate
// limit, nftables in the host's own namespace.
func (l *fleetLab) conf(t *testing.T, host string) string {
	d := filepath.Join(l.dir, host)
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, d, "ignore", "")
	return advConf(t, d, "p.conf", map[string]string{
		"FLEET_HOST":     host,
		"SCAN_TRIGGER":   "0",
		"BLOCK_DURATION": "1h",
		"BLOCK_RATE":     "1000000",
		"BLOCK_BURST":    "100000",
		"NFT_TABLE":      "psfleet",
		"IGNORE_FILE":    filepath.Join(d, "ignore"),
		"BLOCKED_FILE":   filepath.Join(d, "blocked"),
		"HISTORY_FILE":   filepath.Join(d, "history"),
	})
}

// startBlock starts a host's ps-block, a fleet member listening on its
// own socket; its result lines are appended to <host>/results.
func (l *fleetLab) startBlock(t *testing.T, ns, host, conf string, run int) *advStage {
	out, err := os.OpenFile(filepath.Join(l.dir, host, "results"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	cmd := advCommand(ns, "ps-block", "-c", conf, "--listen", filepath.Join(l.dir, host, "block.sock"), "--fleet", l.url)
	cmd.Stdout = out
	s := advStart(t, l.dir, fmt.Sprintf("ps-block-%s-%d", host, run), cmd)
	s.waitLog(t, "PortSentry ps-block is active", 10*time.Second)
	return s
}

// results is a host's result lines so far (whole lines: ps-block may be
// writing the next).
func (l *fleetLab) results(t *testing.T, host string) []*event.Event {
	b, err := os.ReadFile(filepath.Join(l.dir, host, "results"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
		b = b[:i]
	} else {
		b = nil
	}
	var out []*event.Event
	for _, line := range strings.Split(string(b), "\n") {
		if line == "" {
			continue
		}
		ev, err := event.Decode([]byte(line))
		if err != nil {
			t.Fatalf("%s result %q: %v", host, line, err)
		}
		out = append(out, &ev)
	}
	return out
}

func (l *fleetLab) waitSet(t *testing.T, ns string, want []string, limit time.Duration) []string {
	t.Helper()
	var got []string
	for end := time.Now().Add(limit); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		got = advNFTAll(t, ns, "psfleet")
		slices.Sort(got)
		if len(advMinus(want, got)) == 0 {
			break
		}
	}
	return got
}

// TestFleet: a scanner that scans host a is dropped by host b; kill -9 of
// b's ps-block and of the NATS server while a's decisions stream out loses
// none and applies none twice; a member's address forged as a scanner is
// blocked by no member.
func TestFleet(t *testing.T) {
	for _, tool := range []string{"nmap", "hping3", "nft"} {
		if _, err := exec.LookPath(tool); err != nil {
			netlab.SkipOrFail(t, "no %s: %v", tool, err)
		}
	}
	l := newFleetLab(t)
	confA, confB := l.conf(t, "host-a"), l.conf(t, "host-b")
	nats := l.startNATS(t, 1)

	// Host a: ps-sniff -atcp | ps-judge | ps-block --fleet, joined by
	// sockets so that the test can write hits too. Host b: ps-block alone.
	blockA := l.startBlock(t, l.a, "host-a", confA, 1)
	judgeSock := filepath.Join(l.dir, "host-a", "judge.sock")
	judge := advStart(t, l.dir, "ps-judge-a", advCommand(l.a, "ps-judge", "-c", confA, "--listen", judgeSock,
		"--connect", filepath.Join(l.dir, "host-a", "block.sock")))
	judge.waitLog(t, "reading event lines from", 10*time.Second)
	sniff := advStart(t, l.dir, "ps-sniff-a", advCommand(l.a, "ps-sniff", "-c", confA, "-i", "eth0", "-atcp", "--connect", judgeSock))
	sniff.waitLog(t, "PortSentry is now active and listening.", 10*time.Second)
	blockB := l.startBlock(t, l.b, "host-b", confB, 1)
	for _, s := range []*advStage{blockA, blockB} {
		s.waitLog(t, "NATS: following the fleet's decisions", 10*time.Second)
		s.waitLog(t, "fleet member addresses", 10*time.Second)
	}
	// Each knows the other as a member before anything is decided.
	blockA.waitLog(t, "registered as fleet member host-a", 10*time.Second)
	blockB.waitLog(t, "registered as fleet member host-b", 10*time.Second)

	// 1. The scanner scans host a; host b's set holds it.
	start := time.Now()
	advRun(t, 60*time.Second, "ip", "netns", "exec", l.scan, "nmap", "-n", "-Pn", "-sS", "-p", "20-30",
		"--max-retries", "0", "--max-rtt-timeout", "100ms", "--host-timeout", "20s", l.aIP.String())
	if got := l.waitSet(t, l.b, []string{l.sIP.String()}, 15*time.Second); !slices.Contains(got, l.sIP.String()) {
		t.Fatalf("host b's set lacks the scanner %s after it scanned host a: %q\nps-block b:\n%s", l.sIP, got, blockB.log(t))
	}
	t.Logf("the scanner was in host b's set %v after the scan began", time.Since(start).Round(time.Millisecond))
	if got := advNFTAll(t, l.a, "psfleet"); !slices.Contains(got, l.sIP.String()) {
		t.Errorf("host a's own set lacks the scanner: %q", got)
	}

	// 2. Host b's address forged as a scanner of host a: host a's judge
	// decides (b is no address of a's), host a's gate refuses it as a
	// member, and host b refuses its own address from the fleet.
	// hping3 exits 1 when nothing answers, as nothing should.
	if out, err := exec.Command("timeout", "30", "ip", "netns", "exec", l.scan, "hping3", "-q", "-S", "-a", l.bIP.String(),
		"-p", "23", "-c", "3", "-i", "u100000", l.aIP.String()).CombinedOutput(); err != nil && !strings.Contains(string(out), "3 packets transmitted") {
		t.Fatalf("hping3: %v: %s", err, out)
	}
	refused := func(host string, addr netip.Addr, why string) bool {
		for _, r := range l.results(t, host) {
			if r.Target == addr && r.Action == "block" && !r.OK && strings.Contains(r.Detail, why) {
				return true
			}
		}
		return false
	}
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end) && !(refused("host-a", l.bIP, "a member of the fleet (host-b)") && refused("host-b", l.bIP, "own address")); {
		time.Sleep(100 * time.Millisecond)
	}
	if !refused("host-a", l.bIP, "a member of the fleet (host-b)") {
		t.Errorf("host a did not refuse host b's forged address as a fleet member; results:\n%s", strings.Join(advLines(t, filepath.Join(l.dir, "host-a", "results")), "\n"))
	}
	if !refused("host-b", l.bIP, "own address") {
		t.Errorf("host b did not refuse host a's decision about its own address; results:\n%s", strings.Join(advLines(t, filepath.Join(l.dir, "host-b", "results")), "\n"))
	}

	// 3. 400 decisions stream out of host a (hits from as many sources
	// written to its judge's socket, 20 every 25 ms) while host b's
	// ps-block and then the server are killed -9 and started again.
	const n = 400
	var want []string
	for i := 0; i < n; i++ {
		want = append(want, fmt.Sprintf("198.18.%d.%d", 251+i/200, i%200+1))
	}
	c, err := net.Dial("unix", judgeSock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := 0; i < n; i += 20 {
		var b strings.Builder
		for _, src := range want[i : i+20] {
			b.WriteString(hitLine(src, 21, time.Now()))
		}
		if _, err := c.Write([]byte(b.String())); err != nil {
			t.Fatal(err)
		}
		switch i / 20 {
		case 4:
			blockB.kill()
		case 8:
			nats.kill()
		case 12:
			blockB = l.startBlock(t, l.b, "host-b", confB, 2) // the server is still away
		case 16:
			nats = l.startNATS(t, 2)
		}
		time.Sleep(25 * time.Millisecond)
	}
	all := append(slices.Clone(want), l.sIP.String())
	slices.Sort(all)
	got := l.waitSet(t, l.b, all, 30*time.Second)
	if missing := advMinus(all, got); len(missing) > 0 {
		t.Errorf("host b's set lacks %d of %d blocks in force after the kills, e.g. %q\nps-block b:\n%s", len(missing), len(all), missing[:min(5, len(missing))], blockB.log(t))
	}
	if gotA := l.waitSet(t, l.a, all, 10*time.Second); len(advMinus(all, gotA)) > 0 {
		t.Errorf("host a's own set lacks %d blocks", len(advMinus(all, gotA)))
	}
	// Each applied once: in host b's history and blocked file once each,
	// and never said added to the set twice.
	for _, file := range []string{"history", "blocked.atcp"} {
		var hosts []string
		for _, line := range advLines(t, filepath.Join(l.dir, "host-b", file)) {
			bl, err := blockfile.Parse(line)
			if err != nil {
				t.Errorf("host b %s %q: %v", file, line, err)
				continue
			}
			hosts = append(hosts, bl.Addr.String())
		}
		advCheckOnce(t, "host b's "+file, hosts, all)
	}
	added := map[netip.Addr]int{}
	for _, r := range l.results(t, "host-b") {
		if r.Action == "nft" && r.OK && strings.HasPrefix(r.Detail, "added") {
			added[r.Target]++
		}
	}
	for a, k := range added {
		if k > 1 {
			t.Errorf("host b added %s to its set %d times", a, k)
		}
	}
	// Neither member ever blocked the other.
	for _, ns := range []string{l.a, l.b} {
		for _, a := range advNFTAll(t, ns, "psfleet") {
			if a == l.aIP.String() || a == l.bIP.String() {
				t.Errorf("a member's address %s is in a set", a)
			}
		}
	}
}

// TestFleetContribUnits verifies each fleet drop-in of contrib/systemd/fleet
// merged into the unit it changes (systemd reads a drop-in after the unit,
// as the text that follows it), and that every stage of both topologies
// reaches the same NATS server.
func TestFleetContribUnits(t *testing.T) {
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		netlab.SkipOrFail(t, "no systemd-analyze (Debian package systemd): %v", err)
	}
	dropins, _ := filepath.Glob(filepath.Join(contribUnits, "fleet", "*", "*.service.d", "*.conf"))
	top, _ := filepath.Glob(filepath.Join(contribUnits, "fleet", "*.service.d", "*.conf"))
	dropins = append(dropins, top...)
	if len(dropins) != 4 {
		t.Fatalf("%d fleet drop-ins, want 4 (ps-block; ps-sniff, ps-listen, ps-judge of topology 2): %q", len(dropins), dropins)
	}
	urls := map[string]bool{}
	for _, d := range dropins {
		unit := strings.TrimSuffix(filepath.Base(filepath.Dir(d)), ".d")
		base, err := os.ReadFile(filepath.Join(contribUnits, unit))
		if err != nil {
			t.Fatal(err)
		}
		drop, err := os.ReadFile(d)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range strings.Fields(string(drop)) {
			if strings.HasPrefix(f, "nats://") {
				urls[f] = true
			}
		}
		dir := t.TempDir()
		merged := bytes.ReplaceAll(append(append(base, '\n'), drop...), []byte("/usr/local/sbin/"), []byte(binDir+"/"))
		name := filepath.Join(dir, unit)
		if err := os.WriteFile(name, merged, 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command("systemd-analyze", "verify", "--man=no", name).CombinedOutput()
		// The units name each other (Wants=, After=); only this one is here.
		var problems []string
		for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			if l != "" && !strings.Contains(l, "not found") {
				problems = append(problems, l)
			}
		}
		if len(problems) > 0 {
			t.Errorf("systemd-analyze verify %s with %s: %v\n%s", unit, d, err, strings.Join(problems, "\n"))
		}
	}
	if len(urls) != 1 {
		t.Errorf("the drop-ins name %d NATS servers, want one: %v", len(urls), urls)
	}
}

// TestFleetBench is a measurement, run by tests/bench.sh (make bench) with
// PS_FLEET_BENCH=1, never a timed test: it asserts only that every decision
// arrived, and prints the figures. Host a's ps-block takes decisions on its
// socket (as from its ps-judge) and publishes them; hosts b and c (the
// scanner's namespace, here a third member) apply them. Latency: from the
// decision's time, stamped as it is written to host a, to the time of
// the member's nft result, written once the kernel took the element; over
// 1,000 decisions, one every 5 ms. Throughput: 20,000 decisions written at
// 10,000 a second; each member's rate, and how long after the last was
// written each member had applied every one.
func TestFleetBench(t *testing.T) {
	if os.Getenv("PS_FLEET_BENCH") == "" {
		t.Skip("a measurement: tests/bench.sh runs it with PS_FLEET_BENCH=1")
	}
	l := newFleetLab(t)
	server := l.startNATS(t, 1)
	members := map[string]string{"host-a": l.a, "host-b": l.b, "host-c": l.scan}
	stages := map[string]*advStage{}
	for _, host := range []string{"host-a", "host-b", "host-c"} {
		stages[host] = l.startBlock(t, members[host], host, l.conf(t, host), 1)
	}
	for _, s := range stages {
		s.waitLog(t, "NATS: following the fleet's decisions", 10*time.Second)
	}
	c, err := net.Dial("unix", filepath.Join(l.dir, "host-a", "block.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	target := func(i int) string { return fmt.Sprintf("198.19.%d.%d", i/256, i%256) }
	line := func(i int, at time.Time) string {
		return fmt.Sprintf(`{"v":1,"kind":"block","time":"%s","target":"%s","mode":"atcp","proto":"tcp","port":21,"scan":"syn","hits":1,"until":"%s"}`+"\n",
			at.UTC().Format(time.RFC3339Nano), target(i), at.Add(time.Hour).UTC().Format(time.RFC3339Nano))
	}
	// applied waits until host has an nft result for each target of
	// [from, to) and returns when it wrote each.
	applied := func(host string, from, to int) map[string]time.Time {
		at := map[string]time.Time{}
		for end := time.Now().Add(60 * time.Second); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
			clear(at)
			for _, r := range l.results(t, host) {
				if r.Action == "nft" && r.OK && strings.HasPrefix(r.Detail, "added") {
					at[r.Target.String()] = r.Time
				}
			}
			n := 0
			for i := from; i < to; i++ {
				if _, ok := at[target(i)]; ok {
					n++
				}
			}
			if n == to-from {
				return at
			}
		}
		t.Fatalf("%s did not apply every decision of %d-%d within 60 s", host, from, to)
		return nil
	}
	pct := func(d []time.Duration, p float64) time.Duration {
		slices.Sort(d)
		return d[min(len(d)-1, int(float64(len(d))*p))]
	}

	// Latency, 1,000 decisions one every 5 ms.
	const nLat = 1000
	sent := make([]time.Time, nLat)
	for i := 0; i < nLat; i++ {
		sent[i] = time.Now()
		if _, err := c.Write([]byte(line(i, sent[i]))); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	for _, host := range []string{"host-b", "host-c"} {
		at := applied(host, 0, nLat)
		var lat []time.Duration
		for i := 0; i < nLat; i++ {
			lat = append(lat, at[target(i)].Sub(sent[i].UTC().Truncate(0)))
		}
		if os.Getenv("PS_FLEET_BENCH") == "v" {
			for i := 0; i < nLat; i++ {
				if d := at[target(i)].Sub(sent[i].UTC().Truncate(0)); d > 10*time.Millisecond {
					t.Logf("%s decision %d: %v", host, i, d)
				}
			}
		}
		t.Logf("FLEETBENCH latency %s decisions=%d median_ms=%.3f p99_ms=%.3f max_ms=%.3f", host, nLat,
			float64(pct(lat, 0.5))/1e6, float64(pct(lat, 0.99))/1e6, float64(pct(lat, 1))/1e6)
	}

	// Throughput, 20,000 decisions at 10,000 a second: 100 every 10 ms.
	const nRate, per, every = 20000, 100, 10 * time.Millisecond
	// The CPU each process spends on them, from here until every member
	// applied every one: the two cores are what limits.
	procs := []*advStage{server, stages["host-a"], stages["host-b"], stages["host-c"]}
	cpu0 := make([]time.Duration, len(procs))
	for i, s := range procs {
		cpu0[i] = procCPU(t, s.cmd.Process.Pid)
	}
	test0 := procCPU(t, os.Getpid())
	first := time.Now()
	var last time.Time
	for k := 0; k*per < nRate; k++ {
		time.Sleep(time.Until(first.Add(time.Duration(k) * every)))
		var b strings.Builder
		now := time.Now()
		for i := nLat + k*per; i < nLat+(k+1)*per; i++ {
			b.WriteString(line(i, now))
		}
		if _, err := c.Write([]byte(b.String())); err != nil {
			t.Fatal(err)
		}
		last = time.Now()
	}
	t.Logf("FLEETBENCH written decisions=%d seconds=%.3f rate=%.0f", nRate, last.Sub(first).Seconds(), nRate/last.Sub(first).Seconds())
	for _, host := range []string{"host-a", "host-b", "host-c"} {
		at := applied(host, nLat, nLat+nRate)
		var done time.Time
		for i := nLat; i < nLat+nRate; i++ {
			if at[target(i)].After(done) {
				done = at[target(i)]
			}
		}
		t.Logf("FLEETBENCH rate %s decisions=%d per_s=%.0f behind_last_ms=%.1f", host, nRate,
			nRate/done.Sub(first).Seconds(), float64(done.Sub(last))/1e6)
	}
	var cpu []string
	var total time.Duration
	for i, name := range []string{"nats-server", "host-a", "host-b", "host-c"} {
		d := procCPU(t, procs[i].cmd.Process.Pid) - cpu0[i]
		total += d
		cpu = append(cpu, fmt.Sprintf("%s=%.2f", name, d.Seconds()))
	}
	d := procCPU(t, os.Getpid()) - test0
	total += d
	t.Logf("FLEETBENCH cpu_s %s test=%.2f total=%.2f", strings.Join(cpu, " "), d.Seconds(), total.Seconds())
}

// procCPU is the CPU time (user and system) process pid has used, from
// /proc/PID/stat, in the kernel's clock ticks of 10 ms.
func procCPU(t *testing.T, pid int) time.Duration {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// The fields after the command name, which is in parentheses and may
	// hold spaces: state is the first, utime and stime the 12th and 13th.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		t.Fatalf("/proc/%d/stat: %q", pid, s)
	}
	var ticks int64
	for _, v := range f[11:13] {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			t.Fatalf("/proc/%d/stat: %q: %v", pid, s, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * 10 * time.Millisecond
}
