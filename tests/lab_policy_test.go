package tests

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/portsentry/pipeline/shared/event"
	"github.com/portsentry/pipeline/shared/netlab"
)

// TestLabPolicy runs a real scan (ps-sniff -atcp) under the settings that
// decide what is done about it: SCAN_TRIGGER, the ignore file, BLOCK_TCP
// 0 and 2.
func TestLabPolicy(t *testing.T) {
	scan := func(t *testing.T, e *labEnv, target netip.Addr) {
		args := append(slices.Clone(nmapFast), "-sS", "-p", "1-200", target.String())
		if target.Is6() {
			args = append(args, "-6")
		}
		run(t, e.Scanner, 40*time.Second, args...)
	}
	tests := []struct {
		name string
		v6   bool
		conf func(e *labEnv) map[string]string
		// act probes and checks; the scanner and the protected address
		// are of the case's family.
		act func(t *testing.T, e *labEnv, p *pipeline, scanner, target netip.Addr)
	}{
		{
			// Two grace ports: one port probed three times (a retransmitted
			// probe) counts once and blocks nothing; the scan then trips on
			// its third distinct port.
			name: "trigger",
			conf: func(*labEnv) map[string]string { return map[string]string{"SCAN_TRIGGER": "2"} },
			act: func(t *testing.T, e *labEnv, p *pipeline, scanner, target netip.Addr) {
				run(t, e.Scanner, 20*time.Second, "hping3", "-S", "-p", "23", "-c", "3", "-i", "u100000", target.String())
				waitLine(t, p.hits, decisionLimit, "three hits on port 23", func(string) bool {
					n := 0
					for _, h := range p.hits.events(t) {
						if h.Src == scanner && h.Dport == 23 {
							n++
						}
					}
					return n >= 3
				})
				waitLine(t, p.log, decisionLimit, "grace hit log", func(s string) bool {
					return strings.Contains(s, "ps-judge[") && strings.Contains(s, scanner.String()) && strings.Contains(s, "(1 of 2 grace hits)")
				})
				// The daemon still answers: by the time it has, the judge
				// has long read the three hits and decided nothing.
				e.mustReach(t, scanner)
				if d := p.decisions.lines(); len(d) > 0 {
					t.Fatalf("one port probed three times was decided on: %q", d)
				}
				scan(t, e, target)
				d := waitBlocked(t, p, scanner, event.ModeATCP)
				if d.Hits != 3 {
					t.Errorf("decision after %d hits, want 3 (SCAN_TRIGGER=2)", d.Hits)
				}
				e.assertBlockedOnly(t, p, scanner)
			},
		},
		{
			name: "ignore-address",
			conf: func(e *labEnv) map[string]string {
				writeFile(t, e.dir, "ignore", "# the scanner\n"+e.Scanner4.String()+"\n")
				return nil
			},
			act: assertIgnored(scan),
		},
		{
			name: "ignore-network-v6",
			v6:   true,
			conf: func(e *labEnv) map[string]string {
				writeFile(t, e.dir, "ignore", "2001:db8::/32\n")
				return nil
			},
			act: assertIgnored(scan),
		},
		{
			// Alert only: the decision is made and logged, nothing done.
			name: "block_tcp=0",
			conf: func(*labEnv) map[string]string { return map[string]string{"BLOCK_TCP": "0"} },
			act: func(t *testing.T, e *labEnv, p *pipeline, scanner, target netip.Addr) {
				scan(t, e, target)
				d := waitEvent(t, p.decisions, decisionLimit, "decision", func(*event.Event) bool { return true })
				if d.Kind != event.KindAlert || d.Target != scanner || d.Mode != event.ModeATCP {
					t.Errorf("decision %s; want alert %s atcp", decisionKey(d), scanner)
				}
				waitLine(t, p.log, decisionLimit, "ps-block's alert log", func(s string) bool {
					return strings.Contains(s, "ps-block[") && strings.Contains(s, "Host "+scanner.String()) && strings.Contains(s, "alert only, no action")
				})
				e.assertNothingBlocked(t, scanner)
				if r := p.results.lines(); len(r) > 0 {
					t.Errorf("ps-block acted on an alert: %q", r)
				}
			},
		},
		{
			// KILL_RUN_CMD only: the command runs (without a shell, with
			// the target substituted); no nft, no hosts.deny.
			name: "block_tcp=2",
			conf: func(e *labEnv) map[string]string {
				return map[string]string{"BLOCK_TCP": "2", "KILL_RUN_CMD": "/usr/bin/touch " + e.dir + "/ran-$TARGET$-$MODE$-$PORT$"}
			},
			act: func(t *testing.T, e *labEnv, p *pipeline, scanner, target netip.Addr) {
				scan(t, e, target)
				d := waitEvent(t, p.decisions, decisionLimit, "decision", func(*event.Event) bool { return true })
				if d.Kind != event.KindRun || d.Target != scanner || d.Mode != event.ModeATCP {
					t.Fatalf("decision %s; want run %s atcp", decisionKey(d), scanner)
				}
				r := waitEvent(t, p.results, decisionLimit, "run result", func(r *event.Event) bool { return r.Action == "run" })
				if !r.OK || r.Target != scanner {
					t.Errorf("run result: %s ok=%v: %s", r.Target, r.OK, r.Detail)
				}
				ran := filepath.Join(e.dir, fmt.Sprintf("ran-%s-atcp-%d", scanner, d.Port))
				if _, err := os.Stat(ran); err != nil {
					t.Errorf("KILL_RUN_CMD left no file: %v", err)
				}
				for _, r := range p.results.events(t) {
					if r.Action != "run" {
						t.Errorf("BLOCK_TCP=2 carried out %s: %s", r.Action, r.Detail)
					}
				}
				e.assertNothingBlocked(t, scanner)
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newLab(t)
			scanner, target := e.Scanner4, e.Sensor4
			if tt.v6 {
				scanner, target = e.Scanner6, e.Sensor6
			}
			p := e.startPipeline(t, e.writeConf(t, "lab.conf", tt.conf(e)), "ps-sniff", "-atcp")
			tt.act(t, e, p, scanner, target)
		})
	}
}

