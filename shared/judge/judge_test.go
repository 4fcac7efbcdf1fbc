package judge

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/portsentry/pipeline/shared/event"
)

var t0 = time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)

func hit(src string, mode event.Mode, port uint16, at time.Duration) *event.Event {
	return &event.Event{Kind: event.KindHit, Time: t0.Add(at), Src: netip.MustParseAddr(src), Mode: mode,
		Proto: mode.Proto(), Dport: port, Scan: event.ScanSYN}
}

type step struct {
	h    *event.Event
	want Outcome
	kind event.Kind // for Tripped
}

func TestTrigger(t *testing.T) {
	base := Settings{BlockTCP: 1, BlockUDP: 1, IdleTimeout: time.Hour, MaxHosts: 100}
	with := func(f func(*Settings)) Settings { s := base; f(&s); return s }
	a, b := "198.18.0.1", "2001:db8::1"
	tests := []struct {
		name  string
		s     Settings
		steps []step
	}{
		{"trigger 0 reacts at once, once", base, []step{
			{hit(a, event.ModeATCP, 21, 0), Tripped, event.KindBlock},
			{hit(a, event.ModeATCP, 21, time.Second), Decided, 0},
		}},
		{"trigger 2: two grace ports, the third trips", with(func(s *Settings) { s.ScanTrigger = 2 }), []step{
			{hit(a, event.ModeSTCP, 1, 0), Counted, 0},
			{hit(a, event.ModeSTCP, 1, time.Second), Repeat, 0}, // retransmission
			{hit(a, event.ModeSTCP, 1, 2*time.Second), Repeat, 0},
			{hit(a, event.ModeSTCP, 2, 3*time.Second), Counted, 0},
			{hit(b, event.ModeSTCP, 3, 3*time.Second), Counted, 0}, // another host counts apart
			{hit(a, event.ModeSTCP, 3, 4*time.Second), Tripped, event.KindBlock},
		}},
		{"modes count apart and decide apart", with(func(s *Settings) { s.ScanTrigger = 1 }), []step{
			{hit(a, event.ModeSTCP, 1, 0), Counted, 0},
			{hit(a, event.ModeSUDP, 2, 0), Counted, 0},
			{hit(a, event.ModeSTCP, 2, 0), Tripped, event.KindBlock},
			{hit(a, event.ModeSUDP, 3, 0), Tripped, event.KindBlock},
		}},
		{"slow scan, one probe every 15 s, still adds up", with(func(s *Settings) { s.ScanTrigger = 3 }), []step{
			{hit(a, event.ModeATCP, 1, 0), Counted, 0},
			{hit(a, event.ModeATCP, 2, 15*time.Second), Counted, 0},
			{hit(a, event.ModeATCP, 3, 30*time.Second), Counted, 0},
			{hit(a, event.ModeATCP, 4, 45*time.Second), Tripped, event.KindBlock},
		}},
		{"a count is forgotten after the idle timeout", with(func(s *Settings) { s.ScanTrigger = 1 }), []step{
			{hit(a, event.ModeATCP, 1, 0), Counted, 0},
			{hit(a, event.ModeATCP, 2, 61*time.Minute), Counted, 0},
			{hit(a, event.ModeATCP, 3, 62*time.Minute), Tripped, event.KindBlock},
		}},
		{"a decision with a duration ends, then the host is judged afresh", with(func(s *Settings) { s.BlockDuration = 10 * time.Minute }), []step{
			{hit(a, event.ModeATCP, 1, 0), Tripped, event.KindBlock},
			{hit(a, event.ModeATCP, 1, 9*time.Minute), Decided, 0},
			{hit(a, event.ModeATCP, 3, 10*time.Minute), Tripped, event.KindBlock},
		}},
		{"a decision without a duration never ends", base, []step{
			{hit(a, event.ModeATCP, 1, 0), Tripped, event.KindBlock},
			{hit(a, event.ModeATCP, 1, 1000*time.Hour), Decided, 0},
		}},
		{"BLOCK_x 0 and 2 give alert and run", with(func(s *Settings) { s.BlockTCP, s.BlockUDP = 0, 2 }), []step{
			{hit(a, event.ModeTCP, 1, 0), Tripped, event.KindAlert},
			{hit(a, event.ModeAUDP, 1, 0), Tripped, event.KindRun},
		}},
		{"a hit long before the count starts it afresh, as one long after does", with(func(s *Settings) { s.ScanTrigger = 1 }), []step{
			{hit(a, event.ModeATCP, 1, 2*time.Hour), Counted, 0},
			{hit(a, event.ModeATCP, 2, 0), Counted, 0},
			{hit(a, event.ModeATCP, 3, 2*time.Hour), Counted, 0},
		}},
		{"a hit a little out of order counts", with(func(s *Settings) { s.ScanTrigger = 2 }), []step{
			{hit(a, event.ModeATCP, 1, 30*time.Minute), Counted, 0},
			{hit(a, event.ModeATCP, 2, 0), Counted, 0},
			{hit(a, event.ModeATCP, 3, 80*time.Minute), Tripped, event.KindBlock}, // within an hour of the window's end
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := NewTrigger(tt.s)
			var v Verdict
			for i, st := range tt.steps {
				tr.Observe(st.h, &v)
				if v.Outcome != st.want {
					t.Fatalf("step %d (%s port %d): outcome %d, want %d", i, st.h.Src, st.h.Dport, v.Outcome, st.want)
				}
				if v.Outcome == Tripped {
					d := v.Decision
					if d.Kind != st.kind || d.Target != st.h.Src || d.Mode != st.h.Mode || d.Port != st.h.Dport || !d.Time.Equal(st.h.Time) || d.Hits != tt.s.ScanTrigger+1 {
						t.Fatalf("step %d: decision %+v", i, d)
					}
					if tt.s.BlockDuration > 0 && !d.Until.Equal(st.h.Time.Add(tt.s.BlockDuration)) || tt.s.BlockDuration == 0 && !d.Until.IsZero() {
						t.Fatalf("step %d: until %v", i, d.Until)
					}
					if _, err := event.Decode(event.Encode(&d)); err != nil {
						t.Fatalf("step %d: decision does not encode to a valid line: %v", i, err)
					}
				}
			}
		})
	}
}

