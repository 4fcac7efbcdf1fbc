package tests

// Helpers of the network lab tests (lab_*_test.go): a two-namespace lab with
// real daemons, the whole pipeline started in the protected namespace with
// every stage's output recorded, probes and checks from the scanner side.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/portsentry/pipeline/shared/event"
	"github.com/portsentry/pipeline/shared/netlab"
)

// Lab scans are kept short: one try per probe, a short round trip, small
// port lists. Only the sensor namespace's own address is ever scanned.
var nmapFast = []string{"nmap", "-n", "-Pn", "--max-retries", "0", "--max-rtt-timeout", "100ms", "--host-timeout", "20s"}

const (
	daemonTCP = 80 // a real TCP daemon on the protected host (both families)
	daemonUDP = 53 // a real UDP daemon on the protected host (both families)

	// How long a stage may take to be ready, a decision to be made and
	// carried out: generous, since they are waited for, not slept.
	readyLimit    = 10 * time.Second
	decisionLimit = 15 * time.Second
	// How long a connect from a blocked host is given before it counts as
	// unanswered: the veth answers in microseconds when not blocked.
	probeLimit = 1500 * time.Millisecond
)

// labMu serializes netlab.New, whose name counter is not safe for
// concurrent use.
var labMu sync.Mutex

// labEnv is one lab: the two namespaces, real daemons on the protected
// host, a bystander address on the scanner's side that never scans (to
// show that only the scanner is blocked) and a directory for the files.
type labEnv struct {
	*netlab.Lab
	dir        string
	table      string // the nft table, unique per test
	bystander4 netip.Addr
	bystander6 netip.Addr
}

func newLab(t *testing.T) *labEnv {
	t.Helper()
	// Unlocked by defer: netlab.New may skip the test (runtime.Goexit).
	l := func() *netlab.Lab { labMu.Lock(); defer labMu.Unlock(); return netlab.New(t) }()
	e := &labEnv{Lab: l, dir: t.TempDir()}
	e.table = "pslab" + strings.TrimPrefix(l.Sensor, "pss-sens-")
	b4 := l.Scanner4.As4()
	b4[3] = 3
	e.bystander4 = netip.AddrFrom4(b4)
	b6 := l.Scanner6.As16()
	b6[15] = 3
	e.bystander6 = netip.AddrFrom16(b6)
	// The bystander's IPv6 address is deprecated (preferred_lft 0) so that
	// the scanners never pick it as their source; a bound socket still can.
	for _, args := range [][]string{
		{"-n", l.Scanner, "addr", "add", e.bystander4.String() + "/24", "dev", l.ScannerIf},
		{"-n", l.Scanner, "addr", "add", e.bystander6.String() + "/64", "dev", l.ScannerIf, "nodad", "preferred_lft", "0"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	e.startDaemons(t)
	return e
}

// startDaemons starts a TCP daemon that greets and closes, and a UDP
// daemon that echoes, on every address of the protected host; both stop at
// the end of the test.
func (e *labEnv) startDaemons(t *testing.T) {
	t.Helper()
	var ln net.Listener
	var pc net.PacketConn
	netlab.InNamespace(t, e.Sensor, func() {
		var err error
		if ln, err = net.Listen("tcp", fmt.Sprintf("[::]:%d", daemonTCP)); err != nil {
			t.Fatalf("TCP daemon: %v", err)
		}
		if pc, err = net.ListenPacket("udp", fmt.Sprintf("[::]:%d", daemonUDP)); err != nil {
			t.Fatalf("UDP daemon: %v", err)
		}
	})
	t.Cleanup(func() { ln.Close(); pc.Close() })
	go serveTCP(ln, "daemon\n")
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo(buf[:n], from)
		}
	}()
}

// serveTCP greets every connection and closes it, until ln is closed.
func serveTCP(ln net.Listener, greeting string) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		_ = c.SetDeadline(time.Now().Add(time.Second))
		_, _ = c.Write([]byte(greeting))
		c.Close()
	}
}

// writeConf writes the test's configuration: every file in the test's
// directory, its own nft table, hosts.deny via wrappers, then the
// overrides, which replace the defaults rather than follow them: in 1.2's
// format the first of repeated keys counts.
func (e *labEnv) writeConf(t *testing.T, name string, over map[string]string) string {
	t.Helper()
	keys := map[string]string{
		"IGNORE_FILE":     filepath.Join(e.dir, "ignore"),
		"BLOCKED_FILE":    filepath.Join(e.dir, "blocked"),
		"HISTORY_FILE":    filepath.Join(e.dir, "history"),
		"HOSTS_DENY_FILE": filepath.Join(e.dir, "hosts.deny"),
		"KILL_HOSTS_DENY": "ALL: $TARGET$",
		"NFT_TABLE":       e.table,
		"RUN_AS_USER":     "nobody",
		"RESOLVE_HOST":    "0",
		// These tests measure the pipeline; the fast path's own tests
		// (fastpath_test.go) turn it on.
		"FAST_PATH": "0",
	}
	for k, v := range over {
		keys[k] = v
	}
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(keys)) {
		fmt.Fprintf(&b, "%s=%q\n", k, keys[k])
	}
	for _, f := range []string{"ignore", "hosts.deny"} {
		if p := filepath.Join(e.dir, f); !exists(p) {
			writeFile(t, e.dir, f, "")
		}
	}
	return writeFile(t, e.dir, name, b.String())
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