// assertIgnored: an ignored scanner is seen by the sensor, never decided
// on, never blocked, and ps-judge's log says why.
func assertIgnored(scan func(*testing.T, *labEnv, netip.Addr)) func(*testing.T, *labEnv, *pipeline, netip.Addr, netip.Addr) {
	return func(t *testing.T, e *labEnv, p *pipeline, scanner, target netip.Addr) {
		scan(t, e, target)
		waitEvent(t, p.hits, decisionLimit, "hit from the scanner", func(h *event.Event) bool { return h.Src == scanner })
		waitLine(t, p.log, decisionLimit, "ps-judge's reason", func(s string) bool {
			return strings.Contains(s, "ps-judge[") && strings.Contains(s, scanner.String()) && strings.Contains(s, "ignored: in the ignore file")
		})
		e.assertNothingBlocked(t, scanner)
		if d := p.decisions.lines(); len(d) > 0 {
			t.Errorf("decisions about an ignored host: %q", d)
		}
	}
}

// TestLabDaemonMidRun: in -atcp mode a daemon started while the sensor
// runs takes its port out of the tripwires at once (an FTP data port):
// connections and bare SYNs to it are no hits. Once it stops, the port is
// a tripwire again. The daemon binds [::], as most do: its port is in use
// for IPv4 too.
func TestLabDaemonMidRun(t *testing.T) {
	e := newLab(t)
	p := e.startPipeline(t, e.writeConf(t, "lab.conf", nil), "ps-sniff", "-atcp")
	const port = 21
	var ln net.Listener
	netlab.InNamespace(t, e.Sensor, func() {
		var err error
		if ln, err = net.Listen("tcp", fmt.Sprintf("[::]:%d", port)); err != nil {
			t.Fatal(err)
		}
	})
	t.Cleanup(func() { ln.Close() })
	go serveTCP(ln, "220 ftp\n")

	if got, err := e.dial(t, e.Scanner4, port, 5*time.Second); err != nil || got != "220 ftp\n" {
		t.Fatalf("connect to the new daemon: %q, %v", got, err)
	}
	run(t, e.Scanner, 20*time.Second, "hping3", "-S", "-p", fmt.Sprint(port), "-c", "3", "-i", "u50000", e.Sensor4.String())
	// The sensor reads packets in order: a probe to a closed port that it
	// reports after those shows it has seen them, and reported none.
	run(t, e.Scanner, 20*time.Second, "hping3", "-S", "-p", "23", "-c", "1", e.Sensor4.String())
	d := waitBlocked(t, p, e.Scanner4, event.ModeATCP)
	for _, h := range p.hits.events(t) {
		if h.Dport == port {
			t.Fatalf("hit on port %d while a daemon listens on it: %s:%d %s", port, h.Src, h.Sport, h.Scan)
		}
	}
	if d.Port != 23 {
		t.Errorf("decision on port %d, want 23", d.Port)
	}

	// The daemon stops: port 21 trips again (another host, IPv6, so that
	// the first block does not hide it).
	ln.Close()
	run(t, e.Scanner, 40*time.Second, append(slices.Clone(nmapFast), "-6", "-sS", "-p", fmt.Sprint(port), e.Sensor6.String())...)
	d = waitBlocked(t, p, e.Scanner6, event.ModeATCP)
	if d.Port != port {
		t.Errorf("decision on port %d, want %d", d.Port, port)
	}
	e.assertBlockedOnly(t, p, e.Scanner4, e.Scanner6)
}
