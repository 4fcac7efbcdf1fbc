package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portsentry/pipeline/shared/event"
)

// built is the ps-listen built once for the tests that run the program.
var built struct {
	once sync.Once
	path string
	err  error
}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ps-listen-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	built.path = filepath.Join(dir, "ps-listen")
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// build returns the path of the ps-listen binary, building it on first use.
func build(t *testing.T) string {
	t.Helper()
	built.once.Do(func() {
		out, err := exec.Command("go", "build", "-o", built.path, ".").CombinedOutput()
		if err != nil {
			built.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if built.err != nil {
		t.Fatal(built.err)
	}
	return built.path
}

// skipOrFail skips a test that cannot run here, loudly, and fails it under
// CI=true, where every test must run.
func skipOrFail(t *testing.T, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("CI") == "true" {
		t.Fatalf("CI=true and this test cannot run: %s", msg)
	}
	t.Skipf("SKIPPED, NOT TESTED: %s", msg)
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		skipOrFail(t, "needs root")
	}
}

// freePorts returns n distinct ports, below the ephemeral range so that no
// client socket takes one meanwhile, that are free for TCP and UDP on every
// address, in ascending order as the configuration sorts them.
func freePorts(t *testing.T, n int) []uint16 {
	t.Helper()
	seen := map[uint16]bool{}
	var out []uint16
	for try := 0; len(out) < n && try < 1000; try++ {
		p := uint16(20000 + rand.IntN(12000))
		if seen[p] {
			continue
		}
		seen[p] = true
		ln, err := net.Listen("tcp", ":"+strconv.Itoa(int(p)))
		if err != nil {
			continue
		}
		pc, err := net.ListenPacket("udp", ":"+strconv.Itoa(int(p)))
		ln.Close()
		if err != nil {
			continue
		}
		pc.Close()
		out = append(out, p)
	}
	if len(out) < n {
		t.Fatalf("found only %d free ports of %d", len(out), n)
	}
	slices.Sort(out)
	return out
}

func portList(ports []uint16) string {
	s := make([]string, len(ports))
	for i, p := range ports {
		s[i] = strconv.Itoa(int(p))
	}
	return strings.Join(s, ",")
}

// writeConfig writes a portsentry.conf with the given lines to a temp file.
func writeConfig(t *testing.T, lines ...string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "portsentry.conf")
	if err := os.WriteFile(p, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// readHits decodes the event lines of r into a channel, closed at EOF.
func readHits(t *testing.T, r io.Reader) <-chan event.Event {
	ch := make(chan event.Event, 4096)
	go func() {
		defer close(ch)
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			if bytes.Contains(sc.Bytes(), []byte("::ffff:")) {
				t.Errorf("IPv4-mapped address on the wire: %s", sc.Bytes())
			}
			ev, err := event.Decode(sc.Bytes())
			if err != nil {
				t.Errorf("bad event line %q: %v", sc.Text(), err)
				continue
			}
			ch <- ev
		}
	}()
	return ch
}

// nextHit waits up to 5 s for one hit.
func nextHit(t *testing.T, hits <-chan event.Event) event.Event {
	t.Helper()
	select {
	case ev, ok := <-hits:
		if !ok {
			t.Fatal("event stream ended while waiting for a hit")
		}
		return ev
	case <-time.After(5 * time.Second):
		t.Fatal("no hit within 5 s")
	}
	return event.Event{}
}

// noHit asserts that no hit arrives within d.
func noHit(t *testing.T, hits <-chan event.Event, d time.Duration) {
	t.Helper()
	select {
	case ev, ok := <-hits:
		if ok {
			t.Fatalf("unexpected hit %s", event.Encode(&ev))
		}
	case <-time.After(d):
	}
}

// syncBuffer is a log destination the test reads while the sensor writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// waitFor polls until cond holds, for at most d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
	}
}

// probe connects to (TCP) or sends one datagram to (UDP) addr from the
// current network namespace and returns the client's own address.
func probe(t *testing.T, proto, addr string) netip.AddrPort {
	t.Helper()
	src, err := sendProbe(proto, addr)
	if err != nil {
		t.Fatal(err)
	}
	return src
}

func sendProbe(proto, addr string) (netip.AddrPort, error) {
	c, err := net.DialTimeout(proto, addr, 3*time.Second)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("dial %s %s: %w", proto, addr, err)
	}
	defer c.Close()
	if proto == "udp" {
		if _, err := c.Write([]byte("probe")); err != nil {
			return netip.AddrPort{}, fmt.Errorf("send to %s: %w", addr, err)
		}
	}
	return netip.MustParseAddrPort(c.LocalAddr().String()), nil
}

func dialTCP(addr string) (net.Conn, error) { return net.DialTimeout("tcp", addr, 3*time.Second) }
