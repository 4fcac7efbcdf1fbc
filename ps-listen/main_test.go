package main

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/portsentry/pipeline/shared/event"
)

// proc is the ps-listen binary running with its output on a pipe.
type proc struct {
	cmd    *exec.Cmd
	out    *os.File // read end of stdout
	stderr *syncBuffer
	exited chan struct{}
	err    error // of Wait, once exited is closed
}

// startProc runs argv (ps-listen, or a wrapper such as ip netns exec) and
// kills it at the end of the test if it is still running.
func startProc(t *testing.T, argv ...string) *proc {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: exec.Command(argv[0], argv[1:]...), out: r, stderr: &syncBuffer{}, exited: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = w, p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	go func() {
		p.err = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			p.cmd.Process.Kill()
			<-p.exited
		}
		r.Close()
		if t.Failed() {
			t.Logf("ps-listen's log:\n%s", p.stderr)
		}
	})
	return p
}

// waitActive waits for 1.2's last start-up line.
func (p *proc) waitActive(t *testing.T) {
	t.Helper()
	waitFor(t, 15*time.Second, "PortSentry is now active and listening", func() bool {
		select {
		case <-p.exited:
			t.Fatalf("ps-listen exited during start-up: %v\n%s", p.err, p.stderr)
		default:
		}
		return strings.Contains(p.stderr.String(), "adminalert: PortSentry is now active and listening.\n")
	})
}

// wait returns the exit status, failing the test after 10 s.
func (p *proc) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		t.Fatalf("ps-listen still running after 10 s:\n%s", p.stderr)
	}
	var ee *exec.ExitError
	if errors.As(p.err, &ee) {
		return ee.ExitCode()
	}
	if p.err != nil {
		t.Fatalf("wait: %v", p.err)
	}
	return 0
}

// status reads one numeric field of /proc/PID/status (kB for memory).
func (p *proc) status(t *testing.T, field string) int {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(p.cmd.Process.Pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n, err := strconv.Atoi(strings.Fields(v)[0])
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			return n
		}
	}
	t.Fatalf("no %s in /proc status", field)
	return 0
}

func TestBinaryModes(t *testing.T) {
	bin := build(t)
	for _, tc := range []struct {
		name     string
		args     []string
		tcp, udp bool
		sig      syscall.Signal
	}{
		{"tcp", []string{"-tcp"}, true, false, syscall.SIGTERM},
		{"udp", []string{"-udp"}, false, true, syscall.SIGINT},
		{"both single dash", []string{"-tcp", "-udp"}, true, true, syscall.SIGTERM},
		{"both double dash", []string{"--udp", "--tcp"}, true, true, syscall.SIGINT},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ports := freePorts(t, 4)
			conf := writeConfig(t, `TCP_PORTS="`+portList(ports[:2])+`"`, `UDP_PORTS="`+portList(ports[2:])+`"`)
			p := startProc(t, append([]string{bin, "-c", conf}, tc.args...)...)
			p.waitActive(t)
			hits := readHits(t, p.out)
			log := p.stderr.String()
			for i, port := range ports {
				proto, want := "TCP", tc.tcp
				if i >= 2 {
					proto, want = "UDP", tc.udp
				}
				if got := strings.Contains(log, "adminalert: Going into listen mode on "+proto+" port: "+strconv.Itoa(int(port))+"\n"); got != want {
					t.Errorf("%s port %d listened: %v, want %v", proto, port, got, want)
				}
				if want {
					dst := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port)
					src := probe(t, strings.ToLower(proto), dst.String())
					checkHit(t, nextHit(t, hits), strings.ToLower(proto), src, dst)
				}
			}
			if os.Geteuid() == 0 {
				if !strings.Contains(log, "adminalert: now running as user nobody") {
					t.Error("no privilege drop logged")
				}
				if uid := p.status(t, "Uid"); uid == 0 {
					t.Error("still running as root")
				}
			}
			p.cmd.Process.Signal(tc.sig)
			if code := p.wait(t); code != 0 {
				t.Errorf("exit status %d after %v, want 0", code, tc.sig)
			}
			if !strings.Contains(p.stderr.String(), "adminalert: stopping on") {
				t.Error("no stop logged")
			}
		})
	}
}

