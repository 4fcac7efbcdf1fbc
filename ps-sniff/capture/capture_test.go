package capture

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/portsentry/pipeline/ps-sniff/decode"
	"github.com/portsentry/pipeline/ps-sniff/frag"
	"github.com/portsentry/pipeline/ps-sniff/probe"
	"github.com/portsentry/pipeline/shared/netlab"
)

func openIn(t *testing.T, lab *netlab.Lab, cfg Config) *Handle {
	t.Helper()
	var h *Handle
	var err error
	netlab.InNamespace(t, lab.Sensor, func() { h, err = Open(cfg) })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// drain reads and decodes what is pending until quiet for idle, at most
// limit packets.
func drain(t *testing.T, h *Handle, idle time.Duration, limit int) []string {
	t.Helper()
	d := decode.New(frag.Limits{})
	var seen []string
	for range limit {
		if err := h.SetReadDeadline(time.Now().Add(idle)); err != nil {
			t.Fatal(err)
		}
		pkt, err := h.Read(true)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if pkt.Type != 0 {
			t.Errorf("packet type %d passed the filter", pkt.Type)
		}
		if time.Since(pkt.Time) > time.Minute || time.Until(pkt.Time) > time.Second {
			t.Errorf("timestamp %v is not now", pkt.Time)
		}
		var p probe.Probe
		switch r := d.Decode(decode.LinkRaw, pkt.Data, pkt.Time, &p); r {
		case decode.OK:
			seen = append(seen, fmt.Sprintf("%s %v>%v:%d %s frag=%v", p.Proto, p.Src, p.Dst, p.Dport, p.Scan, p.Fragmented))
		case decode.FragPending:
		default:
			seen = append(seen, "reason "+r.String())
		}
	}
	return seen
}

func TestLive(t *testing.T) {
	lab := netlab.New(t)
	h := openIn(t, lab, Config{Filter: Filter{TCP: true, UDP: true, TCPBelow: 1024, UDPBelow: 65536}})
	s4, s6 := lab.Sensor4.String(), lab.Sensor6.String()
	sends := [][]string{
		{"hping3", "-q", "-S", "-p", "21", "-c", "1", s4},
		{"hping3", "-q", "-F", "-p", "22", "-c", "1", s4},
		{"hping3", "-q", "-F", "-P", "-U", "-p", "23", "-c", "1", s4},
		{"hping3", "-q", "-p", "24", "-c", "1", s4}, // no flags: null scan
		{"hping3", "-q", "-2", "-p", "161", "-c", "1", s4},
		{"hping3", "-q", "-A", "-p", "25", "-c", "1", s4},       // ACK: filtered in the kernel
		{"hping3", "-q", "-S", "-A", "-p", "26", "-c", "1", s4}, // SYN-ACK: filtered
		{"hping3", "-q", "-R", "-p", "27", "-c", "1", s4},       // RST: filtered
		{"hping3", "-q", "-S", "-p", "2000", "-c", "1", s4},     // above TCPBelow: filtered
		{"hping3", "-q", "-S", "-f", "-p", "28", "-c", "1", s4}, // IPv4 fragments
		{"nmap", "-6", "-sS", "-Pn", "-n", "-p", "29", "--max-retries", "0", s6},
		{"nmap", "-sU", "-Pn", "-n", "-p", "30", "--max-retries", "0", s4},
	}
	var wg sync.WaitGroup
	for _, args := range sends {
		wg.Go(func() { lab.Run(t, lab.Scanner, 20*time.Second, args...) })
	}
	wg.Go(func() {
		// The sensor's own outgoing probe must not be seen.
		lab.Run(t, lab.Sensor, 20*time.Second, "hping3", "-q", "-S", "-p", "31", "-c", "1", lab.Scanner4.String())
	})
	wg.Wait()
	seen := drain(t, h, 500*time.Millisecond, 200)
	a4, a6 := lab.Scanner4, lab.Scanner6
	want := []string{
		fmt.Sprintf("tcp %v>%v:21 syn frag=false", a4, s4),
		fmt.Sprintf("tcp %v>%v:22 fin frag=false", a4, s4),
		fmt.Sprintf("tcp %v>%v:23 xmas frag=false", a4, s4),
		fmt.Sprintf("tcp %v>%v:24 null frag=false", a4, s4),
		fmt.Sprintf("udp %v>%v:161 udp frag=false", a4, s4),
		fmt.Sprintf("tcp %v>%v:28 syn frag=true", a4, s4),
		fmt.Sprintf("tcp %v>%v:29 syn frag=false", a6, s6),
		fmt.Sprintf("udp %v>%v:30 udp frag=false", a4, s4),
	}
	got := map[string]int{}
	for _, s := range seen {
		got[s]++
	}
	for _, w := range want {
		if got[w] == 0 {
			t.Errorf("not captured: %s", w)
		}
		delete(got, w)
	}
	for s := range got {
		t.Errorf("captured but should not be: %s", s)
	}
	if t.Failed() {
		t.Logf("captured: %q", seen)
	}
	if rcv, drops, err := h.Stats(); err != nil || drops != 0 || rcv == 0 {
		t.Errorf("stats: %d received, %d dropped, %v", rcv, drops, err)
	}
}

// TestLiveInterface binds to the veth by name and checks that reading costs
// no allocation, pending or not.
func TestLiveInterface(t *testing.T) {
	lab := netlab.New(t)
	h := openIn(t, lab, Config{Interface: lab.SensorIf, Filter: Filter{UDP: true}})
	if _, err := h.Read(false); !errors.Is(err, ErrWouldBlock) {
		t.Fatalf("empty socket: %v", err)
	}
	if a := testing.AllocsPerRun(100, func() { _, _ = h.Read(false) }); a != 0 {
		t.Errorf("%v allocations per empty read", a)
	}
	const n = 120
	lab.Run(t, lab.Scanner, 20*time.Second, "hping3", "-q", "-2", "-p", "7", "-c", fmt.Sprint(n), "-i", "u2000", lab.Sensor4.String())
	got := 0
	a := testing.AllocsPerRun(n-21, func() {
		if _, err := h.Read(false); err == nil {
			got++
		}
	})
	if got != n-20 || a != 0 {
		t.Errorf("read %d of %d pending packets with %v allocations each", got, n-20, a)
	}
}

func TestOpenErrors(t *testing.T) {
	if _, err := Open(Config{Interface: "no-such-if0"}); err == nil {
		t.Fatal("unknown interface accepted")
	}
}

// TestCloseWakesRead: a Read blocked on an idle socket returns on Close.
func TestCloseWakesRead(t *testing.T) {
	lab := netlab.New(t)
	h := openIn(t, lab, Config{Filter: Filter{UDP: true}})
	done := make(chan error, 1)
	go func() { _, err := h.Read(true); done <- err }()
	time.Sleep(50 * time.Millisecond)
	h.Close()
	select {
	case err := <-done:
		if !errors.Is(err, os.ErrClosed) {
			t.Fatalf("read after close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Read still blocked 5s after Close")
	}
}
