package listening

import (
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portsentry/pipeline/ps-sniff/probe"
	"golang.org/x/sys/unix"
)

var update = flag.Bool("update", false, "rewrite golden files")

func format(t *Table) string {
	var b strings.Builder
	fmt.Fprintf(&b, "tcp %v\nudp %v\n", t.TCP.List(), t.UDP.List())
	return b.String()
}

func TestGolden(t *testing.T) {
	w, err := NewWatcher("testdata/proc", true, true)
	if err != nil {
		t.Fatal(err)
	}
	got := format(w.Table())
	golden := "testdata/proc.golden"
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
}

func TestHostile(t *testing.T) {
	var errs []error
	w, err := NewWatcher("testdata/hostile", true, true)
	if err == nil {
		w.OnError = func(err error) { errs = append(errs, err) }
		err = w.Refresh()
	}
	if err != nil {
		t.Fatal(err)
	}
	if got := w.Table().TCP.List(); fmt.Sprint(got) != "[22 26]" {
		t.Errorf("tcp ports %v, want [22 26]", got)
	}
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "line 3") {
		t.Errorf("errors %v, want one naming line 3", errs)
	}
}

func TestParseLine(t *testing.T) {
	tests := []struct {
		line  string
		port  uint16
		state uint8
		ok    bool
	}{
		{"   0: 00000000:0016 00000000:0000 0A 00000000:00000000", 22, 0x0a, true},
		{"0: 00000000000000000000000000000000:FFFF 0:0 07", 65535, 7, true},
		{"0: 00000000:0016 00000000:0000", 0, 0, false},
		{"0 00000000:0016 00000000:0000 0A", 0, 0, false},
		{"0: 0000000g:0016 00000000:0000 0A", 0, 0, false},
		{"0: 00000000:016 00000000:0000 0A", 0, 0, false},
		{"0: 00000000:0016 00000000:0000 A", 0, 0, false},
		{"0: 00000000:0016 00000000:0000 0A0", 0, 0, false},
		{"", 0, 0, false},
	}
	for _, tt := range tests {
		port, state, err := parseLine([]byte(tt.line))
		if (err == nil) != tt.ok || port != tt.port || state != tt.state {
			t.Errorf("parseLine(%q) = %d, %#x, %v", tt.line, port, state, err)
		}
	}
}

func TestMissingTables(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "tcp"), []byte("header\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := NewWatcher(dir, true, false); err != nil {
		t.Fatalf("no tcp6 (IPv6 off) must be fine: %v", err)
	}
	if _, err := NewWatcher(dir, false, true); err == nil {
		t.Fatal("missing udp table not reported")
	}
}

