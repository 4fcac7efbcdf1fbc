package main

import (
	"io"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portsentry/pipeline/shared/alert"
	"github.com/portsentry/pipeline/shared/event"
	"github.com/portsentry/pipeline/shared/transport"
)

// running is a sensor run in the test process on loopback.
type running struct {
	hits <-chan event.Event
	log  *syncBuffer
}

func startSensor(t *testing.T, tcp, udp []uint16, banner string) *running {
	t.Helper()
	return startSensorWith(t, newBinder(), tcp, udp, banner)
}

func startSensorWith(t *testing.T, b binder, tcp, udp []uint16, banner string) *running {
	t.Helper()
	logs := &syncBuffer{}
	log := alert.NewWriter("ps-listen", logs)
	logf := func(f string, a ...any) { log.Admin(f, a...) }
	socks := append(bindAll(b, event.ProtoTCP, tcp, logf), bindAll(b, event.ProtoUDP, udp, logf)...)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	s, err := newSensor(socks, transport.NewWriter(w), log, banner, false)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Run() }()
	t.Cleanup(func() {
		s.Stop()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("sensor did not stop within 5 s")
		}
		s.Close()
		w.Close() // the reader sees EOF and ends
	})
	return &running{hits: readHits(t, r), log: logs}
}

// checkHit compares a hit with what the probe from src to dst must give.
func checkHit(t *testing.T, ev event.Event, proto string, src, dst netip.AddrPort) {
	t.Helper()
	mode, scan := event.ModeTCP, event.ScanConnect
	if proto == "udp" {
		mode, scan = event.ModeUDP, event.ScanUDP
	}
	want := event.Event{Kind: event.KindHit, Sensor: "ps-listen", Mode: mode, Proto: mode.Proto(), Scan: scan,
		Src: src.Addr().Unmap(), Sport: src.Port(), Dst: dst.Addr(), Dport: dst.Port()}
	ev.Time = time.Time{}
	if ev != want {
		t.Errorf("hit\n got %s want %s", event.Encode(&ev), event.Encode(&want))
	}
}

func hasIPv6Loopback() bool {
	ln, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		return false
	}
	ln.Close()
	return true
}

func TestHits(t *testing.T) {
	if !newBinder().v6 || !hasIPv6Loopback() {
		skipOrFail(t, "no IPv6 loopback")
	}
	cases := []struct {
		name, proto, ip string
	}{
		{"tcp ipv4", "tcp", "127.0.0.1"},
		{"tcp ipv4 other local address", "tcp", "127.0.0.3"},
		{"tcp ipv6", "tcp", "::1"},
		{"udp ipv4", "udp", "127.0.0.1"},
		{"udp ipv4 other local address", "udp", "127.0.0.2"},
		{"udp ipv6", "udp", "::1"},
	}
	// Dual-stack sockets, and the IPv4-only ones of a host without IPv6.
	for _, b := range []binder{{v6: true}, {v6: false}} {
		t.Run("v6="+strconv.FormatBool(b.v6), func(t *testing.T) {
			ports := freePorts(t, 2)
			r := startSensorWith(t, b, ports[:1], ports[1:], "")
			for _, tc := range cases {
				dst := netip.AddrPortFrom(netip.MustParseAddr(tc.ip), ports[0])
				if tc.proto == "udp" {
					dst = netip.AddrPortFrom(dst.Addr(), ports[1])
				}
				if dst.Addr().Is6() && !b.v6 {
					continue // IPv4-only sockets: nothing listens there
				}
				t.Run(tc.name, func(t *testing.T) {
					src := probe(t, tc.proto, dst.String())
					checkHit(t, nextHit(t, r.hits), tc.proto, src, dst)
				})
			}
			if want := "attackalert: Connect from host: 127.0.0.1/127.0.0.1 to UDP port: " + strconv.Itoa(int(ports[1])); !strings.Contains(r.log.String(), want) {
				t.Errorf("no line %q in the log:\n%s", want, r.log)
			}
		})
	}
}

func TestBanner(t *testing.T) {
	for _, tc := range []struct{ name, banner string }{
		{"none", ""},
		{"1.2 style", "** UNAUTHORIZED ACCESS PROHIBITED *** YOUR CONNECTION ATTEMPT HAS BEEN LOGGED. GO AWAY."},
	} {
		t.Run(tc.name, func(t *testing.T) {
			port := freePorts(t, 1)
			r := startSensor(t, port, nil, tc.banner)
			c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(int(port[0]))), 3*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(3 * time.Second))
			// ReadAll ends at EOF only: the sensor must close at once.
			got, err := io.ReadAll(c)
			if err != nil {
				t.Fatalf("reading the banner: %v", err)
			}
			if string(got) != tc.banner {
				t.Errorf("banner %q, want %q", got, tc.banner)
			}
			nextHit(t, r.hits)
		})
	}
}