func TestBinaryFailures(t *testing.T) {
	bin := build(t)
	ports := freePorts(t, 2)
	tcp, udp := strconv.Itoa(int(ports[0])), strconv.Itoa(int(ports[1]))
	// Another program holds the first port for TCP and the second for UDP.
	holders := []*socket{}
	for _, h := range []struct {
		proto event.Proto
		port  uint16
	}{{event.ProtoTCP, ports[0]}, {event.ProtoUDP, ports[1]}} {
		s, err := newBinder().bind(h.proto, h.port)
		if err != nil {
			t.Fatal(err)
		}
		holders = append(holders, s)
	}
	t.Cleanup(func() { closeAll(holders) })

	for _, tc := range []struct {
		name string
		args []string
		conf []string
		want string
	}{
		{"no mode", nil, nil, "no mode: give -tcp, -udp or both"},
		{"stray argument", []string{"-tcp", "tcp"}, nil, `unexpected argument "tcp" (see ps-listen --help)`},
		{"every tcp port in use", []string{"-tcp"}, []string{`TCP_PORTS="` + tcp + `"`}, "could not bind ANY TCP sockets (1 port in TCP_PORTS)"},
		{"every port of both modes in use", []string{"-tcp", "-udp"}, []string{`TCP_PORTS="` + tcp + `"`, `UDP_PORTS="` + udp + `"`},
			"could not bind ANY TCP sockets (1 port in TCP_PORTS); could not bind ANY UDP sockets (1 port in UDP_PORTS). Shutting down"},
		{"empty port list", []string{"-udp"}, []string{`UDP_PORTS=""`}, "line 1: UDP_PORTS: empty: no UDP port to watch"},
		{"malformed port", []string{"-tcp"}, []string{`TCP_PORTS="1,70000"`}, "line 1: TCP_PORTS"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := startProc(t, append([]string{bin, "-c", writeConfig(t, tc.conf...)}, tc.args...)...)
			want := 1
			if tc.name == "stray argument" {
				want = 2 // a usage error
			}
			if code := p.wait(t); code != want {
				t.Errorf("exit status %d, want %d", code, want)
			}
			if !strings.Contains(p.stderr.String(), tc.want) {
				t.Errorf("no %q in:\n%s", tc.want, p.stderr)
			}
		})
	}
}

// TestBinaryOneModeBound: with -tcp -udp and every UDP port taken, ps-listen
// says so loudly and goes on watching its TCP ports.
func TestBinaryOneModeBound(t *testing.T) {
	bin := build(t)
	ports := freePorts(t, 2)
	held, err := newBinder().bind(event.ProtoUDP, ports[1])
	if err != nil {
		t.Fatal(err)
	}
	defer closeAll([]*socket{held})
	p := startProc(t, bin, "-tcp", "-udp", "-c", writeConfig(t, `TCP_PORTS="`+portList(ports[:1])+`"`, `UDP_PORTS="`+portList(ports[1:])+`"`))
	p.waitActive(t)
	if want := "securityalert: could not bind ANY UDP sockets (1 port in UDP_PORTS): that mode watches nothing"; !strings.Contains(p.stderr.String(), want) {
		t.Errorf("no %q in:\n%s", want, p.stderr)
	}
	dst := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), ports[0])
	src := probe(t, "tcp", dst.String())
	checkHit(t, nextHit(t, readHits(t, p.out)), "tcp", src, dst)
	p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.wait(t); code != 0 {
		t.Errorf("exit status %d after SIGTERM", code)
	}
}

// TestBinaryDownstreamClosed: when the next stage dies, ps-listen stops with
// a clear message and a failure status, even with no hit to write.
func TestBinaryDownstreamClosed(t *testing.T) {
	bin := build(t)
	for _, tc := range []struct {
		name   string
		before bool // a hit went out before the reader died
	}{{"idle", false}, {"after a hit", true}} {
		t.Run(tc.name, func(t *testing.T) {
			ports := freePorts(t, 1)
			p := startProc(t, bin, "-tcp", "-c", writeConfig(t, `TCP_PORTS="`+portList(ports)+`"`))
			p.waitActive(t)
			addr := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), ports[0]).String()
			if tc.before {
				probe(t, "tcp", addr)
				buf := make([]byte, event.MaxLine)
				p.out.SetReadDeadline(time.Now().Add(5 * time.Second))
				if _, err := p.out.Read(buf); err != nil {
					t.Fatalf("reading the hit: %v", err)
				}
			}
			p.out.Close()
			want := 1
			if tc.name == "stray argument" {
				want = 2 // a usage error
			}
			if code := p.wait(t); code != want {
				t.Errorf("exit status %d, want %d", code, want)
			}
			if want := "standard output closed: the next stage has exited"; !strings.Contains(p.stderr.String(), want) {
				t.Errorf("no %q in:\n%s", want, p.stderr)
			}
		})
	}
}

// TestBinaryFlood: 2000 connections, 50 at a time, through the real program:
// every one is reported, threads and resident memory stay small.
func TestBinaryFlood(t *testing.T) {
	const conns, workers = 2000, 50
	bin := build(t)
	ports := freePorts(t, 1)
	p := startProc(t, bin, "-tcp", "-c", writeConfig(t, `TCP_PORTS="`+portList(ports)+`"`, `PORT_BANNER="go away"`))
	p.waitActive(t)
	hits := readHits(t, p.out)
	addr := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), ports[0]).String()
	rssBefore := p.status(t, "VmRSS")

	jobs := make(chan struct{})
	var wg sync.WaitGroup
	var failed atomic.Int64
	for range workers {
		wg.Go(func() {
			for range jobs {
				c, err := dialTCP(addr)
				if err != nil {
					failed.Add(1)
					continue
				}
				c.Close()
			}
		})
	}
	var peakThreads, peakRSS int
	sample := func() {
		peakThreads = max(peakThreads, p.status(t, "Threads"))
		peakRSS = max(peakRSS, p.status(t, "VmRSS"))
	}
	start := time.Now()
	for i := range conns {
		jobs <- struct{}{}
		if i%100 == 0 {
			sample()
		}
	}
	close(jobs)
	wg.Wait()
	got := 0
	for range conns - int(failed.Load()) {
		nextHit(t, hits)
		got++
	}
	elapsed := time.Since(start)
	sample()
	t.Logf("%d hits from %d connections in %v (%.0f/s); ps-listen: VmRSS %d kB at rest, peak %d kB; peak %d threads",
		got, conns, elapsed.Round(time.Millisecond), float64(got)/elapsed.Seconds(), rssBefore, peakRSS, peakThreads)
	if failed.Load() > 0 {
		t.Errorf("%d connections failed", failed.Load())
	}
	if peakThreads > 16 {
		t.Errorf("%d threads under the flood", peakThreads)
	}
	if peakRSS > rssBefore+8<<10 {
		t.Errorf("resident memory grew from %d kB to %d kB", rssBefore, peakRSS)
	}
}