// TestEscalation: a decided host that goes on scanning is reported again
// each time its count of ports doubles, a bounded number of times, with the
// decision's own end; a host that stops is never reported again.
func TestEscalation(t *testing.T) {
	tr := NewTrigger(Settings{ScanTrigger: 1, BlockTCP: 1, IdleTimeout: time.Hour, MaxHosts: 10, BlockDuration: time.Hour})
	var v Verdict
	var said []int
	var until time.Time
	for p := 1; p <= 1024; p++ {
		tr.Observe(hit("198.18.0.1", event.ModeATCP, uint16(p), time.Duration(p)*time.Millisecond), &v)
		switch v.Outcome {
		case Tripped:
			until = v.Decision.Until
			said = append(said, v.Decision.Hits)
		case Escalated:
			if !v.Decision.Until.Equal(until) || v.Decision.Kind != event.KindBlock || v.Decision.Port != uint16(p) {
				t.Fatalf("escalation %+v", v.Decision)
			}
			said = append(said, v.Decision.Hits)
		}
	}
	if len(said) < 4 || len(said) > 1+maxEscalations || said[0] != 2 {
		t.Fatalf("said at %v", said)
	}
	for i := 1; i < len(said); i++ {
		if said[i] < 2*said[i-1] {
			t.Fatalf("said at %v: each must double the last", said)
		}
	}
}

// TestNoEscalationForRunOrAlert: KILL_RUN_CMD runs once per scanner, as
// in 1.2, however long it scans.
func TestNoEscalationForRunOrAlert(t *testing.T) {
	for _, level := range []int{0, 2} {
		tr := NewTrigger(Settings{BlockTCP: level, IdleTimeout: time.Hour, MaxHosts: 10})
		var v Verdict
		said := 0
		for p := 1; p <= 200; p++ {
			tr.Observe(hit("198.18.0.1", event.ModeATCP, uint16(p), 0), &v)
			if v.Outcome == Tripped || v.Outcome == Escalated {
				said++
			}
		}
		if said != 1 {
			t.Errorf("BLOCK_TCP=%d: %d decisions for one scanner, want 1", level, said)
		}
	}
}