// lineLog is the lines one stage wrote, as they come.
type lineLog struct {
	name string
	mu   sync.Mutex
	all  []string
}

func (l *lineLog) add(s string) {
	l.mu.Lock()
	l.all = append(l.all, s)
	l.mu.Unlock()
}

func (l *lineLog) lines() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.all)
}

func (l *lineLog) String() string { return strings.Join(l.lines(), "\n") }

// events decodes every line; a stage writing a line that does not decode
// is a failure of that stage.
func (l *lineLog) events(t *testing.T) []*event.Event {
	t.Helper()
	var out []*event.Event
	for _, s := range l.lines() {
		ev, err := event.Decode([]byte(s))
		if err != nil {
			t.Fatalf("%s wrote a bad line %q: %v", l.name, s, err)
		}
		out = append(out, &ev)
	}
	return out
}

// waitLine waits until a line of l matches, and returns it; the test fails
// at the limit, showing what the stage did write.
func waitLine(t *testing.T, l *lineLog, limit time.Duration, what string, match func(string) bool) string {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		for _, s := range l.lines() {
			if match(s) {
				return s
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s from %s within %v; it wrote:\n%s", what, l.name, limit, l)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitEvent is waitLine for event lines.
func waitEvent(t *testing.T, l *lineLog, limit time.Duration, what string, match func(*event.Event) bool) *event.Event {
	t.Helper()
	s := waitLine(t, l, limit, what, func(s string) bool {
		ev, err := event.Decode([]byte(s))
		return err == nil && match(&ev)
	})
	ev, _ := event.Decode([]byte(s))
	return &ev
}

// pipeline is a sensor | ps-judge | ps-block run inside the protected
// namespace, wired through the test so that each stage's lines are kept.
type pipeline struct {
	conf                     string
	hits, decisions, results *lineLog
	log                      *lineLog // every stage's stderr
}

// startPipeline starts sensor (a program and its mode flags) | ps-judge |
// ps-block with the configuration conf, and returns once every stage says
// it is ready. Everything is stopped in t.Cleanup; on failure the stages'
// logs are shown.
func (e *labEnv) startPipeline(t *testing.T, conf string, sensor ...string) *pipeline {
	t.Helper()
	p := &pipeline{
		conf:      conf,
		hits:      &lineLog{name: sensor[0]},
		decisions: &lineLog{name: "ps-judge"},
		results:   &lineLog{name: "ps-block"},
		log:       &lineLog{name: "stderr"},
	}
	stages := []*exec.Cmd{
		e.command(sensor[0], append([]string{"-c", conf}, sensor[1:]...)...),
		e.command("ps-judge", "-c", conf),
		e.command("ps-block", "-c", conf),
	}
	outs := []*lineLog{p.hits, p.decisions, p.results}
	var copiers sync.WaitGroup
	for i, cmd := range stages {
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		stderr, err := cmd.StderrPipe()
		if err != nil {
			t.Fatal(err)
		}
		var next io.WriteCloser
		if i+1 < len(stages) {
			if next, err = stages[i+1].StdinPipe(); err != nil {
				t.Fatal(err)
			}
		}
		copiers.Add(2)
		go func() { defer copiers.Done(); record(stdout, outs[i], next) }()
		go func() { defer copiers.Done(); record(stderr, p.log, nil) }()
	}
	// Downstream first, so that no stage ever writes to one not started.
	for i := len(stages) - 1; i >= 0; i-- {
		if err := stages[i].Start(); err != nil {
			t.Fatalf("start %v: %v", stages[i].Args, err)
		}
	}
	t.Cleanup(func() {
		// Upstream first: each later stage then ends on end of input.
		for _, cmd := range stages {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			done := make(chan struct{})
			go func() { _ = cmd.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				_ = cmd.Process.Kill()
				<-done
				t.Errorf("%s did not stop on SIGTERM within 5s", filepath.Base(cmd.Args[4]))
			}
		}
		copiers.Wait()
		if t.Failed() {
			t.Logf("hits:\n%s\ndecisions:\n%s\nresults:\n%s\nlogs:\n%s", p.hits, p.decisions, p.results, p.log)
		}
	})
	waitLine(t, p.log, readyLimit, "ready sensor", func(s string) bool {
		return strings.Contains(s, sensor[0]+"[") && strings.Contains(s, "PortSentry is now active and listening.")
	})
	waitLine(t, p.log, readyLimit, "ready ps-judge", func(s string) bool { return strings.Contains(s, "portsentry judge is starting.") })
	waitLine(t, p.log, readyLimit, "ready ps-block", func(s string) bool { return strings.Contains(s, "PortSentry ps-block is active") })
	return p
}

// command is a program of ours run in the protected namespace. ip netns
// exec execs the program, so the process is the program itself.
func (e *labEnv) command(prog string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", e.Sensor, bin(prog)}, args...)...)
}

// record keeps every line of r in l and passes it on to next, closing next
// at the end so the next stage sees end of input.
func record(r io.Reader, l *lineLog, next io.WriteCloser) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		l.add(sc.Text())
		if next != nil {
			_, _ = next.Write(append(sc.Bytes(), '\n'))
		}
	}
	_, _ = io.Copy(io.Discard, r)
	if next != nil {
		next.Close()
	}
}

// run runs a tool in namespace ns with a time limit and returns its output;
// a tool that is missing skips (or, with CI=true, fails) the test. The exit
// status is not judged: hping3 fails when nothing answers, which is the
// point of a block; the tests judge what the pipeline saw instead.
func run(t *testing.T, ns string, limit time.Duration, args ...string) string {
	t.Helper()
	if _, err := exec.LookPath(args[0]); err != nil {
		netlab.SkipOrFail(t, "no %s: %v", args[0], err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns}, args...)...)
	cmd.WaitDelay = time.Second
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("%s: still running after %v: %s", strings.Join(args, " "), limit, out)
	}
	if err != nil {
		t.Logf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// sensorAddr is the protected host's address in the family of a.
func (e *labEnv) sensorAddr(a netip.Addr) netip.Addr {
	if a.Is4() {
		return e.Sensor4
	}
	return e.Sensor6
}

// dial connects from the scanner's namespace, from address from, to port
// of the protected host, and reads what the peer says first (up to limit).
func (e *labEnv) dial(t *testing.T, from netip.Addr, port int, limit time.Duration) (string, error) {
	t.Helper()
	var c net.Conn
	var err error
	netlab.InNamespace(t, e.Scanner, func() {
		d := net.Dialer{Timeout: limit, LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(from, 0))}
		c, err = d.Dial("tcp", netip.AddrPortFrom(e.sensorAddr(from), uint16(port)).String())
	})
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(limit))
	b, err := io.ReadAll(c)
	return string(b), err
}

