// Package netnstest gives tests a network namespace of their own (made with
// `ip netns add`), so nftables rules and sets can be checked against the real
// kernel without touching the host's firewall.
package netnstest

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// SkipOrFail skips the test with a loud message, or fails it when CI=true:
// in CI a missing namespace means the kernel test never ran.
func SkipOrFail(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := "SKIPPING KERNEL TEST: " + fmt.Sprintf(format, args...)
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// NS is a named network namespace and an open descriptor of it.
type NS struct {
	Name string
	Fd   int
}

// New makes a namespace with a name unique to this process and test, and
// removes it in t.Cleanup, even when the test fails.
func New(t testing.TB, tag string) *NS {
	t.Helper()
	if os.Geteuid() != 0 {
		SkipOrFail(t, "need root to create a network namespace")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		SkipOrFail(t, "the ip command (iproute2) is missing: %v", err)
	}
	name := fmt.Sprintf("psb-%s-%d", tag, os.Getpid())
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
