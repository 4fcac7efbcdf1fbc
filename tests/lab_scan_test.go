package tests

import (
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/portsentry/pipeline/shared/event"
	"github.com/portsentry/pipeline/shared/netlab"
)

// Port lists of the scans: the default tripwire ports (a part of them) and
// the real daemon's port, which must never count.
const (
	tcpList = "1,11,15,79,80,111,119,143,540,635"
	udpList = "1,7,9,53,69,161,162,513,635"
)

// TestLabScans runs real scanners against every sensor mode through the
// whole pipeline with the nftables and hosts.deny actions, and checks that
// the scanner was seen, the right decision made, the block carried out and
// nobody else blocked; then that the recorded hit log replayed through
// ps-judge gives the same decisions, and that fail2ban's stock portsentry
// filter finds the blocked host in HISTORY_FILE.
func TestLabScans(t *testing.T) {
	tests := []struct {
		name   string
		sensor []string // program and mode flags
		v6     bool
		scan   []string // the scanner's command; the target is appended
		mode   event.Mode
		kinds  []event.Scan // probe kinds the hits must show
	}{
		{"atcp/nmap-sS", []string{"ps-sniff", "-atcp"}, false, append(nmapFast, "-sS", "-p", "1-200"), event.ModeATCP, []event.Scan{event.ScanSYN}},
		{"atcp/nmap-sT", []string{"ps-sniff", "-atcp"}, false, append(nmapFast, "-sT", "-p", "1-200"), event.ModeATCP, []event.Scan{event.ScanSYN}},
		{"atcp/nmap-6-sS", []string{"ps-sniff", "-atcp"}, true, append(nmapFast, "-6", "-sS", "-p", "1-200"), event.ModeATCP, []event.Scan{event.ScanSYN}},
		{"atcp/hping3-syn", []string{"ps-sniff", "-atcp"}, false, []string{"hping3", "-S", "-p", "++20", "-c", "8", "-i", "u20000"}, event.ModeATCP, []event.Scan{event.ScanSYN}},
		{"atcp/nmap-6-sT", []string{"ps-sniff", "-atcp"}, true, append(nmapFast, "-6", "-sT", "-p", "1-200"), event.ModeATCP, []event.Scan{event.ScanSYN}},
		{"atcp/nmap-sF", []string{"ps-sniff", "-atcp"}, false, append(nmapFast, "-sF", "-p", "1-200"), event.ModeATCP, []event.Scan{event.ScanFIN}},
		{"atcp/nmap-6-sN", []string{"ps-sniff", "-atcp"}, true, append(nmapFast, "-6", "-sN", "-p", "1-200"), event.ModeATCP, []event.Scan{event.ScanNull}},
		{"atcp/nmap-6-sX", []string{"ps-sniff", "-atcp"}, true, append(nmapFast, "-6", "-sX", "-p", "1-200"), event.ModeATCP, []event.Scan{event.ScanXmas}},
		{"stcp/nmap-sS", []string{"ps-sniff", "-stcp"}, false, append(nmapFast, "-sS", "-p", tcpList), event.ModeSTCP, []event.Scan{event.ScanSYN}},
		{"stcp/nmap-sT", []string{"ps-sniff", "-stcp"}, false, append(nmapFast, "-sT", "-p", tcpList), event.ModeSTCP, []event.Scan{event.ScanSYN}},
		{"stcp/nmap-6-sF", []string{"ps-sniff", "-stcp"}, true, append(nmapFast, "-6", "-sF", "-p", tcpList), event.ModeSTCP, []event.Scan{event.ScanFIN}},
		{"stcp/nmap-sF", []string{"ps-sniff", "-stcp"}, false, append(nmapFast, "-sF", "-p", tcpList), event.ModeSTCP, []event.Scan{event.ScanFIN}},
		{"stcp/nmap-sN", []string{"ps-sniff", "-stcp"}, false, append(nmapFast, "-sN", "-p", tcpList), event.ModeSTCP, []event.Scan{event.ScanNull}},
		{"stcp/nmap-sX", []string{"ps-sniff", "-stcp"}, false, append(nmapFast, "-sX", "-p", tcpList), event.ModeSTCP, []event.Scan{event.ScanXmas}},
		{"stcp/nmap-6-sS", []string{"ps-sniff", "-stcp"}, true, append(nmapFast, "-6", "-sS", "-p", tcpList), event.ModeSTCP, []event.Scan{event.ScanSYN}},
		{"stcp/hping3-fin", []string{"ps-sniff", "-stcp"}, false, []string{"hping3", "-F", "-p", "++1", "-c", "16", "-i", "u10000"}, event.ModeSTCP, []event.Scan{event.ScanFIN}},
		{"sudp/hping3-udp", []string{"ps-sniff", "-sudp"}, false, []string{"hping3", "--udp", "-p", "++1", "-c", "10", "-i", "u10000"}, event.ModeSUDP, []event.Scan{event.ScanUDP}},
		{"sudp/nmap-sU", []string{"ps-sniff", "-sudp"}, false, append(nmapFast, "-sU", "-p", udpList), event.ModeSUDP, []event.Scan{event.ScanUDP}},
		{"sudp/nmap-6-sU", []string{"ps-sniff", "-sudp"}, true, append(nmapFast, "-6", "-sU", "-p", udpList), event.ModeSUDP, []event.Scan{event.ScanUDP}},
		{"audp/nmap-sU", []string{"ps-sniff", "-audp"}, false, append(nmapFast, "-sU", "-p", "1-100"), event.ModeAUDP, []event.Scan{event.ScanUDP}},
		{"audp/nmap-6-sU", []string{"ps-sniff", "-audp"}, true, append(nmapFast, "-6", "-sU", "-p", "1-100"), event.ModeAUDP, []event.Scan{event.ScanUDP}},
		{"audp/hping3-udp", []string{"ps-sniff", "-audp"}, false, []string{"hping3", "--udp", "-p", "++30", "-c", "8", "-i", "u20000"}, event.ModeAUDP, []event.Scan{event.ScanUDP}},
		{"tcp/nmap-sT", []string{"ps-listen", "-tcp"}, false, append(nmapFast, "-sT", "-p", tcpList), event.ModeTCP, []event.Scan{event.ScanConnect}},
		{"tcp/nmap-6-sT", []string{"ps-listen", "-tcp"}, true, append(nmapFast, "-6", "-sT", "-p", tcpList), event.ModeTCP, []event.Scan{event.ScanConnect}},
		{"udp/nmap-sU", []string{"ps-listen", "-udp"}, false, append(nmapFast, "-sU", "-p", udpList), event.ModeUDP, []event.Scan{event.ScanUDP}},
		{"udp/nmap-6-sU", []string{"ps-listen", "-udp"}, true, append(nmapFast, "-6", "-sU", "-p", udpList), event.ModeUDP, []event.Scan{event.ScanUDP}},
		{"udp/hping3-udp", []string{"ps-listen", "-udp"}, false, []string{"hping3", "--udp", "-p", "++1", "-c", "10", "-i", "u10000"}, event.ModeUDP, []event.Scan{event.ScanUDP}},
		// No hping3 against ps-listen -tcp: bare SYNs never complete a
		// connection, and classic mode, as in 1.2, sees only those.
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newLab(t)
			target, scanner := e.Sensor4, e.Scanner4
			if tt.v6 {
				target, scanner = e.Sensor6, e.Scanner6
			}
			conf := e.writeConf(t, "lab.conf", nil)
			p := e.startPipeline(t, conf, tt.sensor...)
			// Before the scan the scanner is an honest client: its
			// connection to the daemon is answered and trips nothing.
			e.mustReach(t, scanner)

			start := time.Now()
			out := run(t, e.Scanner, 40*time.Second, append(slices.Clone(tt.scan), target.String())...)
			t.Logf("%s took %v", tt.scan[0], time.Since(start).Round(time.Millisecond))

			waitBlocked(t, p, scanner, tt.mode)

			// The scanner was seen: hits from it, in this mode, of the
			// scan's kinds, never on the real daemons' ports.
			kinds := map[event.Scan]bool{}
			for _, h := range p.hits.events(t) {
				if h.Src != scanner || h.Mode != tt.mode || h.Dst != target {
					t.Errorf("hit %s %s > %s:%d; want %s mode %s to %s", h.Mode, h.Src, h.Dst, h.Dport, scanner, tt.mode, target)
				}
				if h.Dport == daemonTCP && h.Proto == event.ProtoTCP || h.Dport == daemonUDP && h.Proto == event.ProtoUDP {
					t.Errorf("hit on the real daemon's %s port %d", h.Proto, h.Dport)
				}
				kinds[h.Scan] = true
			}
			for _, k := range tt.kinds {
				if !kinds[k] {
					t.Errorf("no %s hit; scanner said:\n%s", k, out)
				}
			}
			e.assertBlockedOnly(t, p, scanner)
			if t.Failed() {
				return
			}

			// Replay: the hit log of this run through ps-judge alone.
			var hits strings.Builder
			for _, l := range p.hits.lines() {
				hits.WriteString(l + "\n")
			}
			hitFile := writeFile(t, e.dir, "hits.jsonl", hits.String())
			b, err := os.ReadFile(hitFile)
			if err != nil {
				t.Fatal(err)
			}
			live, replayed := decisionKeys(p.decisions.events(t)), decisionKeys(e.judge(t, conf, b))
			if !slices.Equal(live, replayed) {
				t.Errorf("replayed decisions %q; live %q", replayed, live)
			}

			assertFail2ban(t, filepath.Join(e.dir, "history"), scanner)
		})
	}
}