// mustReach: from can open a connection to the real TCP daemon.
func (e *labEnv) mustReach(t *testing.T, from netip.Addr) {
	t.Helper()
	got, err := e.dial(t, from, daemonTCP, 5*time.Second)
	if err != nil || got != "daemon\n" {
		t.Fatalf("connect from %s to the daemon: %q, %v; want its greeting", from, got, err)
	}
}

// mustNotReach: from's connection to the real daemon goes unanswered: a
// timeout, not a refusal (a refusal would be an answer).
func (e *labEnv) mustNotReach(t *testing.T, from netip.Addr) {
	t.Helper()
	got, err := e.dial(t, from, daemonTCP, probeLimit)
	var ne net.Error
	if err == nil || !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("connect from blocked %s to the daemon: %q, %v; want a timeout", from, got, err)
	}
}

// nftSet lists the addresses in the table's set for a's family; a table
// not created yet (nothing ever blocked) is an empty set.
func (e *labEnv) nftSet(t *testing.T, a netip.Addr) []string {
	t.Helper()
	set := "portsentry6"
	if a.Is4() {
		set = "portsentry4"
	}
	out, err := exec.Command("ip", "netns", "exec", e.Sensor, "nft", "list", "set", "inet", e.table, set).CombinedOutput()
	if err != nil {
		if bytes.Contains(out, []byte("No such file or directory")) {
			return nil
		}
		t.Fatalf("nft list set inet %s %s: %v: %s", e.table, set, err, out)
	}
	m := regexp.MustCompile(`(?s)elements = \{(.*?)\}`).FindSubmatch(out)
	if m == nil {
		return nil
	}
	var addrs []string
	for _, el := range strings.Split(string(m[1]), ",") {
		if f := strings.Fields(el); len(f) > 0 {
			addrs = append(addrs, f[0])
		}
	}
	return addrs
}

// hostsDeny is the non-empty lines of the test's hosts.deny.
func (e *labEnv) hostsDeny(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(e.dir, "hosts.deny"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.TrimSpace(l) != "" {
			out = append(out, l)
		}
	}
	return out
}

