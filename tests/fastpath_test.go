package tests

// The kernel fast path against real packets: ps-block alone (no sensor, no
// judge: every block here is the kernel's own) in the protected namespace,
// probes forged from the scanner's with hping3 (IPv4) and nmap -S (IPv6).

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/portsentry/pipeline/shared/event"
	"github.com/portsentry/pipeline/shared/netlab"
)

// fpBlock is one ps-block run with the fast path on, its input held open.
type fpBlock struct {
	cmd          *exec.Cmd
	stdin        io.WriteCloser
	results, log *lineLog
	copiers      sync.WaitGroup
	stopped      bool
}

// startFastPath starts ps-block with conf and waits until its fast path is
// installed; it is stopped in t.Cleanup.
func (e *labEnv) startFastPath(t *testing.T, conf string) *fpBlock {
	t.Helper()
	b := &fpBlock{cmd: e.command("ps-block", "-c", conf), results: &lineLog{name: "ps-block"}, log: &lineLog{name: "stderr"}}
	stdout, err := b.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := b.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if b.stdin, err = b.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	b.copiers.Add(2)
	go func() { defer b.copiers.Done(); record(stdout, b.results, nil) }()
	go func() { defer b.copiers.Done(); record(stderr, b.log, nil) }()
	if err := b.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		b.stop(t, syscall.SIGTERM)
		if t.Failed() {
			t.Logf("results:\n%s\nlog:\n%s", b.results, b.log)
		}
	})
	waitLine(t, b.log, readyLimit, "fast path installed", func(s string) bool { return strings.Contains(s, "fast path installed") })
	return b
}

// stop ends ps-block with sig and waits for it.
func (b *fpBlock) stop(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if b.stopped {
		return
	}
	b.stopped = true
	_ = b.cmd.Process.Signal(sig)
	done := make(chan struct{})
	go func() { _ = b.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = b.cmd.Process.Kill()
		<-done
		t.Errorf("ps-block did not stop on %v within 10s", sig)
	}
	b.copiers.Wait()
}

// kernelBlocked waits for the result line of the kernel's block of src.
func (b *fpBlock) kernelBlocked(t *testing.T, src netip.Addr, mode string) *event.Event {
	t.Helper()
	return waitEvent(t, b.results, decisionLimit, "kernel block of "+src.String(), func(ev *event.Event) bool {
		return ev.Kind == event.KindResult && ev.Target == src && ev.Mode.String() == mode && ev.Action == "nft" && ev.OK &&
			strings.Contains(ev.Detail, "kernel fast path")
	})
}

// anyResult reports whether ps-block wrote any result about src.
func (b *fpBlock) anyResult(src netip.Addr) bool {
	for _, s := range b.results.lines() {
		if ev, err := event.Decode([]byte(s)); err == nil && ev.Target == src {
			return true
		}
	}
	return false
}

