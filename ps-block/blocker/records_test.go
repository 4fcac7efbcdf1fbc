package blocker

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/portsentry/pipeline/ps-block/blockfile"
	"github.com/portsentry/pipeline/ps-block/command"
	"github.com/portsentry/pipeline/ps-block/hostsdeny"
	"github.com/portsentry/pipeline/shared/event"
	"github.com/portsentry/pipeline/shared/logtest"
	"github.com/portsentry/pipeline/shared/transport"
)

// A FIFO planted where HISTORY_FILE goes must not hang ps-block (before,
// the open waited for a writer for ever, with the blocker's lock held); the
// block is carried out and the refusal said.
func TestRecordFIFONoHang(t *testing.T) {
	log := &logtest.Book{}
	dir := t.TempDir()
	hist := filepath.Join(dir, "portsentry.history")
	if err := syscall.Mkfifo(hist, 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan *rig, 1)
	go func() {
		done <- newRig(t, func(c *Config) { c.HistoryFile, c.Log = hist, log })
	}()
	var r *rig
	select {
	case r = <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Restore hangs")
	}
	fed := make(chan struct{})
	go func() { r.feed(block("198.18.0.1", "tcp", 21, "")); close(fed) }()
	select {
	case <-fed:
	case <-time.After(5 * time.Second):
		t.Fatal("a block hangs on the FIFO at HISTORY_FILE")
	}
	if !log.Has(hist + " is not a regular file") {
		t.Errorf("the FIFO was not reported: %q", log.Lines())
	}
	if b, err := os.ReadFile(r.b.cfg.BlockedFile + ".tcp"); err != nil || !strings.Contains(string(b), "198.18.0.1") {
		t.Errorf("blocked file: %q %v", b, err)
	}
}

// A blocked file another user planted is not restored as root's blocks.
func TestRecordForeignOwnerRefused(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give a file to another user")
	}
	log := &logtest.Book{}
	dir := t.TempDir()
	base := filepath.Join(dir, "portsentry.blocked")
	line := "1795613385 - 11/24/2026 14:29:45 Host: 198.18.0.7/198.18.0.7 Port: 21 TCP Blocked\n"
	if err := os.WriteFile(base+".tcp", []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(base+".tcp", 65534, 65534); err != nil {
		t.Fatal(err)
	}
	r := newRig(t, func(c *Config) { c.BlockedFile, c.Log = base, log })
	if len(*r.c) != 0 {
		t.Errorf("restored another user's blocks: %q", *r.c)
	}
	if !log.Has("owned by uid 65534") {
		t.Errorf("not reported: %q", log.Lines())
	}
}

func decision(kind, target, mode string, port int) string {
	return strings.Replace(block(target, mode, port, ""), `"block"`, `"`+kind+`"`, 1)
}

// restart gives a new Blocker on r's files, as ps-block started again, with
// the kernel set emptied (a reboot); the hosts.deny fake is kept.
func (r *rig) restart(mod func(*Config)) *rig {
	c := &calls{}
	r2 := &rig{c: c, out: &bytes.Buffer{}, now: r.now, dir: r.dir}
	cfg := r.b.cfg
	cfg.NFT = &fakeNFT{c: c, set: map[netip.Addr]time.Time{}}
	if hd, ok := cfg.HostsDeny.(*fakeHD); ok {
		cfg.HostsDeny = &fakeHD{c: c, hosts: hd.hosts}
	}
	cfg.Runner = fakeRunner{c, &sync.Mutex{}}
	cfg.Now = func() time.Time { return r2.now }
	cfg.Out = transport.NewWriter(r2.out)
	if mod != nil {
		mod(&cfg)
	}
	r2.b = New(cfg)
	r2.b.Restore()
	return r2
}

