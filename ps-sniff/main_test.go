package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/portsentry/pipeline/shared/event"
	"github.com/portsentry/pipeline/shared/netlab"
)

var update = flag.Bool("update", false, "rewrite golden files")

var binary string

func TestMain(m *testing.M) {
	flag.Parse()
	dir, err := os.MkdirTemp("", "ps-sniff-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "ps-sniff")
	if out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// summary renders hit lines without their times, sorted, for comparison.
func summary(t *testing.T, lines []byte) string {
	t.Helper()
	var out []string
	for _, l := range bytes.Split(bytes.TrimSpace(lines), []byte("\n")) {
		if len(l) == 0 {
			continue
		}
		e, err := event.Decode(l)
		if err != nil {
			t.Fatalf("bad line %q: %v", l, err)
		}
		out = append(out, fmt.Sprintf("%s %s %s:%d > %s:%d %s %s", e.Mode, e.Proto, e.Src, e.Sport, e.Dst, e.Dport, e.Scan, e.Flags))
	}
	sort.Strings(out)
	return strings.Join(out, "\n") + "\n"
}

// TestReplay replays a capture made in the lab (nmap -sS/-sF/-sX/-sN/-f/-6,
// hping3 UDP and ACK, sshd-like listener on 22, DNS-like answer on UDP 53).
func TestReplay(t *testing.T) {
	tests := []struct {
		name, golden string
		args         []string
	}{
		{"advanced", "testdata/scan-advanced.golden", []string{"-atcp", "-audp", "--addr", "198.18.9.2", "--addr", "2001:db8:9::2"}},
		{"stealth", "testdata/scan-stealth.golden", []string{"-stcp", "-sudp"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"-c", "testdata/portsentry.conf", "-r", "testdata/scan.pcap"}, tt.args...)
			cmd := exec.Command(binary, args...)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("%v: %s", err, stderr.Bytes())
			}
			got := summary(t, out)
			if *update {
				if err := os.WriteFile(tt.golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(tt.golden)
			if err != nil {
				t.Fatal(err)
			}
			if got != string(want) {
				t.Errorf("got\n%s\nwant\n%s\nstderr:\n%s", got, want, stderr.Bytes())
			}
		})
	}
}

func TestBadInvocations(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"-atcp", "-r", "testdata/not-a-pcap.txt"}, "not a pcap or pcapng file"},
		{[]string{"-atcp", "-r", "testdata/missing.pcap"}, "no such file"},
		{[]string{"-atcp", "-stcp"}, "one TCP mode"},
		{[]string{}, "no mode"},
		{[]string{"-atcp", "--addr", "198.18.0.1"}, "--addr only applies to -r"},
		{[]string{"-atcp", "-r", "testdata/scan.pcap", "--addr", "nonsense"}, "nonsense"},
	}
	for _, tt := range tests {
		cmd := exec.Command(binary, append([]string{"-c", "testdata/portsentry.conf"}, tt.args...)...)
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), tt.want) {
			t.Errorf("%v: err %v, output %q, want it to say %q", tt.args, err, out, tt.want)
		}
	}
}

// TestLive runs ps-sniff -atcp -audp in the sensor namespace and scans it.
func TestLive(t *testing.T) {
	lab := netlab.New(t)
	// A daemon on 22, bound before the start; and later a port bound just
	// before it is probed, like an FTP data port.
	var ssh, ftpData net.Listener
	var err error
	netlab.InNamespace(t, lab.Sensor, func() { ssh, err = net.Listen("tcp", ":22") })
	if err != nil {
		t.Fatal(err)
	}
	defer ssh.Close()

	conf, _ := filepath.Abs("testdata/portsentry.conf")
	cmd := exec.Command("ip", "netns", "exec", lab.Sensor, binary, "-atcp", "-audp", "-c", conf)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	lines := make(chan []byte, 1000)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- append([]byte(nil), sc.Bytes()...)
		}
		close(lines)
	}()
	logs := make(chan string, 1000)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			logs <- sc.Text()
		}
		close(logs)
	}()
	var log []string
	for ready := false; !ready; {
		select {
		case l, ok := <-logs:
			if !ok {
				t.Fatalf("ps-sniff exited: %q", log)
			}
			log = append(log, l)
			ready = strings.Contains(l, "PortSentry is now active and listening.")
		case <-time.After(10 * time.Second):
			t.Fatalf("not ready after 10s: %q", log)
		}
	}
	for _, want := range []string{"Advanced mode will monitor first 1024 ports", "Ignored TCP port: 22", "now running as user nobody"} {
		if !strings.Contains(strings.Join(log, "\n"), want) {
			t.Errorf("start log lacks %q: %q", want, log)
		}
	}

	s4 := lab.Sensor4.String()
	start := time.Now()
	lab.Run(t, lab.Scanner, 20*time.Second, "nmap", "-sS", "-Pn", "-n", "-p", "20-25", "--max-retries", "0", s4)
	lab.Run(t, lab.Scanner, 20*time.Second, "nmap", "-6", "-sF", "-Pn", "-n", "-p", "79", "--max-retries", "0", lab.Sensor6.String())
	lab.Run(t, lab.Scanner, 20*time.Second, "hping3", "-q", "-2", "-p", "69", "-c", "1", s4)
	lab.Run(t, lab.Scanner, 20*time.Second, "hping3", "-q", "-A", "-p", "30", "-c", "1", s4)
	netlab.InNamespace(t, lab.Sensor, func() { ftpData, err = net.Listen("tcp", ":40") })
	if err != nil {
		t.Fatal(err)
	}
	defer ftpData.Close()
	lab.Run(t, lab.Scanner, 20*time.Second, "hping3", "-q", "-S", "-p", "40", "-c", "1", s4)
	lab.Run(t, lab.Scanner, 20*time.Second, "hping3", "-q", "-S", "-p", "41", "-c", "1", s4)

	var got []byte
	deadline := time.After(3 * time.Second)
	for n := 0; n < 9; {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("ps-sniff closed its output")
			}
			got = append(append(got, l...), '\n')
			n++
		case <-deadline:
			n = 9
		}
	}
	a4, a6 := lab.Scanner4.String(), lab.Scanner6.String()
	sum := summary(t, got)
	for _, want := range []string{
		"atcp tcp " + a4 + ":", "> " + s4 + ":20 syn S", "> " + s4 + ":21 syn S", "> " + s4 + ":23 syn S",
		"> " + s4 + ":24 syn S", "> " + s4 + ":25 syn S", "> " + s4 + ":41 syn S",
		"atcp tcp " + a6 + ":", "> " + lab.Sensor6.String() + ":79 fin F",
		"audp udp " + a4 + ":", "> " + s4 + ":69 udp",
	} {
		if !strings.Contains(sum, want) {
			t.Errorf("no hit %q in\n%s", want, sum)
		}
	}
	for _, not := range []string{":22 ", ":30 ", ":40 "} {
		if strings.Contains(sum, not) {
			t.Errorf("hit on %s in\n%s", not, sum)
		}
	}
	if since := time.Since(start); since > 15*time.Second {
		t.Errorf("took %v", since)
	}
	// Privileges dropped: ip netns exec execs ps-sniff, so this is its pid.
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", cmd.Process.Pid))
	if err != nil || !strings.Contains(string(status), "Uid:\t65534\t65534\t65534\t65534") {
		t.Errorf("not running as nobody (%v): %s", err, status)
	}
}
