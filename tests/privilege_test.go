package tests

import (
	"bufio"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/portsentry/pipeline/shared/netlab"
)

// TestSensorDropsCapabilities: a sensor started unprivileged with only
// CAP_NET_BIND_SERVICE (as the systemd unit runs it) binds its port below
// 1024, then holds no capability at all, and still reports connections.
func TestSensorDropsCapabilities(t *testing.T) {
	if os.Geteuid() != 0 {
		netlab.SkipOrFail(t, "needs root to start a process with chosen capabilities")
	}
	if _, err := exec.LookPath("setpriv"); err != nil {
		netlab.SkipOrFail(t, "no setpriv: %v", err)
	}
	ns := netlab.NewNS(t, "caps")
	// Readable by nobody: t.TempDir's parent is private to root.
	dir, err := os.MkdirTemp("", "ps-caps-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	conf := writeFile(t, dir, "p.conf", "TCP_PORTS=\"7\"\nRUN_AS_USER=\"nobody\"\n")
	cmd := exec.Command("ip", "netns", "exec", ns.Name, "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
		"--inh-caps=+net_bind_service", "--ambient-caps=+net_bind_service", bin("ps-listen"), "-tcp", "-c", conf)
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
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	ready := make(chan string, 1)
	go func() {
		var log strings.Builder
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			log.WriteString(sc.Text() + "\n")
			if strings.Contains(sc.Text(), "now active and listening") {
				ready <- log.String()
			}
		}
	}()
	var log string
	select {
	case log = <-ready:
	case <-time.After(10 * time.Second):
		t.Fatal("ps-listen did not start: it was not active and listening within 10 s")
	}
	if !strings.Contains(log, "every capability dropped") {
		t.Errorf("log:\n%s", log)
	}
	// The process under setpriv is ps-listen itself (setpriv execs it).
	status, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(cmd.Process.Pid), "status"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"CapPrm:\t0000000000000000", "CapEff:\t0000000000000000", "CapAmb:\t0000000000000000", "NoNewPrivs:\t1"} {
		if !strings.Contains(string(status), want) {
			t.Errorf("status lacks %q:\n%s", want, status)
		}
	}
	netlab.InNamespace(t, ns.Name, func() {
		c, err := net.DialTimeout("tcp", "127.0.0.1:7", 2*time.Second)
		if err != nil {
			t.Fatalf("connect: %v", err)
		}
		c.Close()
	})
	line := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		if sc.Scan() {
			line <- sc.Text()
		}
	}()
	select {
	case l := <-line:
		if !strings.Contains(l, `"dport":7`) || !strings.Contains(l, `"scan":"connect"`) {
			t.Fatalf("hit %s", l)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no hit after the capabilities were dropped")
	}
}