// nftList runs nft list ARGS in the protected namespace.
func (e *labEnv) nftList(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", append([]string{"netns", "exec", e.Sensor, "nft", "list"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("nft list %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

var elementsRe = regexp.MustCompile(`(?s)elements = \{(.*?)\}`)

// fpElements lists the first word of each element of set (or map) name.
func (e *labEnv) fpElements(t *testing.T, kind, name string) []string {
	t.Helper()
	m := elementsRe.FindStringSubmatch(e.nftList(t, kind, "inet", e.table, name))
	if m == nil {
		return nil
	}
	var out []string
	for _, el := range strings.Split(m[1], ",") {
		if f := strings.Fields(el); len(f) > 0 {
			out = append(out, f[0])
		}
	}
	return out
}

// inMap reports whether src is in the kernel's block map of mode.
func (e *labEnv) inMap(t *testing.T, src netip.Addr, mode string) bool {
	fam := "6"
	if src.Is4() {
		fam = "4"
	}
	for _, a := range e.fpElements(t, "map", "fp_"+mode+fam) {
		if a == src.String() {
			return true
		}
	}
	return false
}

// forge sends one probe from src to port: hping3 for IPv4 (flags are its
// options: -S, -F, --udp; none is a NULL segment), nmap -S for IPv6 (flags
// is its scan type). It returns the tool's output.
func (e *labEnv) forge(t *testing.T, src netip.Addr, port int, flags ...string) string {
	t.Helper()
	if src.Is4() {
		args := append([]string{"hping3", "-q", "-c", "1", "-a", src.String(), "-p", fmt.Sprint(port)}, flags...)
		out := run(t, e.Scanner, 10*time.Second, append(args, e.Sensor4.String())...)
		if !strings.Contains(out, "1 packets transmitted") {
			t.Fatalf("%s: %s", strings.Join(args, " "), out)
		}
		return out
	}
	args := append(append([]string{}, nmapFast...), "-6", "-S", src.String(), "-e", e.ScannerIf)
	args = append(append(args, flags...), "-p", fmt.Sprint(port), e.Sensor6.String())
	return run(t, e.Scanner, 30*time.Second, args...)
}

// spoof4 and spoof6 are forged sources, one per case: no case's block
// touches another's.
func (e *labEnv) spoof4(i int) netip.Addr { return netip.AddrFrom4([4]byte{198, 19, 200, byte(i)}) }
func (e *labEnv) spoof6(i int) netip.Addr {
	b := e.Scanner6.As16()
	b[14], b[15] = 0xf0, byte(i)
	return netip.AddrFrom16(b)
}

func historyLines(t *testing.T, path string, a netip.Addr) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	n := 0
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, " Host: "+a.String()+"/") || strings.Contains(l, "/"+a.String()+" Port:") {
			n++
		}
	}
	return n
}

