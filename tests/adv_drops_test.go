package tests

import (
	"errors"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestAdvDropReport: when ps-sniff cannot keep up, the kernel drops packets
// for it, and ps-sniff says so (PACKET_STATISTICS): a stopped ps-sniff is
// flooded past its 4 MiB socket buffer, and when it stops its log names a
// count of dropped packets no larger than what was sent. Its --metrics
// (scraped over HTTP inside the namespace, parsed by Prometheus' parser)
// count the drops and the hits of the flood.
func TestAdvDropReport(t *testing.T) {
	l := newAdvLab(t)
	dir := t.TempDir()
	conf := advConf(t, dir, "p.conf", map[string]string{"IGNORE_FILE": filepath.Join(dir, "ignore")})
	out, err := os.Create(filepath.Join(dir, "hits"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	cmd := advCommand(l.Sensor, "ps-sniff", "-c", conf, "-atcp", "-i", l.SensorIf, "--metrics", "127.0.0.1:0")
	cmd.Stdout = out
	sniff := advStart(t, dir, "ps-sniff", cmd)
	sniff.waitLog(t, "PortSentry is now active and listening.", 10*time.Second)
	addr := metricsAddr(t, sniff)

	const sent = 100_000 // some 20 times what the socket buffer holds
	if err := sniff.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	l.synflood(t, 20*time.Second, "-n", strconv.Itoa(sent), "-seed", "2", "-v6", "0",
		"-ports", "1-1023", "-exclude", netip.PrefixFrom(l.Scanner4, 24).Masked().String()+","+netip.PrefixFrom(l.Scanner6, 64).Masked().String())
	if err := sniff.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	// ps-sniff reads the kernel's counters every 500 ms.
	var drops, packets, hits float64
	deadline := time.Now().Add(10 * time.Second)
	for drops == 0 && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
		drops, packets, hits = 0, 0, 0
		for _, s := range scrapeIn(t, l.Sensor, addr) {
			switch {
			case s.Name == "portsentry_capture_drops_total":
				drops = s.Value
			case s.Name == "portsentry_capture_packets_total":
				packets = s.Value
			case s.Name == "portsentry_hits_total" && s.Labels["mode"] == "atcp" && s.Labels["scan"] == "syn":
				hits = s.Value
			}
		}
	}
	sniff.stop(t, 10*time.Second)

	log := sniff.log(t)
	// The log's reports add up to every drop, the scrape's to those read
	// before it.
	logged := 0
	for _, m := range regexp.MustCompile(`the kernel dropped (\d+) of`).FindAllStringSubmatch(log, -1) {
		n, _ := strconv.Atoi(m[1])
		logged += n
	}
	if drops == 0 || drops > float64(logged) || packets < drops || packets > sent {
		t.Errorf("metrics: %v drops of %v packets, the log %d drops, %d sent", drops, packets, logged, sent)
	}
	lines, err := os.ReadFile(out.Name())
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(lines), "\n"); hits == 0 || hits > float64(n) {
		t.Errorf("metrics: %v atcp syn hits, %d hit lines written", hits, n)
	}
	t.Logf("scraped: %v drops of %v packets, %v hits", drops, packets, hits)
	m := regexp.MustCompile(`the kernel dropped (\d+) of (\d+) packets for ps-sniff`).FindStringSubmatch(log)
	if m == nil {
		t.Fatalf("no drop report after a flood it could not read:\n%s", log)
	}
	dropped, _ := strconv.Atoi(m[1])
	received, _ := strconv.Atoi(m[2])
	if dropped == 0 || dropped > sent || received < dropped {
		t.Fatalf("dropped %d of %d received, %d sent: implausible", dropped, received, sent)
	}
	t.Logf("ps-sniff, stopped during %d SYNs: the kernel dropped %d of %d", sent, dropped, received)
}

// TestAdvSniffDownstreamClosed: when the stage after ps-sniff dies, the
// next hit ends ps-sniff with a clear message and exit status 1.
func TestAdvSniffDownstreamClosed(t *testing.T) {
	l := newAdvLab(t)
	dir := t.TempDir()
	conf := advConf(t, dir, "p.conf", map[string]string{"IGNORE_FILE": filepath.Join(dir, "ignore")})
	r, w := advPipe(t)
	cmd := advCommand(l.Sensor, "ps-sniff", "-c", conf, "-atcp", "-i", l.SensorIf)
	cmd.Stdout = w
	sniff := advStart(t, dir, "ps-sniff", cmd)
	w.Close()
	sniff.waitLog(t, "PortSentry is now active and listening.", 10*time.Second)
	r.Close() // the next stage is gone
	// One SYN to a tripwire port makes a hit to write.
	l.synflood(t, 5*time.Second, "-n", "1", "-v6", "0", "-src4", "198.19.64.7/32", "-ports", "21")
	select {
	case <-sniff.done:
	case <-time.After(10 * time.Second):
		t.Fatalf("ps-sniff still running 10 s after a hit it could not write:\n%s", sniff.log(t))
	}
	var exit *exec.ExitError
	if !errors.As(sniff.err, &exit) || exit.ExitCode() != 1 {
		t.Errorf("exit %v, want status 1", sniff.err)
	}
	if log := sniff.log(t); !strings.Contains(log, "standard output closed: the next stage has exited") {
		t.Errorf("no clear message:\n%s", log)
	}
}