func TestForget(t *testing.T) {
	tr := NewTrigger(Settings{BlockTCP: 1, IdleTimeout: time.Hour, MaxHosts: 10})
	var v Verdict
	h := hit("198.18.0.1", event.ModeATCP, 1, 0)
	tr.Observe(h, &v)
	tr.Forget(h.Src, h.Mode)
	if n, _ := tr.Stats(); n != 0 {
		t.Fatalf("%d hosts after Forget", n)
	}
	tr.Observe(h, &v)
	if v.Outcome != Tripped {
		t.Fatalf("after Forget the host must be judged afresh, got %d", v.Outcome)
	}
}

// TestBoundedTable streams many spoofed sources through a small table.
func TestBoundedTable(t *testing.T) {
	const max = 1000
	tr := NewTrigger(Settings{ScanTrigger: 1, BlockTCP: 1, IdleTimeout: time.Hour, MaxHosts: max})
	var v Verdict
	for i := 0; i < 50000; i++ {
		src := netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)})
		tr.Observe(hit(src.String(), event.ModeATCP, uint16(i), time.Duration(i)*time.Millisecond), &v)
	}
	n, evicted := tr.Stats()
	if n != max || evicted != 50000-max || len(tr.hosts) != max {
		t.Fatalf("hosts %d (slots %d), evicted %d", n, len(tr.hosts), evicted)
	}
	// The most recent hosts are the ones kept.
	recent := hit(netip.AddrFrom4([4]byte{198, 18, byte(49999 >> 8), byte(49999 & 0xff)}).String(), event.ModeATCP, 7, 50*time.Second)
	tr.Observe(recent, &v)
	if v.Outcome != Tripped {
		t.Fatalf("the most recent host was forgotten: outcome %d", v.Outcome)
	}
}

// TestOrderDoesNotMatter: the same two hits decide the same in either
// order, whatever their gap (issue 11: seven hours apart, they decided
// nothing in time order and blocked when swapped).
func TestOrderDoesNotMatter(t *testing.T) {
	for _, idle := range []time.Duration{time.Hour, 6 * time.Hour} {
		for _, gap := range []time.Duration{0, time.Second, 59 * time.Minute, time.Hour, 61 * time.Minute, 6 * time.Hour, 7 * time.Hour, 1000 * time.Hour} {
			decide := func(first, second time.Duration) []Outcome {
				tr := NewTrigger(Settings{ScanTrigger: 1, BlockTCP: 1, IdleTimeout: idle, MaxHosts: 10})
				var v Verdict
				var out []Outcome
				for i, at := range []time.Duration{first, second} {
					tr.Observe(hit("198.18.0.1", event.ModeATCP, uint16(21+i), at), &v)
					out = append(out, v.Outcome)
				}
				return out
			}
			inOrder, swapped := decide(0, gap), decide(gap, 0)
			if inOrder[1] != swapped[1] {
				t.Errorf("idle %v, hits %v apart: %v in time order, %v swapped", idle, gap, inOrder, swapped)
			}
			if want := map[bool]Outcome{true: Tripped, false: Counted}[gap <= idle]; inOrder[1] != want {
				t.Errorf("idle %v, hits %v apart: %v, want %v", idle, gap, inOrder, want)
			}
		}
	}
}

// TestUntilBounded: however long BLOCK_DURATION, until stays a time an
// event line may carry.
func TestUntilBounded(t *testing.T) {
	tr := NewTrigger(Settings{BlockTCP: 1, IdleTimeout: time.Hour, MaxHosts: 10, BlockDuration: 290 * 365 * 24 * time.Hour})
	var v Verdict
	h := hit("198.18.0.1", event.ModeATCP, 1, 0)
	h.Time = time.Date(2199, 12, 31, 0, 0, 0, 0, time.UTC)
	tr.Observe(h, &v)
	if v.Outcome != Tripped || !v.Decision.Until.Before(event.MaxTime) || v.Decision.Until.Before(h.Time) {
		t.Fatalf("verdict %+v", v)
	}
	if _, err := event.Decode(event.Encode(&v.Decision)); err != nil {
		t.Fatalf("decision does not decode: %v", err)
	}
}