// hostsDenyLine is what KILL_HOSTS_DENY="ALL: $TARGET$" gives for a: TCP
// wrappers write IPv6 addresses in brackets.
func hostsDenyLine(a netip.Addr) string {
	if a.Is6() {
		return "ALL: [" + a.String() + "]"
	}
	return "ALL: " + a.String()
}

// assertBlockedOnly checks that the targets, and no one else, are
// blocked: the decisions, the nft sets of both families, hosts.deny (one
// line each, in the order blocked), their connections now unanswered and
// the bystanders' still answered.
func (e *labEnv) assertBlockedOnly(t *testing.T, p *pipeline, targets ...netip.Addr) {
	t.Helper()
	for _, d := range p.decisions.events(t) {
		if !slices.Contains(targets, d.Target) {
			t.Errorf("decision about %s; only %v scanned", d.Target, targets)
		}
	}
	for _, fam := range []netip.Addr{e.Sensor4, e.Sensor6} {
		got := e.nftSet(t, fam)
		var want []string
		for _, a := range targets {
			if a.Is4() == fam.Is4() {
				want = append(want, a.String())
			}
		}
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("nft set for IPv%d holds %q, want %q", map[bool]int{true: 4, false: 6}[fam.Is4()], got, want)
		}
	}
	var want []string
	for _, a := range targets {
		want = append(want, hostsDenyLine(a))
	}
	if got := e.hostsDeny(t); !slices.Equal(got, want) {
		t.Errorf("hosts.deny holds %q, want %q", got, want)
	}
	for _, a := range targets {
		e.mustNotReach(t, a)
	}
	e.mustReach(t, e.bystander4)
	e.mustReach(t, e.bystander6)
}

// assertNothingBlocked: no host is in the nft sets or hosts.deny, and the
// scanner still reaches the daemon.
func (e *labEnv) assertNothingBlocked(t *testing.T, scanner netip.Addr) {
	t.Helper()
	for _, fam := range []netip.Addr{e.Sensor4, e.Sensor6} {
		if got := e.nftSet(t, fam); len(got) > 0 {
			t.Errorf("nft set holds %q; nothing should be blocked", got)
		}
	}
	if got := e.hostsDeny(t); len(got) > 0 {
		t.Errorf("hosts.deny holds %q; nothing should be blocked", got)
	}
	e.mustReach(t, scanner)
}

// waitBlocked waits for ps-judge's block of scanner in mode and for
// ps-block's nft and hosts.deny results, which must be successes, and
// returns the decision.
func waitBlocked(t *testing.T, p *pipeline, scanner netip.Addr, mode event.Mode) *event.Event {
	t.Helper()
	d := waitEvent(t, p.decisions, decisionLimit, "block of "+scanner.String(), func(d *event.Event) bool {
		return d.Kind == event.KindBlock && d.Target == scanner
	})
	if d.Mode != mode || d.Proto != mode.Proto() {
		t.Errorf("decision %s; want mode %s", decisionKey(d), mode)
	}
	for _, action := range []string{"nft", "hosts.deny"} {
		r := waitEvent(t, p.results, decisionLimit, action+" result for "+scanner.String(), func(r *event.Event) bool {
			return r.Target == scanner && r.Action == action
		})
		if !r.OK || r.Mode != mode {
			t.Errorf("%s result: ok=%v mode %s: %s", action, r.OK, r.Mode, r.Detail)
		}
	}
	return d
}

// decisionKey is what a replay must reproduce of a decision.
func decisionKey(d *event.Event) string {
	return fmt.Sprintf("%s %s %s %s/%d", d.Kind, d.Target, d.Mode, d.Proto, d.Port)
}

func decisionKeys(evs []*event.Event) []string {
	var out []string
	for _, d := range evs {
		out = append(out, decisionKey(d))
	}
	return out
}

// judge replays hit lines through ps-judge with conf, in the protected
// namespace (the same own addresses as live), and returns its decisions.
func (e *labEnv) judge(t *testing.T, conf string, hits []byte) []*event.Event {
	t.Helper()
	cmd := e.command("ps-judge", "-c", conf)
	cmd.Stdin = bytes.NewReader(hits)
	_, l := runLines(t, "ps-judge (replay)", cmd)
	return l.events(t)
}

// runLines runs cmd to its end and returns its standard output, whole and
// as a log of lines; a failure ends the test with its standard error.
func runLines(t *testing.T, name string, cmd *exec.Cmd) ([]byte, *lineLog) {
	t.Helper()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v\n%s", name, err, stderr.Bytes())
	}
	l := &lineLog{name: name}
	for _, s := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if s != "" {
			l.add(s)
		}
	}
	return out, l
}