// assertFail2ban runs Debian's fail2ban-regex with its stock portsentry
// filter on a HISTORY_FILE: every line must match, and the hosts found must
// be exactly want.
func assertFail2ban(t *testing.T, history string, want ...netip.Addr) {
	t.Helper()
	const filter = "/etc/fail2ban/filter.d/portsentry.conf"
	if _, err := exec.LookPath("fail2ban-regex"); err != nil {
		netlab.SkipOrFail(t, "no fail2ban-regex: %v", err)
	}
	if _, err := os.Stat(filter); err != nil {
		netlab.SkipOrFail(t, "no fail2ban portsentry filter: %v", err)
	}
	out, err := exec.Command("fail2ban-regex", "-o", "ip", history, filter).CombinedOutput()
	if err != nil {
		t.Fatalf("fail2ban-regex: %v\n%s", err, out)
	}
	var got, wantS []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if l != "" {
			got = append(got, l)
		}
	}
	for _, a := range want {
		wantS = append(wantS, a.String())
	}
	if !slices.Equal(got, wantS) {
		b, _ := os.ReadFile(history)
		t.Errorf("fail2ban-regex found %q in the history, want %q; history:\n%s", got, wantS, b)
	}
	// Every line of the history must be read by the filter: one it misses
	// is a ban fail2ban never makes.
	out, err = exec.Command("fail2ban-regex", history, filter).CombinedOutput()
	if err != nil {
		t.Fatalf("fail2ban-regex: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), ", 0 missed") {
		t.Errorf("fail2ban-regex missed lines:\n%s", out)
	}
}