// A run decision (BLOCK_x=2) runs KILL_RUN_CMD once per host and mode: not
// again for a repeated line, nor after a restart when ps-judge, which
// forgot the host, decides again. A command that failed is not remembered,
// so the next decision tries again.
func TestRunOnce(t *testing.T) {
	r := newRig(t, nil)
	run := decision("run", "198.18.0.1", "udp", 53)
	r.feed(run, run)
	r.feed(run)
	if want := []string{"exec runcmd 198.18.0.1 53 udp"}; !slices.Equal(*r.c, want) {
		t.Fatalf("calls %q, want %q", *r.c, want)
	}
	got := r.results(t)
	already := 0
	for _, g := range got {
		if strings.HasPrefix(g, "run true 198.18.0.1 udp: KILL_RUN_CMD already ran") {
			already++
		}
	}
	if len(got) != 3 || already != 2 {
		t.Errorf("results %q, want one run and two saying it already ran", got)
	}
	r2 := r.restart(nil)
	if len(*r2.c) != 0 {
		t.Errorf("restore acted on a run record: %q", *r2.c)
	}
	r2.feed(run, decision("run", "198.18.0.1", "sudp", 53))
	if want := []string{"exec runcmd 198.18.0.1 53 sudp"}; !slices.Equal(*r2.c, want) {
		t.Errorf("after a restart, calls %q, want %q", *r2.c, want)
	}
	hist, _ := os.ReadFile(r.b.cfg.HistoryFile)
	if n := strings.Count(string(hist), "Host: 198.18.0.1/198.18.0.1 Port: 53 UDP Blocked\n"); n != 2 {
		t.Errorf("history has %d lines for the two runs:\n%s", n, hist)
	}

	// With no KILL_RUN_CMD, the decision is still recorded, as 1.2 did.
	none := newRig(t, func(c *Config) { c.RunCmd = nil })
	none.feed(run)
	if h, _ := os.ReadFile(none.b.cfg.HistoryFile); !strings.Contains(string(h), "Port: 53 UDP Blocked") {
		t.Errorf("a run with no KILL_RUN_CMD was not recorded: %q", h)
	}

	failing := newRig(t, func(c *Config) {
		c.RunCmd, _ = command.Parse("KILL_RUN_CMD", "fail $TARGET$")
	})
	failing.feed(run)
	failing.feed(run)
	if len(*failing.c) != 2 {
		t.Errorf("a failed KILL_RUN_CMD was remembered: %q", *failing.c)
	}
}

// With BLOCK_x=0 (Debian's shipped setting) an alert changes nothing on
// the system but is written to BLOCKED_FILE and HISTORY_FILE as 1.2 did,
// once per host and mode; restored, it is still nothing to re-apply. A 1.2
// blocked file without records of its own is read by BLOCK_TCP/BLOCK_UDP.
func TestAlertRecorded(t *testing.T) {
	r := newRig(t, nil)
	alert := decision("alert", "198.18.0.1", "tcp", 23)
	r.feed(alert)
	r.feed(alert)
	if len(*r.c) != 0 {
		t.Errorf("an alert acted: %q", *r.c)
	}
	blocked, _ := os.ReadFile(r.b.cfg.BlockedFile + ".tcp")
	hist, _ := os.ReadFile(r.b.cfg.HistoryFile)
	const line = "Host: 198.18.0.1/198.18.0.1 Port: 23 TCP Blocked\n"
	if strings.Count(string(blocked), line) != 1 || strings.Count(string(hist), line) != 1 {
		t.Errorf("blocked file %q, history %q: want the line once each", blocked, hist)
	}
	r2 := r.restart(nil)
	r2.feed(alert)
	if len(*r2.c) != 0 {
		t.Errorf("a restored alert acted: %q", *r2.c)
	}
	if hist, _ := os.ReadFile(r.b.cfg.HistoryFile); strings.Count(string(hist), line) != 1 {
		t.Errorf("history after a restart: %q", hist)
	}

	// 1.2's own file, no .until beside it.
	dir := t.TempDir()
	base := filepath.Join(dir, "portsentry.blocked")
	if err := os.WriteFile(base+".tcp", []byte("1795613385 - 11/24/2026 14:29:45 Host: 198.18.0.7/198.18.0.7 Port: 21 TCP Blocked\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r3 := newRig(t, func(c *Config) {
		c.BlockedFile = base
		c.KindOf = func(event.Mode) event.Kind { return event.KindAlert }
	})
	if len(*r3.c) != 0 {
		t.Errorf("a 1.2 file written with BLOCK_TCP=0 was restored as blocks: %q", *r3.c)
	}
}

