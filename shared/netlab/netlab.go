// Package netlab gives tests real network namespaces: a single namespace of
// their own (NewNS), or a two-namespace lab (New), a scanner and a sensor
// joined by a veth pair, addressed only from 198.18.0.0/15 and
// 2001:db8::/32. Everything is torn down in t.Cleanup even when the test
// fails. Without root or the ip tool a test is skipped, loudly, unless
// CI=true, where that is a failure.
package netlab

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Lab is a scanner namespace and a sensor namespace on one link.
type Lab struct {
	Scanner, Sensor     string // namespace names
	ScannerIf, SensorIf string // veth names
	Scanner4, Sensor4   netip.Addr
	Scanner6, Sensor6   netip.Addr
}

// SkipOrFail skips t, or fails it when CI=true: in CI a missing capability
// is a broken runner, not a reason to test less.
func SkipOrFail(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("CI") == "true" {
		t.Fatalf("CI=true but cannot run live test: %s", msg)
	}
	t.Skipf("SKIPPED LIVE TEST: %s", msg)
}

// New creates the lab. Names carry the process id and a counter, so that
// packages tested in parallel never collide.
func New(t testing.TB) *Lab {
	t.Helper()
	if os.Geteuid() != 0 {
		SkipOrFail(t, "needs root for network namespaces")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		SkipOrFail(t, "no ip tool: %v", err)
	}
	seq++
	id := fmt.Sprintf("%d%d", os.Getpid()%100000, seq)
	// A /24 per lab inside 198.18.0.0/15, picked from the id.
	n := (os.Getpid()*7 + seq) % 512
	l := &Lab{
		Scanner:   "pss-scan-" + id,
		Sensor:    "pss-sens-" + id,
		ScannerIf: "pssa" + id,
		SensorIf:  "pssb" + id,
		Scanner4:  netip.AddrFrom4([4]byte{198, 18 + byte(n/256), byte(n % 256), 1}),
		Sensor4:   netip.AddrFrom4([4]byte{198, 18 + byte(n/256), byte(n % 256), 2}),
		Scanner6:  netip.MustParseAddr(fmt.Sprintf("2001:db8:%x::1", n)),
		Sensor6:   netip.MustParseAddr(fmt.Sprintf("2001:db8:%x::2", n)),
	}
	t.Cleanup(func() {
		// Deleting a namespace deletes its end of the veth, and so both.
		_ = exec.Command("ip", "netns", "del", l.Scanner).Run()
		_ = exec.Command("ip", "netns", "del", l.Sensor).Run()
	})
	steps := [][]string{
		{"netns", "add", l.Scanner},
		{"netns", "add", l.Sensor},
		{"link", "add", l.ScannerIf, "netns", l.Scanner, "type", "veth", "peer", "name", l.SensorIf, "netns", l.Sensor},
		// No duplicate address detection: addresses usable at once.
		{"netns", "exec", l.Scanner, "sysctl", "-qw", "net.ipv6.conf." + l.ScannerIf + ".accept_dad=0"},
		{"netns", "exec", l.Sensor, "sysctl", "-qw", "net.ipv6.conf." + l.SensorIf + ".accept_dad=0"},
		{"-n", l.Scanner, "addr", "add", l.Scanner4.String() + "/24", "dev", l.ScannerIf},
		{"-n", l.Sensor, "addr", "add", l.Sensor4.String() + "/24", "dev", l.SensorIf},
		{"-n", l.Scanner, "addr", "add", l.Scanner6.String() + "/64", "dev", l.ScannerIf, "nodad"},
		{"-n", l.Sensor, "addr", "add", l.Sensor6.String() + "/64", "dev", l.SensorIf, "nodad"},
		{"-n", l.Scanner, "link", "set", l.ScannerIf, "up"},
		{"-n", l.Sensor, "link", "set", l.SensorIf, "up"},
		{"-n", l.Scanner, "link", "set", "lo", "up"},
		{"-n", l.Sensor, "link", "set", "lo", "up"},
	}
	for _, s := range steps {
		if out, err := exec.Command("ip", s...).CombinedOutput(); err != nil {
			SkipOrFail(t, "ip %s: %v: %s", strings.Join(s, " "), err, out)
		}
	}
	// Resolve neighbours once, so that scanners that give up fast (nmap
	// --max-retries 0) do not lose their first probe to ARP or ND.
	for _, a := range []netip.Addr{l.Sensor4, l.Sensor6} {
		_ = exec.Command("ip", "netns", "exec", l.Scanner, "ping", "-c", "1", "-W", "2", a.String()).Run()
	}
	return l
}

var seq int

// InNamespace runs fn on a thread switched into namespace ns, and switches
// back before the thread is given back to the scheduler. Sockets made by fn
// stay in ns.
func InNamespace(t testing.TB, ns string, fn func()) {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		t.Fatalf("own namespace: %v", err)
	}
	defer orig.Close()
	target, err := os.Open("/run/netns/" + ns)
	if err != nil {
		t.Fatalf("namespace %s: %v", ns, err)
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		t.Fatalf("setns %s: %v", ns, err)
	}
	defer func() {
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			// The thread is in the wrong namespace: lock it once more so
			// that it dies with this goroutine instead of being reused.
			runtime.LockOSThread()
			t.Fatalf("setns back: %v", err)
		}
	}()
	fn()
}

// Run runs a command in namespace ns with a time limit and returns its
// combined output.
func (l *Lab) Run(t testing.TB, ns string, limit time.Duration, args ...string) string {
	t.Helper()
	if _, err := exec.LookPath(args[0]); err != nil {
		SkipOrFail(t, "no %s: %v", args[0], err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns}, args...)...)
	cmd.WaitDelay = time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v (limit %v): %s", strings.Join(args, " "), err, limit, out)
	}
	return string(out)
}

// NS is a named network namespace and an open descriptor of it.
type NS struct {
	Name string
	Fd   int
}

// NewNS makes a namespace with a name unique to this process and tag, and
// removes it in t.Cleanup, even when the test fails.
func NewNS(t testing.TB, tag string) *NS {
	t.Helper()
	if os.Geteuid() != 0 {
		SkipOrFail(t, "needs root for network namespaces")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		SkipOrFail(t, "the ip command (iproute2) is missing: %v", err)
	}
	seq++
	name := fmt.Sprintf("ps-%s-%d-%d", tag, os.Getpid()%100000, seq)
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		SkipOrFail(t, "ip netns add %s: %v: %s", name, err, strings.TrimSpace(string(out)))
	}
	ns := &NS{Name: name, Fd: -1}
	t.Cleanup(func() {
		if ns.Fd >= 0 {
			_ = unix.Close(ns.Fd)
		}
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
	fd, err := unix.Open("/run/netns/"+name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("open namespace %s: %v", name, err)
	}
	ns.Fd = fd
	ns.Run(t, "ip", "link", "set", "lo", "up")
	return ns
}

// Run runs an iproute2 command inside the namespace and fails the test on
// error.
func (ns *NS) Run(t testing.TB, name string, args ...string) {
	t.Helper()
	argv := append([]string{"netns", "exec", ns.Name, name}, args...)
	if out, err := exec.Command("ip", argv...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(argv, " "), err, out)
	}
}

// Do runs f on an OS thread that has entered the namespace, so sockets f
// opens belong to it. The thread is never handed back to the scheduler:
// the goroutine exits locked, and Go then ends the thread.
func (ns *NS) Do(f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := unix.Setns(ns.Fd, unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", ns.Name, err)
			return
		}
		errc <- f()
	}()
	return <-errc
}