// TestOnDemand: a port bound after the last reading but before the packet
// is seen, because Listening reads again when its table is older.
func TestOnDemand(t *testing.T) {
	dir := t.TempDir()
	write := func(port int) {
		line := fmt.Sprintf("h\n 0: 00000000:%04X 00000000:0000 0A x\n", port)
		if err := os.WriteFile(filepath.Join(dir, "tcp"), []byte(line), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(21)
	w, err := NewWatcher(dir, true, false)
	if err != nil {
		t.Fatal(err)
	}
	read := w.Table().Read
	write(40001) // the FTP server binds a data port
	if w.Listening(probe.ProtoTCP, 40001, read) {
		t.Fatal("a packet older than the reading re-read the table")
	}
	if !w.Listening(probe.ProtoTCP, 40001, time.Now()) {
		t.Fatal("port bound since the last reading not seen")
	}
	if w.Listening(probe.ProtoTCP, 21, time.Now()) {
		t.Fatal("stale port still listening")
	}
}

// TestProcLive binds real sockets and finds them in this host's /proc.
func TestProcLive(t *testing.T) {
	if _, err := os.Stat("/proc/net/tcp"); err != nil {
		t.Skipf("no /proc/net/tcp: %v", err)
	}
	w, err := NewWatcher("/proc/net", true, true)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	u, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	tport := uint16(l.Addr().(*net.TCPAddr).Port)
	uport := uint16(u.LocalAddr().(*net.UDPAddr).Port)
	now := time.Now()
	if !w.Listening(probe.ProtoTCP, tport, now) || !w.Listening(probe.ProtoUDP, uport, now) {
		t.Fatalf("tcp %d / udp %d not found listening", tport, uport)
	}
	l.Close()
	if w.Listening(probe.ProtoTCP, tport, time.Now()) {
		t.Fatalf("tcp %d still listening after close", tport)
	}
}

func FuzzParseProc(f *testing.F) {
	for _, name := range []string{"tcp", "tcp6", "udp", "udp6"} {
		b, err := os.ReadFile(filepath.Join("testdata/proc", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, name[0] == 't')
	}
	f.Fuzz(func(t *testing.T, data []byte, tcp bool) {
		var p Ports
		_ = ParseProc(data, tcp, &p)
	})
}

func TestPorts(t *testing.T) {
	var p Ports
	for _, n := range []uint16{0, 1, 63, 64, 65535} {
		p.Add(n)
	}
	if fmt.Sprint(p.List()) != "[0 1 63 64 65535]" || p.Has(2) {
		t.Fatal(p.List())
	}
}

// TestKernelWatcherAgreesWithProc: sock_diag and /proc list the same
// ports, and a socket opened after a reading is seen by the next one.
func TestKernelWatcherAgreesWithProc(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	w, fallback, err := NewKernelWatcher(true, true)
	if err != nil || fallback != "" {
		t.Fatalf("NewKernelWatcher: %v (fell back: %q)", err, fallback)
	}
	port := uint16(ln.Addr().(*net.TCPAddr).Port)
	if !w.Listening(probe.ProtoTCP, port, time.Time{}) {
		t.Fatalf("listening port %d not seen", port)
	}
	pc, err := net.ListenPacket("udp", "[::1]:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	uport := uint16(pc.LocalAddr().(*net.UDPAddr).Port)
	if !w.Listening(probe.ProtoUDP, uport, time.Now()) {
		t.Fatalf("UDP port %d bound after the reading not seen by the next", uport)
	}
	proc, err := NewWatcher("/proc/net", true, true)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Refresh(); err != nil {
		t.Fatal(err)
	}
	// Sockets come and go between two readings (other tests run): both
	// must hold at least this test's own.
	for _, tb := range []*Table{w.Table(), proc.Table()} {
		if !tb.TCP.Has(port) || !tb.UDP.Has(uport) {
			t.Fatalf("a reading lacks the test's own ports")
		}
	}
}

// BenchmarkRead compares the two ways of reading the tables: the read made
// before a hit is reported.
func BenchmarkRead(b *testing.B) {
	kernel, _, err := NewKernelWatcher(true, true)
	if err != nil {
		b.Fatal(err)
	}
	proc, err := NewWatcher("/proc/net", true, true)
	if err != nil {
		b.Fatal(err)
	}
	for name, w := range map[string]*Watcher{"sock_diag": kernel, "proc": proc} {
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				if err := w.Refresh(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestOwner: the kernel's lookup for one probe finds the socket that would
// take it (bound to the probe's address, to the wildcard, or an IPv6
// wildcard socket taking IPv4 too), and none for a free port.
func TestOwner(t *testing.T) {
	d, err := newDiag()
	if err != nil {
		t.Skipf("no sock_diag: %v", err)
	}
	defer unix.Close(d.fd)
	v4, v6 := netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("::1")
	free := func(network string) uint16 {
		// A port that was just free: bound, then closed.
		if network[:3] == "tcp" {
			l, err := net.Listen(network, "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			return uint16(l.Addr().(*net.TCPAddr).Port)
		}
		c, err := net.ListenPacket(network, "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return uint16(c.LocalAddr().(*net.UDPAddr).Port)
	}
	bind := func(network, addr string) uint16 {
		if network[:3] == "tcp" {
			l, err := net.Listen(network, addr)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { l.Close() })
			return uint16(l.Addr().(*net.TCPAddr).Port)
		}
		c, err := net.ListenPacket(network, addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return uint16(c.LocalAddr().(*net.UDPAddr).Port)
	}
	for _, tc := range []struct {
		name    string
		proto   probe.Proto
		network string
		bind    string // "" for a free port
		dst     netip.Addr
		want    bool
	}{
		{"tcp4 on its address", probe.ProtoTCP, "tcp4", "127.0.0.1:0", v4, true},
		{"tcp4 wildcard", probe.ProtoTCP, "tcp4", "0.0.0.0:0", v4, true},
		{"tcp6 on its address", probe.ProtoTCP, "tcp6", "[::1]:0", v6, true},
		{"tcp dual-stack takes IPv4", probe.ProtoTCP, "tcp", "[::]:0", v4, true},
		{"tcp4 bound elsewhere", probe.ProtoTCP, "tcp4", "127.0.0.2:0", v4, false},
		{"tcp free", probe.ProtoTCP, "tcp4", "", v4, false},
		{"udp4 on its address", probe.ProtoUDP, "udp4", "127.0.0.1:0", v4, true},
		{"udp6 on its address", probe.ProtoUDP, "udp6", "[::1]:0", v6, true},
		{"udp dual-stack takes IPv4", probe.ProtoUDP, "udp", "[::]:0", v4, true},
		{"udp free", probe.ProtoUDP, "udp4", "", v4, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var port uint16
			if tc.bind == "" {
				port = free(tc.network)
			} else {
				port = bind(tc.network, tc.bind)
			}
			// The scanner's address differs from the socket's, so that a
			// lookup with the two swapped finds nothing.
			src := netip.MustParseAddr("127.0.0.9")
			if tc.dst.Is6() {
				src = netip.MustParseAddr("2001:db8::9")
			}
			p := &probe.Probe{Src: src, Dst: tc.dst, Proto: tc.proto, Sport: 40000, Dport: port}
			got, err := d.owner(p)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Fatalf("owner of %s port %d = %v, want %v", tc.dst, port, got, tc.want)
			}
		})
	}
}

// TestTakenLooksUpNewSockets: a socket bound after the reading is found
// by Taken's lookup, without a new reading of the tables.
func TestTakenLooksUpNewSockets(t *testing.T) {
	w, fallback, err := NewKernelWatcher(true, false)
	if err != nil || fallback != "" {
		t.Skipf("no sock_diag: %v %s", err, fallback)
	}
	read := w.Table()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := uint16(l.Addr().(*net.TCPAddr).Port)
	lo := netip.MustParseAddr("127.0.0.1")
	p := &probe.Probe{Src: lo, Dst: lo, Proto: probe.ProtoTCP, Sport: 40000, Dport: port}
	if !w.Taken(p, time.Now()) {
		t.Fatalf("port %d bound after the reading not taken", port)
	}
	if w.Table() != read {
		t.Fatal("Taken read the tables again for a port its lookup found")
	}
	l.Close()
	if w.Taken(p, time.Now()) {
		t.Fatalf("port %d taken after its socket closed", port)
	}
	// A probe that waited long in the queue (ps-sniff behind a flood): one
	// new reading serves it and every probe queued before that reading.
	time.Sleep(2 * lookupMaxAge)
	if w.Taken(p, time.Now().Add(-lookupMaxAge-time.Microsecond)) || w.Table() == read {
		t.Fatal("a probe older than lookupMaxAge did not make a new reading")
	}
}