// With the real hosts.deny action: a host an administrator banned for good
// is said to be so when ps-block would add it, and the ban stays when
// ps-block's block ends.
func TestHostsDenyAdminLineKept(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "hosts.deny")
	if err := os.WriteFile(p, []byte("ALL: 203.0.113.50\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tm, err := hostsdeny.NewTemplate("ALL: $TARGET$")
	if err != nil {
		t.Fatal(err)
	}
	r := newRig(t, func(c *Config) {
		c.HostsDeny = hostsdeny.New(p, filepath.Join(dir, "portsentry.blocked"+hostsdeny.RecordSuffix), tm)
		c.BlockedFile = filepath.Join(dir, "portsentry.blocked")
	})
	r.feed(block("203.0.113.50", "tcp", 21, ""), block("198.18.0.1", "tcp", 21, ""))
	got := strings.Join(r.results(t), "\n")
	if !strings.Contains(got, "hosts.deny true 203.0.113.50 tcp: already in "+p+", a line ps-block did not add") {
		t.Errorf("results:\n%s", got)
	}
	unblock := func(a string) string {
		return `{"v":1,"kind":"unblock","time":"2026-11-24T14:00:00Z","target":"` + a + `","mode":"tcp"}`
	}
	r.feed(unblock("203.0.113.50"), unblock("198.18.0.1"))
	got = strings.Join(r.results(t), "\n")
	if !strings.Contains(got, "hosts.deny true 203.0.113.50 tcp: lifted (unblocked on request): the line in "+p+" is not ps-block's, left in place") {
		t.Errorf("results:\n%s", got)
	}
	if b, _ := os.ReadFile(p); string(b) != "ALL: 203.0.113.50\n" {
		t.Errorf("hosts.deny after the lifts: %q", b)
	}
}

// BLOCK_MAX bounds the records in force: a new block past it lifts the
// oldest, and a restart with a smaller bound lifts the oldest at start.
func TestBlockMax(t *testing.T) {
	log := &logtest.Book{}
	r := newRig(t, func(c *Config) { c.BlockMax, c.Log = 3, log })
	for i := 1; i <= 5; i++ {
		r.feed(block(fmt.Sprintf("198.18.0.%d", i), "tcp", 21, ""))
		r.now = r.now.Add(time.Second)
	}
	if n := len(r.b.state); n != 3 {
		t.Errorf("%d records in force, want 3", n)
	}
	for _, a := range []string{"198.18.0.1", "198.18.0.2"} {
		if !slices.Contains(*r.c, "nft del "+a) || !slices.Contains(*r.c, "hosts.deny del "+a) {
			t.Errorf("%s, the oldest, was not lifted: %q", a, *r.c)
		}
	}
	if res := strings.Join(r.results(t), "\n"); !strings.Contains(res, "nft true 198.18.0.1 tcp: lifted (BLOCK_MAX reached") {
		t.Log(res)
		t.Error("no result says why 198.18.0.1 was lifted")
	}
	if !log.Has("BLOCK_MAX (3) reached") {
		t.Errorf("not logged: %q", log.Lines())
	}
	blocked, _ := os.ReadFile(r.b.cfg.BlockedFile + ".tcp")
	if strings.Contains(string(blocked), "198.18.0.1/") || strings.Count(string(blocked), "\n") != 3 {
		t.Errorf("blocked file:\n%s", blocked)
	}

	r2 := r.restart(func(c *Config) { c.BlockMax = 2 })
	if n := len(r2.b.state); n != 2 || !r2.b.has(key{netip.MustParseAddr("198.18.0.5"), event.ModeTCP}) {
		t.Errorf("after a restart with BLOCK_MAX 2: %d records", n)
	}
	if !slices.Contains(*r2.c, "nft del 198.18.0.3") {
		t.Errorf("the oldest was not lifted at start: %q", *r2.c)
	}
	blocked, _ = os.ReadFile(r.b.cfg.BlockedFile + ".tcp")
	until, _ := os.ReadFile(r.b.cfg.BlockedFile + untilSuffix)
	if strings.Count(string(blocked), "\n") != 2 || strings.Count(string(until), "\n") != 2 {
		t.Errorf("files after the restart:\n%s\n%s", blocked, until)
	}
}

// A large blocked file is not rewritten at every lift: the until file says
// at once that the record ended, so a restart does not restore it, and the
// blocked file is compacted then (or once half its lines are stale).
func TestLiftLargeFileLazily(t *testing.T) {
	r := newRig(t, func(c *Config) { c.NFT, c.HostsDeny, c.Route, c.Unroute = nil, nil, nil, nil })
	var lines []string
	for i := range compactMin + 100 {
		lines = append(lines, block(netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}).String(), "tcp", 21, ""))
	}
	r.feed(lines...)
	gone := netip.AddrFrom4([4]byte{198, 18, 0, 7})
	r.feed(`{"v":1,"kind":"unblock","time":"2026-11-24T14:00:00Z","target":"` + gone.String() + `","mode":"tcp"}`)
	blocked, _ := os.ReadFile(r.b.cfg.BlockedFile + ".tcp")
	if !strings.Contains(string(blocked), "/"+gone.String()+" ") {
		t.Error("the large blocked file was rewritten for one lift")
	}
	r2 := r.restart(nil)
	if r2.b.has(key{gone, event.ModeTCP}) || len(r2.b.state) != compactMin+99 {
		t.Errorf("restored %d records, the lifted one too: %v", len(r2.b.state), r2.b.has(key{gone, event.ModeTCP}))
	}
	blocked, _ = os.ReadFile(r.b.cfg.BlockedFile + ".tcp")
	if strings.Contains(string(blocked), "/"+gone.String()+" ") || strings.Count(string(blocked), "\n") != compactMin+99 {
		t.Error("the blocked file was not compacted at start")
	}
}

