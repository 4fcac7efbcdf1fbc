package main

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// inNetns runs f on a thread moved into the named network namespace. The
// thread is never given back: it ends with its goroutine, so no other
// goroutine ever runs in the wrong namespace.
func inNetns(name string, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		fd, err := unix.Open("/run/netns/"+name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- fmt.Errorf("open netns %s: %w", name, err)
			return
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", name, err)
			return
		}
		errc <- f()
	}()
	return <-errc
}

// TestNetns runs the program as root in a network namespace of its own, on
// privileged ports, and probes it over a veth pair from a second namespace:
// the hits carry the prober's true address and the sensor's own, IPv4
// unmapped, and the ports probed.
func TestNetns(t *testing.T) {
	requireRoot(t)
	if _, err := exec.LookPath("ip"); err != nil {
		skipOrFail(t, "no ip command (iproute2)")
	}
	bin := build(t)
	tag := strconv.Itoa(os.Getpid()%100000) + "-" + strconv.Itoa(rand.IntN(1000))
	sensorNS, clientNS := "psl-"+tag+"-s", "psl-"+tag+"-c"
	t.Cleanup(func() {
		for _, ns := range []string{sensorNS, clientNS} {
			exec.Command("ip", "netns", "del", ns).Run() // the veth pair goes with them
		}
	})
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v\n%s", args, err, out)
		}
	}
	ip("netns", "add", sensorNS)
	ip("netns", "add", clientNS)
	ip("-n", sensorNS, "link", "add", "v0", "type", "veth", "peer", "name", "v1", "netns", clientNS)
	// Addresses only from the benchmarking and documentation ranges.
	net4, net6 := fmt.Sprintf("198.18.%d.", 1+rand.IntN(250)), fmt.Sprintf("2001:db8:%x::", 1+rand.IntN(0xfffe))
	for _, side := range []struct{ ns, dev, host string }{{sensorNS, "v0", "1"}, {clientNS, "v1", "2"}} {
		ip("-n", side.ns, "addr", "add", net4+side.host+"/24", "dev", side.dev)
		ip("-n", side.ns, "addr", "add", net6+side.host+"/64", "dev", side.dev, "nodad")
		ip("-n", side.ns, "link", "set", side.dev, "up")
	}
	sensor4, client4 := netip.MustParseAddr(net4+"1"), netip.MustParseAddr(net4+"2")
	sensor6, client6 := netip.MustParseAddr(net6+"1"), netip.MustParseAddr(net6+"2")

	const banner = "** UNAUTHORIZED ACCESS PROHIBITED **"
	conf := writeConfig(t, `TCP_PORTS="143,1080"`, `UDP_PORTS="69,161"`, `PORT_BANNER="`+banner+`"`)
	p := startProc(t, "ip", "netns", "exec", sensorNS, bin, "-tcp", "-udp", "-c", conf)
	p.waitActive(t)
	hits := readHits(t, p.out)
	if uid := p.status(t, "Uid"); uid == 0 {
		t.Error("still root after binding")
	}

	for _, tc := range []struct {
		proto    string
		dst      netip.Addr
		src      netip.Addr
		port     uint16
		readBack bool
	}{
		{"tcp", sensor4, client4, 143, true},
		{"tcp", sensor6, client6, 1080, true},
		{"udp", sensor4, client4, 69, false},
		{"udp", sensor6, client6, 161, false},
	} {
		dst := netip.AddrPortFrom(tc.dst, tc.port)
		t.Run(tc.proto+" "+dst.String(), func(t *testing.T) {
			var src netip.AddrPort
			var got []byte
			err := inNetns(clientNS, func() error {
				if !tc.readBack {
					var err error
					src, err = sendProbe(tc.proto, dst.String())
					return err
				}
				c, err := dialWithRetry(dst.String())
				if err != nil {
					return err
				}
				defer c.Close()
				src = netip.MustParseAddrPort(c.LocalAddr().String())
				c.SetDeadline(time.Now().Add(3 * time.Second))
				got, err = io.ReadAll(c)
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			if src.Addr() != tc.src {
				t.Fatalf("probe left from %v, not %v", src, tc.src)
			}
			if tc.readBack && string(got) != banner {
				t.Errorf("banner %q, want %q", got, banner)
			}
			checkHit(t, nextHit(t, hits), tc.proto, src, dst)
		})
	}

	p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.wait(t); code != 0 {
		t.Errorf("exit status %d after SIGTERM", code)
	}
}

// dialWithRetry connects, allowing a fresh veth link up to 5 s to carry.
func dialWithRetry(addr string) (net.Conn, error) {
	var err error
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		var c net.Conn
		if c, err = net.DialTimeout("tcp", addr, time.Second); err == nil {
			return c, nil
		}
	}
	return nil, fmt.Errorf("dial %s: %w", addr, err)
}