func TestExpire(t *testing.T) {
	tr := NewTrigger(Settings{ScanTrigger: 5, BlockTCP: 1, IdleTimeout: time.Minute, MaxHosts: 100})
	var v Verdict
	for i := 0; i < 10; i++ {
		tr.Observe(hit(fmt.Sprintf("198.18.0.%d", i), event.ModeATCP, 1, time.Duration(i)*time.Second), &v)
	}
	tr.Expire(t0.Add(65 * time.Second)) // hosts 0-4 idle more than a minute
	if n, _ := tr.Stats(); n != 5 {
		t.Fatalf("%d hosts after Expire, want 5", n)
	}
	// Freed slots are reused, not grown.
	for i := 10; i < 15; i++ {
		tr.Observe(hit(fmt.Sprintf("198.18.0.%d", i), event.ModeATCP, 1, 70*time.Second), &v)
	}
	if n, _ := tr.Stats(); n != 10 || len(tr.hosts) != 10 {
		t.Fatalf("%d hosts in %d slots", n, len(tr.hosts))
	}
}

func TestDeterministic(t *testing.T) {
	run := func() []event.Event {
		tr := NewTrigger(Settings{ScanTrigger: 2, BlockTCP: 1, IdleTimeout: time.Hour, MaxHosts: 1000, BlockDuration: 5 * time.Minute})
		var out []event.Event
		var v Verdict
		for i := 0; i < 20000; i++ {
			h := hit(fmt.Sprintf("198.18.%d.%d", i%7, i%101), event.ModeATCP, uint16(i%13), time.Duration(i)*100*time.Millisecond)
			tr.Observe(h, &v)
			if v.Outcome == Tripped {
				out = append(out, v.Decision)
			}
		}
		return out
	}
	a, b := run(), run()
	if len(a) == 0 || len(a) != len(b) {
		t.Fatalf("%d and %d decisions", len(a), len(b))
	}
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("decision %d differs: %+v / %+v", i, a[i], b[i])
		}
	}
}

func TestObserveAllocs(t *testing.T) {
	tr := NewTrigger(Settings{ScanTrigger: 3, BlockTCP: 1, IdleTimeout: time.Hour, MaxHosts: 10})
	h := hit("198.18.0.1", event.ModeATCP, 1, 0)
	var v Verdict
	tr.Observe(h, &v)
	if a := testing.AllocsPerRun(1000, func() { tr.Observe(h, &v) }); a != 0 {
		t.Fatalf("%v allocations per repeated hit", a)
	}
}

// BenchmarkObserveSpoofed is make bench's spoofed flood as the table sees
// it: 2^20 sources (half IPv6) in turn, 100,000 remembered at most, so
// each hit is a host to insert and one to forget.
func BenchmarkObserveSpoofed(b *testing.B) {
	tr := NewTrigger(Settings{ScanTrigger: 0, BlockTCP: 1, IdleTimeout: time.Hour, MaxHosts: 100000})
	r := rand.New(rand.NewPCG(1, 2))
	srcs := make([]netip.Addr, 1<<20)
	for i := range srcs {
		if r.IntN(2) == 0 {
			var a [16]byte
			binary.BigEndian.PutUint64(a[:], 0x20010db8<<32|r.Uint64()>>32)
			binary.BigEndian.PutUint64(a[8:], r.Uint64())
			srcs[i] = netip.AddrFrom16(a)
		} else {
			srcs[i] = netip.AddrFrom4([4]byte{100, 64 + byte(i>>16), byte(i >> 8), byte(i)})
		}
	}
	h := hit("198.18.0.1", event.ModeATCP, 1, 0)
	var v Verdict
	i := 0
	for b.Loop() {
		h.Src = srcs[i&(len(srcs)-1)]
		tr.Observe(h, &v)
		i++
	}
}