// A dry run over files holding more than BLOCK_MAX says what it would lift
// and changes no file.
func TestBlockMaxDryRunWritesNothing(t *testing.T) {
	r := newRig(t, nil)
	for i := 1; i <= 4; i++ {
		r.feed(block(fmt.Sprintf("198.18.0.%d", i), "tcp", 21, ""))
		r.now = r.now.Add(time.Second)
	}
	before, _ := os.ReadFile(r.b.cfg.BlockedFile + ".tcp")
	beforeEnds, _ := os.ReadFile(r.b.cfg.BlockedFile + untilSuffix)
	r2 := r.restart(func(c *Config) { c.BlockMax, c.DryRun = 2, true })
	if res := strings.Join(r2.results(t), "\n"); !strings.Contains(res, "would") {
		t.Errorf("results:\n%s", res)
	}
	after, _ := os.ReadFile(r.b.cfg.BlockedFile + ".tcp")
	afterEnds, _ := os.ReadFile(r.b.cfg.BlockedFile + untilSuffix)
	if !bytes.Equal(before, after) || !bytes.Equal(beforeEnds, afterEnds) {
		t.Errorf("a dry run changed the files:\n%s\n%s", after, afterEnds)
	}
	if len(*r2.c) != 0 {
		t.Errorf("a dry run acted: %q", *r2.c)
	}
}

// Blocks lifted before their end (BLOCK_MAX, unblock) leave no lasting
// items in the heap of ends: a long churn under BLOCK_MAX keeps it near
// the records in force.
func TestHeapsStayBounded(t *testing.T) {
	r := newRig(t, func(c *Config) {
		c.BlockMax = 100
		c.NFT, c.HostsDeny, c.Route, c.Unroute, c.RunCmd = nil, nil, nil, nil, nil
	})
	r.b.cfg.RunCmd, _ = command.Parse("KILL_RUN_CMD", "true $TARGET$")
	for i := range 5000 {
		r.feed(block(netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}).String(), "tcp", 21, "2026-11-25T14:00:00Z"))
		r.now = r.now.Add(time.Second)
	}
	if n := len(r.b.state); n != 100 {
		t.Errorf("%d records in force, want 100", n)
	}
	if l, a := len(r.b.lifts), len(r.b.ages); l > 2*100+1024 || a > 2*100+1024 {
		t.Errorf("heaps of %d ends and %d ages for 100 records", l, a)
	}
}

// A block lifted on request and decided again (ps-judge forgot the host)
// is in force after a restart: the until file's "lifted" line is followed
// by the new block's, and the later line counts.
func TestRestoreBlockedAgainAfterUnblock(t *testing.T) {
	r := newRig(t, nil)
	r.feed(block("198.18.0.1", "tcp", 21, ""), block("198.18.0.2", "tcp", 22, ""))
	r.feed(`{"v":1,"kind":"unblock","time":"2026-11-24T14:00:00Z","target":"198.18.0.1","mode":"tcp"}`)
	r.feed(block("198.18.0.1", "tcp", 23, ""))
	r.results(t)
	r2 := r.restart(nil)
	var got []string
	for _, rec := range r2.b.Records() {
		got = append(got, fmt.Sprintf("%s %s %d", rec.Addr, rec.Mode, rec.Port))
	}
	want := []string{"198.18.0.1 tcp 23", "198.18.0.2 tcp 22"}
	if !slices.Equal(got, want) {
		t.Errorf("records after the restart: %q, want %q", got, want)
	}
}

// TestRecordHitsHost: a decision's hits and fleet host are kept in the
// until file and read back by each start (the first restart reads the
// appended line, the second the file the first rewrote); a decision with
// no host keeps none.
func TestRecordHitsHost(t *testing.T) {
	r := newRig(t, nil)
	r.feed(`{"v":1,"kind":"block","time":"2026-11-24T14:00:00Z","target":"198.18.0.1","mode":"atcp","proto":"tcp","port":21,"scan":"syn","hits":7,"host":"fw-1"}`,
		block("198.18.0.2", "tcp", 22, ""))
	r.results(t)
	for i, rr := range []*rig{r, r.restart(nil), r.restart(nil).restart(nil)} {
		var got []string
		for _, rec := range rr.b.Records() {
			got = append(got, fmt.Sprintf("%s %d %q", rec.Addr, rec.Hits, rec.Host))
		}
		want := []string{`198.18.0.1 7 "fw-1"`, `198.18.0.2 1 ""`}
		if !slices.Equal(got, want) {
			t.Errorf("start %d: records %q, want %q", i, got, want)
		}
	}
}