// TestFastPathProbes: SCAN_TRIGGER=0, no sensor running. Every probe kind
// blocks at its first packet, IPv4 and IPv6, and is reported (result line,
// history) by ps-block alone; ACK, RST and SYN-ACK never block; a port a
// daemon listens on (also one started after ps-block) never blocks;
// protected and ignored sources forged never block; an address added to an
// interface joins the kernel's protected set.
func TestFastPathProbes(t *testing.T) {
	e := newLab(t)
	gw := netip.AddrFrom4([4]byte{e.Sensor4.As4()[0], e.Sensor4.As4()[1], e.Sensor4.As4()[2], 254})
	if out, err := exec.Command("ip", "-n", e.Sensor, "route", "add", "default", "via", gw.String()).CombinedOutput(); err != nil {
		t.Fatalf("default route: %v: %s", err, out)
	}
	ignored := netip.MustParseAddr("198.19.201.5")
	writeFile(t, e.dir, "ignore", ignored.String()+"\n")
	protected := netip.MustParseAddr("198.19.202.9")
	conf := e.writeConf(t, "fp.conf", map[string]string{"FAST_PATH": "atcp,audp", "SCAN_TRIGGER": "0",
		"BLOCK_DURATION": "1h", "PROTECT_ADDRESSES": "198.19.202.0/24"})
	b := e.startFastPath(t, conf)
	history := filepath.Join(e.dir, "history")

	blocks := []struct {
		src   netip.Addr
		mode  string
		flags []string
	}{
		{e.spoof4(1), "atcp", []string{"-S"}},
		{e.spoof4(2), "atcp", []string{"-F"}},
		{e.spoof4(3), "atcp", nil}, // NULL
		{e.spoof4(4), "atcp", []string{"-F", "-P", "-U"}},
		{e.spoof4(5), "audp", []string{"--udp"}},
		{e.spoof6(1), "atcp", []string{"-sS"}},
		{e.spoof6(2), "atcp", []string{"-sF"}},
		{e.spoof6(3), "atcp", []string{"-sN"}},
		{e.spoof6(4), "atcp", []string{"-sX"}},
		{e.spoof6(5), "audp", []string{"-sU"}},
	}
	for i, c := range blocks {
		sent := time.Now()
		e.forge(t, c.src, 700+i, c.flags...)
		b.kernelBlocked(t, c.src, c.mode)
		t.Logf("%s %v: reported %v after the probe was sent", c.src, c.flags, time.Since(sent).Round(time.Millisecond))
		if !e.inMap(t, c.src, c.mode) {
			t.Errorf("%s reported but not in the kernel's map fp_%s", c.src, c.mode)
		}
	}

	// Never a block: segments with ACK or RST, ports with a socket,
	// protected and ignored sources.
	lateLn := func() net.Listener {
		var ln net.Listener
		netlab.InNamespace(t, e.Sensor, func() {
			var err error
			if ln, err = net.Listen("tcp", "[::]:600"); err != nil {
				t.Fatal(err)
			}
		})
		return ln
	}()
	go serveTCP(lateLn, "late\n")
	never := []struct {
		src   netip.Addr
		port  int
		flags []string
		why   string
	}{
		{e.spoof4(20), 710, []string{"-A"}, "ACK"},
		{e.spoof4(21), 710, []string{"-R"}, "RST"},
		{e.spoof4(22), 710, []string{"-S", "-A"}, "SYN-ACK"},
		{e.spoof4(23), 710, []string{"-R", "-A"}, "RST-ACK"},
		{e.spoof6(20), 710, []string{"-sA"}, "ACK over IPv6"},
		{e.spoof4(24), daemonTCP, []string{"-S"}, "SYN to a listening daemon"},
		{e.spoof4(25), daemonUDP, []string{"--udp"}, "UDP to a bound daemon"},
		{e.spoof6(21), daemonTCP, []string{"-sS"}, "SYN to a listening daemon over IPv6"},
		{e.spoof4(26), 600, []string{"-S"}, "SYN to a daemon started after ps-block"},
		{ignored, 711, []string{"-S"}, "an ignored source"},
		{protected, 711, []string{"-S"}, "a PROTECT_ADDRESSES source"},
		{gw, 711, []string{"-S"}, "the default gateway"},
	}
	for _, c := range never {
		e.forge(t, c.src, c.port, c.flags...)
	}
	// A control sent last: once it is reported, every packet before it
	// went through the rules.
	control := e.spoof4(30)
	e.forge(t, control, 712, "-S")
	b.kernelBlocked(t, control, "atcp")
	time.Sleep(500 * time.Millisecond) // two more listings of the maps
	for _, c := range never {
		if e.inMap(t, c.src, "atcp") || e.inMap(t, c.src, "audp") || b.anyResult(c.src) {
			t.Errorf("%s (%s) was blocked", c.src, c.why)
		}
	}
	// The late daemon's port, once closed, is watched again at once.
	lateLn.Close()
	e.forge(t, e.spoof4(27), 600, "-S")
	b.kernelBlocked(t, e.spoof4(27), "atcp")

	// Established traffic: a real client of the daemon is served and never
	// blocked.
	e.mustReach(t, e.Scanner4)
	e.mustReach(t, e.Scanner6)
	if b.anyResult(e.Scanner4) || b.anyResult(e.Scanner6) {
		t.Errorf("a client of the daemon was blocked")
	}

	// History: each kernel block once, written by ps-block alone.
	for _, c := range append(blocks, struct {
		src   netip.Addr
		mode  string
		flags []string
	}{control, "atcp", nil}) {
		if n := historyLines(t, history, c.src); n != 1 {
			t.Errorf("%s: %d lines in HISTORY_FILE, want 1", c.src, n)
		}
	}

	// The guard's kernel set follows an address added to an interface.
	added := netip.MustParseAddr("198.19.203.33")
	if out, err := exec.Command("ip", "-n", e.Sensor, "addr", "add", added.String()+"/32", "dev", "lo").CombinedOutput(); err != nil {
		t.Fatalf("ip addr add: %v: %s", err, out)
	}
	deadline := time.Now().Add(decisionLimit)
	for !strings.Contains(e.nftList(t, "set", "inet", e.table, "fp_protect4"), added.String()) {
		if time.Now().After(deadline) {
			t.Fatalf("%s never joined fp_protect4:\n%s", added, e.nftList(t, "set", "inet", e.table, "fp_protect4"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, a := range []netip.Addr{gw, ignored, e.Sensor4} {
		if set := e.nftList(t, "set", "inet", e.table, "fp_protect4"); !strings.Contains(set, a.String()) {
			t.Errorf("%s missing from fp_protect4:\n%s", a, set)
		}
	}
	if set := e.nftList(t, "set", "inet", e.table, "fp_protect4"); !strings.Contains(set, "198.19.202.0/24") {
		t.Errorf("PROTECT_ADDRESSES missing from fp_protect4:\n%s", set)
	}
}

// TestFastPathTrigger: SCAN_TRIGGER=2 in the kernel blocks on the third
// distinct port, not on retransmissions to the ports already seen.
func TestFastPathTrigger(t *testing.T) {
	e := newLab(t)
	conf := e.writeConf(t, "fp.conf", map[string]string{"FAST_PATH": "atcp", "SCAN_TRIGGER": "2"})
	b := e.startFastPath(t, conf)
	for _, c := range []struct {
		src   netip.Addr
		flags []string
	}{{e.spoof4(1), []string{"-S"}}, {e.spoof6(1), []string{"-sS"}}} {
		for _, port := range []int{720, 720, 721, 720, 721, 721} {
			e.forge(t, c.src, port, c.flags...)
		}
		time.Sleep(600 * time.Millisecond)
		if e.inMap(t, c.src, "atcp") || b.anyResult(c.src) {
			t.Fatalf("%s blocked after two distinct ports", c.src)
		}
		e.forge(t, c.src, 722, c.flags...)
		b.kernelBlocked(t, c.src, "atcp")
		if ev := waitEvent(t, b.results, decisionLimit, "history", func(ev *event.Event) bool {
			return ev.Target == c.src && ev.Action == "hosts.deny"
		}); !ev.OK {
			t.Errorf("hosts.deny for the kernel's block of %s: %s", c.src, ev.Detail)
		}
	}
}

// TestFastPathFullSet: with the (source, port) pairs' set full, a probe
// is not counted in the kernel and does not block there (though its source
// had one port counted and SCAN_TRIGGER is 1): it passes to the pipeline,
// which sees and judges it, and ps-block says so once a second.
func TestFastPathFullSet(t *testing.T) {
	e := newLab(t)
	conf := e.writeConf(t, "fp.conf", map[string]string{"FAST_PATH": "atcp", "SCAN_TRIGGER": "1"})
	b := e.startFastPath(t, conf)
	// The scanner's first port: counted (stage 1), so that its next new
	// port would block it.
	src := e.Scanner4
	run(t, e.Scanner, 10*time.Second, "hping3", "-q", "-c", "1", "-S", "-p", "729", e.Sensor4.String())
	if s1 := e.fpElements(t, "set", "fp_atcp4_s1"); len(s1) != 1 || s1[0] != src.String() {
		t.Fatalf("stage 1 after one probe: %v", s1)
	}
	// Fill the pairs' set from outside, as a flood of forged sources would.
	var sb strings.Builder
	fmt.Fprintf(&sb, "add element inet %s fp_atcp4_seen { ", e.table)
	for i := range 65535 {
		if i > 0 {
			sb.WriteString(", ")
		}
		fmt.Fprintf(&sb, "198.18.%d.%d . %d", 128+i/256/64, i/256%64*4, 1+i%256) // distinct pairs
	}
	sb.WriteString(" }\n")
	nftFile := writeFile(t, e.dir, "fill.nft", sb.String())
	if out, err := exec.Command("ip", "netns", "exec", e.Sensor, "nft", "-f", nftFile).CombinedOutput(); err != nil {
		t.Fatalf("fill the set: %v: %s", err, out)
	}
	// From the scanner's own address, so that an answer can come back.
	for _, port := range []int{730, 731, 732} {
		out := run(t, e.Scanner, 10*time.Second, "hping3", "-q", "-c", "1", "-S", "-p", fmt.Sprint(port), e.Sensor4.String())
		// Answered (RST from the closed port): left to the pipeline.
		if !strings.Contains(out, "1 packets received") {
			t.Errorf("probe to %d with a full set: %s", port, out)
		}
	}
	waitLine(t, b.log, decisionLimit, "full-set report", func(s string) bool {
		return strings.Contains(s, "fast path atcp: a kernel set was full for")
	})
	if e.inMap(t, src, "atcp") {
		t.Errorf("%s blocked by the kernel although its count could not be kept", src)
	}
	if b.anyResult(src) {
		t.Errorf("%s reported blocked although its count could not be kept", src)
	}
}

// TestFastPathUnblockRestart: an unblock lifts the kernel's block; a stop
// disarms detection and keeps the blocks; a restart reports nothing twice;
// a block the kernel made while ps-block was killed is reported at restart.
func TestFastPathUnblockRestart(t *testing.T) {
	e := newLab(t)
	conf := e.writeConf(t, "fp.conf", map[string]string{"FAST_PATH": "atcp", "SCAN_TRIGGER": "0", "BLOCK_DURATION": "1h"})
	history := filepath.Join(e.dir, "history")
	b := e.startFastPath(t, conf)
	lifted, kept := e.spoof4(50), e.spoof4(51)
	e.forge(t, lifted, 740, "-S")
	e.forge(t, kept, 741, "-S")
	b.kernelBlocked(t, lifted, "atcp")
	b.kernelBlocked(t, kept, "atcp")

	line := fmt.Sprintf(`{"v":1,"kind":"unblock","time":%q,"target":%q,"mode":"atcp"}`+"\n", time.Now().UTC().Format(time.RFC3339Nano), lifted)
	if _, err := io.WriteString(b.stdin, line); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, b.results, decisionLimit, "unblock result", func(ev *event.Event) bool {
		return ev.Target == lifted && ev.Action == "nft" && ev.OK && strings.Contains(ev.Detail, "lifted")
	})
	if e.inMap(t, lifted, "atcp") {
		t.Fatalf("%s still in the kernel's map after unblock", lifted)
	}

	// A stop: the blocks stay, detection goes.
	b.stop(t, syscall.SIGTERM)
	if !e.inMap(t, kept, "atcp") {
		t.Fatalf("%s lost from the kernel at stop", kept)
	}
	if chain := e.nftList(t, "chain", "inet", e.table, "fastpath"); strings.Contains(chain, "jump fp_") {
		t.Fatalf("detection still armed after a stop:\n%s", chain)
	}
	b = e.startFastPath(t, conf)
	time.Sleep(time.Second) // four listings of the maps
	if b.anyResult(kept) {
		t.Errorf("restart reported %s again:\n%s", kept, b.results)
	}
	if n := historyLines(t, history, kept); n != 1 {
		t.Errorf("%s: %d lines in HISTORY_FILE after a restart, want 1", kept, n)
	}

	// A crash leaves detection armed: the kernel blocks with no ps-block
	// running; the next one reports it.
	b.stop(t, syscall.SIGKILL)
	crashed := e.spoof4(52)
	e.forge(t, crashed, 742, "-S")
	if !e.inMap(t, crashed, "atcp") {
		t.Fatalf("no kernel block of %s while ps-block was down", crashed)
	}
	b = e.startFastPath(t, conf)
	b.kernelBlocked(t, crashed, "atcp")
	if n := historyLines(t, history, crashed); n != 1 {
		t.Errorf("%s: %d lines in HISTORY_FILE, want 1", crashed, n)
	}
	if b.anyResult(kept) {
		t.Errorf("restart after a crash reported %s again", kept)
	}
}
