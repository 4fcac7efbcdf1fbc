package tests

import (
	"context"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/portsentry/pipeline/shared/event"
	"github.com/portsentry/pipeline/shared/netlab"
)

// TestLabPcapReplay captures the packets of a live run with tcpdump on the
// protected host, while ps-sniff -atcp -audp watches: an IPv4 SYN scan and
// an IPv6 UDP scan, with real daemons answering on TCP 80 and UDP 53.
// Replaying the capture with ps-sniff -r (naming this host's addresses)
// through ps-judge must give the same hits and the same decisions as live;
// the daemons' ports are learnt from their answers in the capture.
func TestLabPcapReplay(t *testing.T) {
	if _, err := exec.LookPath("tcpdump"); err != nil {
		netlab.SkipOrFail(t, "no tcpdump: %v", err)
	}
	e := newLab(t)
	conf := e.writeConf(t, "lab.conf", nil)
	pcap := filepath.Join(e.dir, "scan.pcap")
	stopCapture := e.capture(t, pcap)
	p := e.startPipeline(t, conf, "ps-sniff", "-atcp", "-audp")
	// Honest clients use the daemons first, as they would on a real host:
	// the replay can only learn a listening port from an answer in the
	// capture, and a scanner blocked at its first probe gets none.
	e.mustReach(t, e.bystander4)
	e.mustEchoUDP(t, e.bystander6)

	run(t, e.Scanner, 40*time.Second, append(slices.Clone(nmapFast), "-sS", "-p", "1-200", e.Sensor4.String())...)
	run(t, e.Scanner, 40*time.Second, append(slices.Clone(nmapFast), "-6", "-sU", "-p", "1-100", e.Sensor6.String())...)
	waitBlocked(t, p, e.Scanner4, event.ModeATCP)
	waitBlocked(t, p, e.Scanner6, event.ModeAUDP)
	// The last probes of a scan may still be on their way to the sensor:
	// the hit count settles before the live run is compared.
	settle(t, p.hits)
	stopCapture()

	cmd := exec.Command(bin("ps-sniff"), "-c", conf, "-r", pcap, "-atcp", "-audp", "--addr", e.Sensor4.String(), "--addr", e.Sensor6.String())
	out, replayHits := runLines(t, "ps-sniff -r", cmd)
	if got, want := hitKeys(replayHits.events(t)), hitKeys(p.hits.events(t)); !slices.Equal(got, want) {
		t.Errorf("replayed hits differ from live (%d replayed, %d live): only in replay %q; only live %q; first difference at %d",
			len(got), len(want), minus(got, want), minus(want, got), firstDiff(got, want))
	}
	live, replayed := decisionKeys(p.decisions.events(t)), decisionKeys(e.judge(t, conf, out))
	if !slices.Equal(live, replayed) {
		t.Errorf("replayed decisions %q; live %q", replayed, live)
	}
	// ps-judge may say a decision again as a host goes on scanning; the
	// hosts and modes decided on are exactly the two scanners'.
	decided := map[string]bool{}
	for _, d := range p.decisions.events(t) {
		decided[fmt.Sprintf("%s %s %s", d.Kind, d.Target, d.Mode)] = true
	}
	want := []string{"block " + e.Scanner4.String() + " atcp", "block " + e.Scanner6.String() + " audp"}
	if got := slices.Sorted(maps.Keys(decided)); !slices.Equal(got, want) {
		t.Errorf("decided %q, want %q", got, want)
	}
	e.assertBlockedOnly(t, p, e.Scanner4, e.Scanner6)
}

// mustEchoUDP: a datagram from from to the UDP daemon comes back.
func (e *labEnv) mustEchoUDP(t *testing.T, from netip.Addr) {
	t.Helper()
	var err error
	var got string
	netlab.InNamespace(t, e.Scanner, func() {
		var c *net.UDPConn
		to := netip.AddrPortFrom(e.sensorAddr(from), daemonUDP)
		if c, err = net.DialUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(from, 0)), net.UDPAddrFromAddrPort(to)); err != nil {
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err = c.Write([]byte("query")); err != nil {
			return
		}
		b := make([]byte, 64)
		var n int
		n, err = c.Read(b)
		got = string(b[:n])
	})
	if err != nil || got != "query" {
		t.Fatalf("UDP daemon's echo to %s: %q, %v", from, got, err)
	}
}

// hitKeys is what a replay must reproduce of hits, in order.
func hitKeys(hits []*event.Event) []string {
	var out []string
	for _, h := range hits {
		out = append(out, fmt.Sprintf("%s %s %s:%d>%s:%d %s %s", h.Mode, h.Proto, h.Src, h.Sport, h.Dst, h.Dport, h.Scan, h.Flags))
	}
	return out
}

// settle waits until l has had no new line for a quarter of a second (at
// most 5 s).
func settle(t *testing.T, l *lineLog) {
	t.Helper()
	n, since := -1, time.Now()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if m := len(l.lines()); m != n {
			n, since = m, time.Now()
		} else if time.Since(since) > 250*time.Millisecond {
			return
		}
	}
	t.Fatalf("%s still writing after 5s", l.name)
}

// capture starts tcpdump on the protected host's end of the link, writing
// file, and returns once it listens; the function returned stops it and
// waits until the file is complete. It is bounded in packets and time.
func (e *labEnv) capture(t *testing.T, file string) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", e.Sensor, "tcpdump", "-n", "-U", "-B", "8192", "-i", e.SensorIf, "-c", "20000", "-w", file)
	cmd.WaitDelay = 2 * time.Second
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	log := &lineLog{name: "tcpdump"}
	done := make(chan struct{})
	go func() { record(stderr, log, nil); close(done) }()
	var stopped bool
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		// tcpdump drops what is still in its ring when interrupted, and
		// libpcap hands over a ring block only when it is full or after
		// its 1 s timeout: wait until the file has not grown for longer
		// than that (at most 6 s).
		last := int64(-1)
		for deadline := time.Now().Add(6 * time.Second); time.Now().Before(deadline); time.Sleep(1200 * time.Millisecond) {
			fi, err := os.Stat(file)
			if err == nil && fi.Size() == last {
				break
			}
			if err == nil {
				last = fi.Size()
			}
		}
		_ = cmd.Process.Signal(syscall.SIGINT) // tcpdump flushes and exits
		<-done
		_ = cmd.Wait()
		cancel()
		t.Logf("%s", strings.Join(log.lines(), "; "))
	}
	t.Cleanup(stop)
	waitLine(t, log, readyLimit, "tcpdump listening", func(s string) bool { return strings.Contains(s, "listening on") })
	return stop
}

// minus is a less b, as multisets.
func minus(a, b []string) []string {
	n := map[string]int{}
	for _, s := range b {
		n[s]++
	}
	var out []string
	for _, s := range a {
		if n[s] > 0 {
			n[s]--
			continue
		}
		out = append(out, s)
	}
	return out
}

func firstDiff(a, b []string) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}