// TestParseEndHitsHost: until lines with and without hits and host.
func TestParseEndHitsHost(t *testing.T) {
	for _, tc := range []struct {
		in, want string // want: the line printed back; "" an error
	}{
		{"198.18.0.1 atcp never", "198.18.0.1 atcp never"}, // older lines read as before
		{"198.18.0.1 tcp lifted", "198.18.0.1 tcp lifted"},
		{"2001:db8::1 sudp never run", "2001:db8::1 sudp never run"},
		{"198.18.0.1 atcp never hits=3 host=fw-1", "198.18.0.1 atcp never hits=3 host=fw-1"},
		{"198.18.0.1 atcp never host=fw-1 hits=3", "198.18.0.1 atcp never hits=3 host=fw-1"},
		{"198.18.0.1 atcp never alert hits=65535", "198.18.0.1 atcp never alert hits=65535"},
		{"198.18.0.1 atcp 2026-11-25T15:00:00.5+01:00 hits=2", "198.18.0.1 atcp 2026-11-25T14:00:00.5Z hits=2"},
		{"198.18.0.1 atcp never hits=65536", ""},
		{"198.18.0.1 atcp never hits=0", ""},
		{"198.18.0.1 atcp never hits=-1", ""},
		{"198.18.0.1 atcp never host=a/b", ""},
		{"198.18.0.1 atcp never host=", ""},
		{"198.18.0.1 atcp never hits=1 hits=2", ""},
		{"198.18.0.1 atcp never hits=1 run", ""},
		{"198.18.0.1 atcp never port=3", ""},
		{"198.18.0.1 atcp never run hits=1 host=a x", ""},
	} {
		l, err := parseEnd([]byte(tc.in))
		switch {
		case tc.want == "" && err == nil:
			t.Errorf("%q: read as %q, want an error", tc.in, l)
		case tc.want != "" && err != nil:
			t.Errorf("%q: %v", tc.in, err)
		case tc.want != "" && l.String() != tc.want:
			t.Errorf("%q: printed back as %q, want %q", tc.in, l, tc.want)
		}
	}
}

// TestRestoreCompletesHistory: blocks in the blocked file whose history
// lines a stop lost (SIGKILL between the two appends) are written to the
// history at the next start, once: one of the history's last second not
// among its lines, one later; a second start writes nothing more, and an
// emptied (rotated) history is left empty.
func TestRestoreCompletesHistory(t *testing.T) {
	r := newRig(t, nil)
	r.feed(block("198.18.0.1", "tcp", 21, ""), block("198.18.0.2", "tcp", 22, ""))
	r.results(t)
	hist := r.b.cfg.HistoryFile
	lost := []blockfile.Line{
		{Time: r.now.Local(), Addr: netip.MustParseAddr("198.18.0.3"), Port: 23, Proto: "TCP"},
		{Time: r.now.Add(5 * time.Second).Local(), Addr: netip.MustParseAddr("198.18.0.4"), Port: 24, Proto: "TCP"},
	}
	if err := blockfile.Append(r.b.cfg.BlockedFile+".tcp", lost); err != nil {
		t.Fatal(err)
	}
	history := func() []string {
		var out []string
		if err := blockfile.Scan(hist, func(l blockfile.Line) { out = append(out, l.Addr.String()) }, func(int, error) {}); err != nil {
			t.Fatal(err)
		}
		slices.Sort(out)
		return out
	}
	want := []string{"198.18.0.1", "198.18.0.2", "198.18.0.3", "198.18.0.4"}
	r2 := r.restart(nil)
	if got := history(); !slices.Equal(got, want) {
		t.Fatalf("history after the start: %q, want %q", got, want)
	}
	r3 := r2.restart(nil)
	if got := history(); !slices.Equal(got, want) {
		t.Fatalf("history after a second start: %q, want %q", got, want)
	}
	if err := os.Truncate(hist, 0); err != nil {
		t.Fatal(err)
	}
	r3.restart(nil)
	if got := history(); len(got) != 0 {
		t.Fatalf("rotated history written again: %q", got)
	}
}