// TestClock: in a full table, a host seen at least once per turn of the
// hand is kept through any number of new hosts, and a host seen once is
// forgotten a turn after it came, as the least recently seen would be.
func TestClock(t *testing.T) {
	const max = 100
	tr := NewTrigger(Settings{ScanTrigger: 1000, BlockTCP: 1, IdleTimeout: time.Hour, MaxHosts: max})
	var v Verdict
	n := 0
	newHost := func() {
		n++
		tr.Observe(hit(netip.AddrFrom4([4]byte{198, 19, byte(n >> 8), byte(n)}).String(), event.ModeATCP, 1, time.Duration(n)*time.Millisecond), &v)
	}
	for range max {
		newHost()
	}
	// A scanner seen every 60 new hosts keeps its count throughout.
	for i := range 50 {
		tr.Observe(hit("198.18.0.1", event.ModeATCP, uint16(100+i), time.Duration(n)*time.Millisecond), &v)
		if v.Outcome != Counted || v.Hits != i+1 {
			t.Fatalf("scanner's hit %d: outcome %d, %d hits: forgotten", i+1, v.Outcome, v.Hits)
		}
		for range 60 {
			newHost()
		}
	}
	// A host seen once is kept for less than a turn, not for more.
	for _, later := range []struct {
		newHosts int
		kept     bool
	}{{max - 10, true}, {max + 50, false}} {
		src := fmt.Sprintf("198.18.1.%d", later.newHosts%250)
		tr.Observe(hit(src, event.ModeATCP, 1, time.Duration(n)*time.Millisecond), &v)
		for range later.newHosts {
			newHost()
		}
		tr.Observe(hit(src, event.ModeATCP, 2, time.Duration(n)*time.Millisecond), &v)
		if kept := v.Hits == 2; kept != later.kept {
			t.Errorf("host seen once, then %d new hosts: kept %v, want %v", later.newHosts, kept, later.kept)
		}
	}
	if hosts, _ := tr.Stats(); hosts != max {
		t.Fatalf("%d hosts, want %d", hosts, max)
	}
}

// TestPrefetchChangesNothing: a Trigger given each next hit (or another)
// through Prefetch before each Observe decides as one never given any, for
// hosts it keeps and through a full table that forgets hosts for room.
func TestPrefetchChangesNothing(t *testing.T) {
	hits := make([]*event.Event, 5000)
	for i := range hits {
		mode := event.ModeATCP
		if i%3 == 0 {
			mode = event.ModeAUDP
		}
		src := fmt.Sprintf("198.18.0.%d", i%20) // 20 scanners, kept
		if i%4 == 0 {
			src = fmt.Sprintf("198.19.%d.%d", i>>8, i&255) // hosts seen once, forgotten for room
		}
		hits[i] = hit(src, mode, uint16(i%9), time.Duration(i)*time.Second)
	}
	for _, ahead := range []struct {
		name string
		next func(i int) *event.Event // what Prefetch is given before hit i
	}{
		{"the next hit", func(i int) *event.Event { return hits[min(i+1, len(hits)-1)] }},
		{"this hit", func(i int) *event.Event { return hits[i] }},
		{"another host", func(i int) *event.Event { return hits[(i*7+3)%len(hits)] }},
		{"this host in another mode", func(i int) *event.Event {
			h := *hits[i]
			h.Mode = event.ModeSTCP
			return &h
		}},
	} {
		t.Run(ahead.name, func(t *testing.T) {
			s := Settings{ScanTrigger: 2, BlockTCP: 1, BlockUDP: 2, IdleTimeout: time.Hour, MaxHosts: 50}
			plain, prefetching := NewTrigger(s), NewTrigger(s)
			var want, got Verdict
			for i, h := range hits {
				plain.Observe(h, &want)
				prefetching.Prefetch(ahead.next(i))
				prefetching.Observe(h, &got)
				if got != want {
					t.Fatalf("hit %d: %+v with Prefetch, %+v without", i, got, want)
				}
			}
			if _, evicted := plain.Stats(); evicted == 0 {
				t.Fatal("the table never forgot a host: the test proves less than it says")
			}
		})
	}
}