// TestPortInUse is 1.2's wrong-port bug: after a port failed to bind, hits
// on the later ports were reported on the wrong port.
func TestPortInUse(t *testing.T) {
	for _, proto := range []string{"tcp", "udp"} {
		t.Run(proto, func(t *testing.T) {
			ports := freePorts(t, 3)
			taken := ":" + strconv.Itoa(int(ports[1]))
			var holder io.Closer
			var err error
			if proto == "tcp" {
				holder, err = net.Listen("tcp", taken)
			} else {
				holder, err = net.ListenPacket("udp", taken)
			}
			if err != nil {
				t.Fatal(err)
			}
			defer holder.Close()
			var r *running
			if proto == "tcp" {
				r = startSensor(t, ports, nil, "")
			} else {
				r = startSensor(t, nil, ports, "")
			}
			up := strings.ToUpper(proto)
			log := r.log.String()
			for i, p := range ports {
				bound := strings.Contains(log, "adminalert: Going into listen mode on "+up+" port: "+strconv.Itoa(int(p))+"\n")
				warned := strings.Contains(log, "adminalert: ERROR: could not bind "+up+" socket: "+strconv.Itoa(int(p))+" ")
				if bound != (i != 1) || warned != (i == 1) {
					t.Errorf("port %d: bound %v, warned %v; log:\n%s", p, bound, warned, log)
				}
			}
			for _, i := range []int{2, 0} {
				dst := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), ports[i])
				src := probe(t, proto, dst.String())
				checkHit(t, nextHit(t, r.hits), proto, src, dst)
			}
			if proto == "udp" {
				probe(t, proto, "127.0.0.1"+taken)
				noHit(t, r.hits, 200*time.Millisecond)
			}
		})
	}
}

// TestFlood: 2000 connections, 50 at a time, cost the sensor no goroutine
// and no lasting memory, and every one is reported.
func TestFlood(t *testing.T) {
	const conns, workers = 2000, 50
	port := freePorts(t, 1)
	r := startSensor(t, port, nil, "banner\r\n")
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(int(port[0])))

	jobs := make(chan struct{})
	var wg sync.WaitGroup
	var failed atomic.Int64
	for range workers {
		wg.Go(func() {
			for range jobs {
				c, err := net.DialTimeout("tcp", addr, 3*time.Second)
				if err != nil {
					failed.Add(1)
					continue
				}
				c.Close()
			}
		})
	}
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	base := runtime.NumGoroutine()

	var peak atomic.Int64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				if n := int64(runtime.NumGoroutine()); n > peak.Load() {
					peak.Store(n)
				}
			}
		}
	}()
	start := time.Now()
	for range conns {
		jobs <- struct{}{}
	}
	close(jobs)
	wg.Wait()
	for i := range conns - int(failed.Load()) {
		if _, ok := <-r.hits; !ok {
			t.Fatalf("stream ended after %d hits", i)
		}
	}
	elapsed := time.Since(start)
	close(stop)
	<-sampled
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)

	t.Logf("%d connections in %v (%.0f/s), %d failed to connect; goroutines %d at rest, peak %d (sampler included); heap in use %d KiB before, %d KiB after",
		conns, elapsed.Round(time.Millisecond), float64(conns)/elapsed.Seconds(), failed.Load(), base, peak.Load(), before.HeapInuse>>10, after.HeapInuse>>10)
	if failed.Load() > 0 {
		t.Errorf("%d connections failed", failed.Load())
	}
	// The sampler and the timer of the rate-limited log are the only newcomers.
	if peak.Load() > int64(base)+3 {
		t.Errorf("goroutines grew from %d to %d under the flood", base, peak.Load())
	}
	if grown := int64(after.HeapInuse) - int64(before.HeapInuse); grown > 4<<20 {
		t.Errorf("heap grew by %d KiB under the flood", grown>>10)
	}
	// Rate limited: at most DefaultPerSecond lines in each second begun.
	if n, most := strings.Count(r.log.String(), "attackalert: Connect from"), alert.DefaultPerSecond*(int(elapsed.Seconds())+2); n > most {
		t.Errorf("%d attack lines for %d connections, more than %d: not rate limited", n, conns, most)
	}
}

// TestUDPBounded: datagrams of every size, up to the largest UDP carries,
// are each one hit with the sender's true address, read into the sensor's
// small buffer (the rest is discarded by the kernel), and 1000 of them from
// one socket cost no lasting memory.
func TestUDPBounded(t *testing.T) {
	port := freePorts(t, 1)
	r := startSensor(t, nil, port, "")
	dst := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port[0])
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(dst))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.SetWriteBuffer(4 << 20); err != nil {
		t.Fatal(err)
	}
	src := netip.MustParseAddrPort(c.LocalAddr().String())
	for _, size := range []int{0, 1, 64, 65, 1500, 9000, 65507} {
		if _, err := c.Write(make([]byte, size)); err != nil {
			t.Fatalf("%d-byte datagram: %v", size, err)
		}
		checkHit(t, nextHit(t, r.hits), "udp", src, dst)
	}
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	const burst = 1000
	big := make([]byte, 65507)
	for range burst {
		if _, err := c.Write(big); err != nil {
			t.Fatal(err)
		}
		nextHit(t, r.hits) // one at a time: the socket's buffer never overflows
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	// 1000 datagrams of 64 KiB are 64 MiB: none of it may stay.
	if grew := int64(after.HeapInuse) - int64(before.HeapInuse); grew > 4<<20 {
		t.Errorf("heap grew by %d bytes after %d datagrams of %d bytes", grew, burst, len(big))
	}
}