// TestBinaryManyPorts: 5000 TCP and 5000 UDP ports bind quickly and cost
// little, and the last one of each still reports.
func TestBinaryManyPorts(t *testing.T) {
	const first, last = 21000, 25999
	bin := build(t)
	rng := strconv.Itoa(first) + "-" + strconv.Itoa(last)
	start := time.Now()
	p := startProc(t, bin, "-tcp", "-udp", "-c", writeConfig(t, `TCP_PORTS="`+rng+`"`, `UDP_PORTS="`+rng+`"`))
	p.waitActive(t)
	took := time.Since(start)
	hits := readHits(t, p.out)
	log := p.stderr.String()
	bound := strings.Count(log, "adminalert: Going into listen mode on")
	t.Logf("%d sockets bound in %v; ps-listen: VmRSS %d kB, %d threads", bound, took.Round(time.Millisecond), p.status(t, "VmRSS"), p.status(t, "Threads"))
	// Another program may hold a few ports of the range: a warning each.
	if skipped := strings.Count(log, "could not bind"); bound+skipped != 2*(last-first+1) {
		t.Errorf("%d bound and %d skipped of %d", bound, skipped, 2*(last-first+1))
	}
	for _, proto := range []string{"tcp", "udp"} {
		dst := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), last)
		if !strings.Contains(log, "listen mode on "+strings.ToUpper(proto)+" port: "+strconv.Itoa(last)+"\n") {
			continue
		}
		src := probe(t, proto, dst.String())
		checkHit(t, nextHit(t, hits), proto, src, dst)
	}
	if rss := p.status(t, "VmRSS"); rss > 64<<10 {
		t.Errorf("VmRSS %d kB with %d sockets", rss, bound)
	}
}

// TestBinaryDescriptorLimit: more ports than descriptors is one clear warning;
// the ports bound are watched and connections are still accepted.
func TestBinaryDescriptorLimit(t *testing.T) {
	bin := build(t)
	prlimit, err := exec.LookPath("prlimit")
	if err != nil {
		skipOrFail(t, "no prlimit (util-linux)")
	}
	ports := freePorts(t, 80)
	p := startProc(t, prlimit, "--nofile=48:48", bin, "-tcp", "-c", writeConfig(t, `TCP_PORTS="`+portList(ports)+`"`))
	p.waitActive(t)
	hits := readHits(t, p.out)
	if want := "adminalert: ERROR: out of file descriptors after"; !strings.Contains(p.stderr.String(), want) {
		t.Errorf("no %q in:\n%s", want, p.stderr)
	}
	for range 3 {
		dst := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), ports[0])
		src := probe(t, "tcp", dst.String())
		checkHit(t, nextHit(t, hits), "tcp", src, dst)
	}
}

// TestBinaryConnect: with --connect the hits go to the Unix socket, and
// standard output carries nothing.
func TestBinaryConnect(t *testing.T) {
	bin := build(t)
	// Run as root, ps-listen connects before it drops to RUN_AS_USER: a
	// socket only root may use (0600) must work.
	dir, err := os.MkdirTemp("", "ps-listen-connect")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "judge.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	for name, mode := range map[string]os.FileMode{dir: 0o755, path: 0o600} {
		if err := os.Chmod(name, mode); err != nil {
			t.Fatal(err)
		}
	}
	ports := freePorts(t, 1)
	p := startProc(t, bin, "-udp", "--connect", path, "-c", writeConfig(t, `UDP_PORTS="`+portList(ports)+`"`))
	p.waitActive(t)
	stdout := readHits(t, p.out)

	dst := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), ports[0])
	src := probe(t, "udp", dst.String())
	ln.SetDeadline(time.Now().Add(5 * time.Second))
	c, err := ln.Accept()
	if err != nil {
		t.Fatalf("ps-listen did not connect: %v", err)
	}
	defer c.Close()
	checkHit(t, nextHit(t, readHits(t, c)), "udp", src, dst)

	p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.wait(t); code != 0 {
		t.Errorf("exit status %d after SIGTERM", code)
	}
	if ev, ok := <-stdout; ok {
		t.Errorf("standard output carried %s", event.Encode(&ev))
	}
}
