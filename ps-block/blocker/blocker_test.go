package blocker

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portsentry/pipeline/ps-block/command"
	"github.com/portsentry/pipeline/ps-block/gate"
	"github.com/portsentry/pipeline/ps-block/nft"
	"github.com/portsentry/pipeline/shared/alert"
	"github.com/portsentry/pipeline/shared/event"
	"github.com/portsentry/pipeline/shared/transport"
)

// calls records what the fakes were asked to do, in order.
type calls []string

func (c *calls) add(format string, args ...any) { *c = append(*c, fmt.Sprintf(format, args...)) }

type fakeNFT struct {
	c    *calls
	set  map[netip.Addr]time.Time
	pend []netip.Addr
}

func (f *fakeNFT) Ensure() error { return nil }
func (f *fakeNFT) Add(p gate.Pass, until time.Time) error {
	if !p.Valid() {
		return gate.ErrNoPass
	}
	a := p.Addr()
	f.pend = append(f.pend, a)
	f.set[a] = until
	return nil
}
func (f *fakeNFT) Flush() error {
	for _, a := range f.pend {
		f.c.add("nft add %s", a)
	}
	f.pend = nil
	return nil
}
func (f *fakeNFT) Delete(a netip.Addr) (bool, error) {
	f.c.add("nft del %s", a)
	_, ok := f.set[a]
	delete(f.set, a)
	return ok, nil
}
func (f *fakeNFT) List() ([]nft.Element, error) {
	var out []nft.Element
	for a := range f.set {
		out = append(out, nft.Element{Addr: a})
	}
	return out, nil
}
func (f *fakeNFT) SetFor(netip.Addr) string { return "portsentry4" }

type fakeHD struct {
	c     *calls
	hosts map[netip.Addr]bool
	pend  []netip.Addr
}

func (f *fakeHD) Load() error                        { return nil }
func (f *fakeHD) Has(a netip.Addr) bool              { return f.hosts[a] }
func (f *fakeHD) Ours(a netip.Addr) bool             { return f.hosts[a] }
func (f *fakeHD) NotOurs(...netip.Addr) []netip.Addr { return nil }
func (f *fakeHD) Path() string                       { return "hosts.deny" }
func (f *fakeHD) Line(p gate.Pass) string            { return "ALL: " + p.Addr().String() }
func (f *fakeHD) Add(p gate.Pass) bool {
	if !p.Valid() {
		return false
	}
	f.pend = append(f.pend, p.Addr())
	return true
}
func (f *fakeHD) Flush() ([]netip.Addr, error) {
	p := f.pend
	f.pend = nil
	for _, a := range p {
		f.c.add("hosts.deny add %s", a)
		f.hosts[a] = true
	}
	return p, nil
}

// Remove records one call for all its addresses: one rewrite of the file.
func (f *fakeHD) Remove(addrs ...netip.Addr) (int, error) {
	names := make([]string, len(addrs))
	for i, a := range addrs {
		names[i] = a.String()
		delete(f.hosts, a)
	}
	f.c.add("hosts.deny del %s", strings.Join(names, " "))
	return len(addrs), nil
}

// fakeRunner records the commands it is given; ps-block runs them in
// parallel, hence the lock.
type fakeRunner struct {
	c  *calls
	mu *sync.Mutex
}

func (f fakeRunner) Run(_ context.Context, argv []string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.c.add("exec %s", strings.Join(argv, " "))
	if argv[0] == "fail" {
		return fmt.Errorf("exit status 1")
	}
	return nil
}

type nopLog struct{}

func (nopLog) Admin(string, ...any)         {}
func (nopLog) Security(string, ...any)      {}
func (nopLog) Attack(string, ...any)        {}
func (nopLog) AttackLimited(string, ...any) {}

type rig struct {
	refuse map[netip.Addr]string // what the guard refuses beside loopback
	b      *Blocker
	c      *calls
	out    *bytes.Buffer
	now    time.Time
	dir    string
}

func mustUndo(t *testing.T, key, s string) *command.Command {
	t.Helper()
	c, err := command.ParseUndo(key, s)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func newRig(t *testing.T, mod func(*Config)) *rig {
	t.Helper()
	r := &rig{refuse: map[netip.Addr]string{}, c: &calls{}, out: &bytes.Buffer{}, now: time.Date(2026, 11, 24, 14, 0, 0, 0, time.UTC), dir: t.TempDir()}
	mustCmd := func(key, s string) *command.Command {
		c, err := command.Parse(key, s)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	cfg := Config{
		NFT:         &fakeNFT{c: r.c, set: map[netip.Addr]time.Time{}},
		HostsDeny:   &fakeHD{c: r.c, hosts: map[netip.Addr]bool{}},
		Route:       mustCmd("KILL_ROUTE", "route $TARGET$"),
		Unroute:     mustUndo(t, "KILL_UNROUTE", "unroute $TARGET$"),
		RunCmd:      mustCmd("KILL_RUN_CMD", "runcmd $TARGET$ $PORT$ $MODE$"),
		Runner:      fakeRunner{r.c, &sync.Mutex{}},
		BlockedFile: filepath.Join(r.dir, "portsentry.blocked"),
		HistoryFile: filepath.Join(r.dir, "portsentry.history"),
		Now:         func() time.Time { return r.now },
		Gate: gate.New(func(a netip.Addr) string {
			if a.IsLoopback() {
				return "a loopback address"
			}
			return r.refuse[a]
		}),
		Log: nopLog{},
		Out: transport.NewWriter(r.out),
	}
	if mod != nil {
		mod(&cfg)
	}
	r.b = New(cfg)
	r.b.Restore()
	return r
}

// feed gives the blocker lines as one burst of input, then a pause.
func (r *rig) feed(lines ...string) {
	for i, l := range lines {
		r.b.Line("test", i+1, []byte(l), nil)
	}
	r.b.Idle()
}

// results returns "action ok target mode: detail" for each result line and
// empties the output.
func (r *rig) results(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(r.out.String()), "\n") {
		if l == "" {
			continue
		}
		// encoding/json, not event.Decode: a result for an unreadable line
		// may have no mode.
		var ev struct {
			Action, Target, Mode, Detail string
			OK                           bool
		}
		if err := json.Unmarshal([]byte(l), &ev); err != nil {
			t.Fatalf("bad result line %q: %v", l, err)
		}
		out = append(out, fmt.Sprintf("%s %v %s %s: %s", ev.Action, ev.OK, ev.Target, ev.Mode, ev.Detail))
	}
	r.out.Reset()
	return out
}

func block(target, mode string, port int, until string) string {
	proto := "tcp"
	if strings.HasSuffix(mode, "udp") {
		proto = "udp"
	}
	u := ""
	if until != "" {
		u = `,"until":"` + until + `"`
	}
	return fmt.Sprintf(`{"v":1,"kind":"block","time":"2026-11-24T14:00:00Z","target":%q,"mode":%q,"proto":%q,"port":%d,"hits":1%s}`, target, mode, proto, port, u)
}

func TestOrder(t *testing.T) {
	tests := []struct {
		first bool
		want  []string
	}{
		{false, []string{"nft add 198.18.0.1", "hosts.deny add 198.18.0.1", "exec route 198.18.0.1", "exec runcmd 198.18.0.1 21 atcp"}},
		{true, []string{"exec runcmd 198.18.0.1 21 atcp", "nft add 198.18.0.1", "hosts.deny add 198.18.0.1", "exec route 198.18.0.1"}},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprint("first=", tc.first), func(t *testing.T) {
			r := newRig(t, func(c *Config) { c.RunCmdFirst = tc.first })
			r.feed(block("198.18.0.1", "atcp", 21, ""))
			if !slices.Equal(*r.c, tc.want) {
				t.Errorf("calls %q, want %q", *r.c, tc.want)
			}
			if n := len(r.results(t)); n != 4 {
				t.Errorf("%d result lines, want 4", n)
			}
		})
	}
}

func TestDecisions(t *testing.T) {
	tests := []struct {
		name  string
		lines []string
		want  []string // result lines, "action ok target mode" prefixes
		calls int
	}{
		{"repeat in one batch", []string{block("198.18.0.1", "tcp", 21, ""), block("198.18.0.1", "tcp", 22, "")},
			[]string{"nft true 198.18.0.1 tcp", "hosts.deny true", "route true", "run true", "block true 198.18.0.1 tcp: already blocked"}, 4},
		{"loopback refused", []string{block("127.0.0.1", "tcp", 21, "")}, []string{"block false 127.0.0.1 tcp: refused: 127.0.0.1 is a loopback address"}, 0},
		{"ended before it came", []string{block("198.18.0.1", "tcp", 21, "2026-11-24T13:00:00Z")}, []string{"block false 198.18.0.1 tcp: refused: the block ended"}, 0},
		{"shell metacharacters", []string{strings.Replace(block("198.18.0.1", "tcp", 21, ""), "198.18.0.1", "198.18.0.1;reboot", 1)}, []string{"input false  : test line 1: "}, 0},
		{"newline in target", []string{strings.Replace(block("198.18.0.1", "tcp", 21, ""), "198.18.0.1", `198.18.0.1\nALL: ALL`, 1)}, []string{"input false  : test line 1: "}, 0},
		{"not json", []string{"ALL: ALL"}, []string{"input false  : test line 1: "}, 0},
		{"hit is not a decision", []string{`{"v":1,"kind":"hit","time":"2026-11-24T14:00:00Z","sensor":"ps-sniff","mode":"atcp","proto":"tcp","src":"198.18.0.1","sport":1,"dst":"198.18.0.2","dport":21,"scan":"syn"}`}, []string{"input false 198.18.0.1 atcp"}, 0},
		{"alert only logs", []string{strings.Replace(block("198.18.0.1", "tcp", 21, ""), `"block"`, `"alert"`, 1)}, nil, 0},
		{"run runs KILL_RUN_CMD alone", []string{strings.Replace(block("198.18.0.1", "udp", 53, ""), `"block"`, `"run"`, 1)}, []string{"run true 198.18.0.1 udp: ran KILL_RUN_CMD"}, 1},
		{"unblock unknown", []string{`{"v":1,"kind":"unblock","time":"2026-11-24T14:00:00Z","target":"198.18.0.1","mode":"tcp"}`}, []string{"block false 198.18.0.1 tcp"}, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, nil)
			r.feed(tc.lines...)
			got := r.results(t)
			if len(got) != len(tc.want) {
				t.Fatalf("results %q, want %d like %q", got, len(tc.want), tc.want)
			}
			for i := range got {
				if !strings.HasPrefix(got[i], tc.want[i]) {
					t.Errorf("result %d: %q, want prefix %q", i, got[i], tc.want[i])
				}
			}
			if len(*r.c) != tc.calls {
				t.Errorf("calls %q, want %d", *r.c, tc.calls)
			}
		})
	}
}

func TestRateLimit(t *testing.T) {
	r := newRig(t, func(c *Config) { c.Rate, c.Burst = 1, 3; c.Route, c.RunCmd, c.HostsDeny = nil, nil, nil })
	var lines []string
	for i := range 10 {
		lines = append(lines, block(fmt.Sprintf("198.18.0.%d", i+1), "tcp", 21, ""))
	}
	r.feed(lines...)
	got := r.results(t)
	held := 0
	for _, l := range got {
		if strings.Contains(l, "rate limit") {
			held++
		}
	}
	if h, d := r.b.TakeHeld(); held != 7 || len(*r.c) != 3 || h != 7 || d != 0 {
		t.Errorf("held %d (%d, %d dropped), calls %d: %q", held, h, d, len(*r.c), got)
	}
	// What waited is carried out as tokens come back, not lost.
	r.now = r.now.Add(2 * time.Second)
	r.b.LiftDue()
	if len(*r.c) != 5 {
		t.Errorf("after 2 s at 1 a second: %d blocks, want 5: %q", len(*r.c), *r.c)
	}
}

// TestRateLimitPrefersEvidence: under a flood of one-probe decisions, a host
// reported again with more ports goes first once a token is free.
func TestRateLimitPrefersEvidence(t *testing.T) {
	r := newRig(t, func(c *Config) { c.Rate, c.Burst = 1, 1; c.Route, c.RunCmd, c.HostsDeny = nil, nil, nil })
	var lines []string
	for i := range 3 * waitingPerClass { // more than a class keeps: the oldest are dropped
		lines = append(lines, block(fmt.Sprintf("198.18.%d.%d", i/250, i%250+1), "atcp", 21, ""))
	}
	scanner := strings.Replace(block("198.19.0.9", "atcp", 80, ""), `"hits":1`, `"hits":8`, 1)
	lines = append(lines, scanner)
	r.feed(lines...)
	r.results(t)
	if _, d := r.b.TakeHeld(); d != 3*waitingPerClass-1-waitingPerClass {
		t.Errorf("dropped %d", d)
	}
	*r.c = nil
	r.now = r.now.Add(time.Second)
	r.b.LiftDue()
	if len(*r.c) != 1 || (*r.c)[0] != "nft add 198.19.0.9" {
		t.Fatalf("first block after the flood: %q, want the scanner", *r.c)
	}
}

func TestLifts(t *testing.T) {
	r := newRig(t, nil)
	r.feed(
		block("198.18.0.1", "tcp", 21, "2026-11-24T14:10:00Z"),
		block("198.18.0.1", "atcp", 21, "2026-11-24T14:20:00Z"), // the same host in a second mode
		block("198.18.0.2", "udp", 53, ""),
	)
	r.results(t)
	*r.c = nil
	r.now = r.now.Add(11 * time.Minute)
	r.b.LiftDue()
	if got := r.results(t); len(got) != 1 || !strings.Contains(got[0], "still blocked in another mode") {
		t.Errorf("first lift: %q", got)
	}
	if len(*r.c) != 0 {
		t.Errorf("host-wide actions undone while another mode blocks: %q", *r.c)
	}
	r.now = r.now.Add(10 * time.Minute)
	r.b.LiftDue()
	want := []string{"hosts.deny del 198.18.0.1", "exec unroute 198.18.0.1", "nft del 198.18.0.1"}
	if !slices.Equal(*r.c, want) {
		t.Errorf("calls %q, want %q", *r.c, want)
	}
	if got := r.results(t); len(got) != 3 {
		t.Errorf("results %q", got)
	}
	*r.c = nil
	r.feed(`{"v":1,"kind":"unblock","time":"2026-11-24T14:00:00Z","target":"198.18.0.2","mode":"udp"}`)
	if len(*r.c) != 3 {
		t.Errorf("unblock calls %q", *r.c)
	}
	b, _ := os.ReadFile(filepath.Join(r.dir, "portsentry.blocked.udp"))
	if len(b) != 0 {
		t.Errorf("blocked file keeps a lifted host: %q", b)
	}
	if h, _ := os.ReadFile(filepath.Join(r.dir, "portsentry.history")); bytes.Count(h, []byte("\n")) != 3 {
		t.Errorf("history: %q", h)
	}
}

// A second ps-block on the same files knows the blocks of the first: it
// does not repeat them, lifts what ended meanwhile, and keeps the rest.
func TestRestart(t *testing.T) {
	r := newRig(t, nil)
	r.feed(block("198.18.0.1", "tcp", 21, "2026-11-24T14:10:00Z"), block("198.18.0.2", "tcp", 21, ""), block("2001:db8::3", "sudp", 53, "2026-11-24T18:00:00Z"))
	r.results(t)
	old := r.b.cfg
	c := &calls{}
	r2 := &rig{c: c, out: &bytes.Buffer{}, now: r.now.Add(time.Hour), dir: r.dir}
	cfg := old
	cfg.NFT = &fakeNFT{c: c, set: map[netip.Addr]time.Time{}} // a reboot emptied the kernel set
	cfg.HostsDeny = &fakeHD{c: c, hosts: old.HostsDeny.(*fakeHD).hosts}
	cfg.Runner = fakeRunner{c, &sync.Mutex{}}
	cfg.Now = func() time.Time { return r2.now }
	cfg.Out = transport.NewWriter(r2.out)
	r2.b = New(cfg)
	r2.b.Restore()
	want := []string{"nft add 198.18.0.2", "nft add 2001:db8::3", "hosts.deny del 198.18.0.1", "exec unroute 198.18.0.1", "nft del 198.18.0.1"}
	slices.Sort(want)
	got := slices.Clone(*c)
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("restore calls %q, want %q", got, want)
	}
	*c = nil
	r2.feed(block("198.18.0.2", "tcp", 22, ""), block("2001:db8::3", "sudp", 53, ""))
	if len(*c) != 0 {
		t.Errorf("repeated a restored block: %q", *c)
	}
	r2.now = r2.now.Add(4 * time.Hour)
	r2.b.LiftDue()
	if !slices.Contains(*c, "nft del 2001:db8::3") {
		t.Errorf("restored block with an end was not lifted: %q", *c)
	}
}

func TestDryRun(t *testing.T) {
	r := newRig(t, func(c *Config) { c.DryRun = true })
	r.feed(block("198.18.0.1", "tcp", 21, ""))
	if len(*r.c) != 0 {
		t.Errorf("dry run changed something: %q", *r.c)
	}
	got := r.results(t)
	if len(got) != 4 {
		t.Fatalf("results %q", got)
	}
	for _, l := range got {
		if !strings.Contains(l, "dry run: would") {
			t.Errorf("result %q", l)
		}
	}
	if _, err := os.Stat(filepath.Join(r.dir, "portsentry.history")); err == nil {
		t.Error("dry run wrote the history file")
	}
}

func TestFailuresGoOn(t *testing.T) {
	r := newRig(t, func(c *Config) {
		c.Route, _ = command.Parse("KILL_ROUTE", "fail $TARGET$")
	})
	r.feed(block("198.18.0.1", "tcp", 21, ""), block("198.18.0.2", "tcp", 21, ""))
	got := r.results(t)
	fails := 0
	for _, l := range got {
		if strings.HasPrefix(l, "route false") {
			fails++
		}
	}
	if fails != 2 || len(got) != 8 {
		t.Errorf("results %q", got)
	}
}

// TestWaitingSettled: an administrator's unblock cancels a block still
// waiting for the rate limit, and Abandon gives every other waiting one a
// result; none is carried out later.
func TestWaitingSettled(t *testing.T) {
	r := newRig(t, func(c *Config) { c.Rate, c.Burst = 1, 1; c.Route, c.RunCmd, c.HostsDeny = nil, nil, nil })
	r.feed(block("198.18.0.1", "atcp", 21, ""), block("198.18.0.2", "atcp", 21, ""), block("198.18.0.3", "atcp", 21, ""))
	r.results(t)
	if n := r.b.Waiting(); n != 2 {
		t.Fatalf("%d waiting, want 2", n)
	}
	r.feed(`{"v":1,"kind":"unblock","time":"2026-11-24T14:00:00Z","target":"198.18.0.2","mode":"atcp"}`)
	if got := r.results(t); len(got) != 1 || !strings.HasPrefix(got[0], "block true 198.18.0.2 atcp: unblocked on request: 1 decision(s) waiting") {
		t.Fatalf("unblock of a waiting block: %q", got)
	}
	if n := r.b.Abandon("stopping"); n != 1 {
		t.Fatalf("Abandon settled %d, want 1", n)
	}
	if got := r.results(t); len(got) != 1 || got[0] != "block false 198.18.0.3 atcp: not carried out: stopping" {
		t.Fatalf("abandoned: %q", got)
	}
	*r.c = nil
	r.now = r.now.Add(10 * time.Second)
	r.b.LiftDue()
	if len(*r.c) != 0 || r.b.Waiting() != 0 {
		t.Fatalf("carried out after being settled: %q", *r.c)
	}
}

// TestWaitingRemoveKeepsOrder: removing from the middle of a class keeps
// the others in their order.
func TestWaitingRemoveKeepsOrder(t *testing.T) {
	var w waiting
	for i := range waitingPerClass + 3 { // wraps the ring
		w.push(&pending{k: key{netip.AddrFrom4([4]byte{198, 18, byte(i / 250), byte(i % 250)}), event.ModeATCP}})
	}
	gone := w.remove(func(p *pending) bool { return p.k.addr.As4()[3]%2 == 0 })
	var got []string
	for p := w.peek(); p != nil; p = w.peek() {
		got = append(got, p.k.addr.String())
		w.pop()
	}
	if len(got)+len(gone) != waitingPerClass || w.n != 0 {
		t.Fatalf("%d kept + %d removed, want %d in all", len(got), len(gone), waitingPerClass)
	}
	if got[0] != "198.18.0.4" || got[1] != "198.18.0.6" || got[len(got)-1] != "198.18.2.14" {
		t.Fatalf("order after remove: %v ... %v", got[:3], got[len(got)-3:])
	}
}

// TestLiftsTogether: blocks that end at one moment are lifted with one
// rewrite of hosts.deny and of BLOCKED_FILE, not one per host.
func TestLiftsTogether(t *testing.T) {
	r := newRig(t, func(c *Config) { c.Route, c.Unroute, c.RunCmd = nil, nil, nil })
	var lines []string
	for i := range 5 {
		lines = append(lines, block(fmt.Sprintf("198.18.0.%d", i+1), "atcp", 21, "2026-11-24T14:10:00Z"))
	}
	r.feed(lines...)
	r.results(t)
	*r.c = nil
	r.now = r.now.Add(11 * time.Minute)
	r.b.LiftDue()
	var hd []string
	for _, c := range *r.c {
		if strings.HasPrefix(c, "hosts.deny") {
			hd = append(hd, c)
		}
	}
	if want := []string{"hosts.deny del 198.18.0.1 198.18.0.2 198.18.0.3 198.18.0.4 198.18.0.5"}; !slices.Equal(hd, want) {
		t.Errorf("hosts.deny calls %q, want %q", hd, want)
	}
	if got := r.results(t); len(got) != 10 { // hosts.deny and nft for each
		t.Errorf("%d results, want 10: %q", len(got), got)
	}
	if b, _ := os.ReadFile(filepath.Join(r.dir, "portsentry.blocked.atcp")); len(b) != 0 {
		t.Errorf("blocked file keeps lifted hosts: %q", b)
	}
}

// barrierRunner's commands each wait until n of them have started: run one
// after another, the first would wait in vain and fail.
type barrierRunner struct {
	n       int
	mu      sync.Mutex
	started int
	all     chan struct{}
}

func (f *barrierRunner) Run(context.Context, []string) error {
	f.mu.Lock()
	if f.started++; f.started == f.n {
		close(f.all)
	}
	f.mu.Unlock()
	select {
	case <-f.all:
		return nil
	case <-time.After(5 * time.Second):
		return fmt.Errorf("ran alone: the other commands did not start")
	}
}

// TestCommandsInParallel: the commands of one batch run side by side, so a
// command that hangs holds up one slot, not every decision behind it; the
// results still come in the decisions' order.
func TestCommandsInParallel(t *testing.T) {
	const n = 4
	run := &barrierRunner{n: n, all: make(chan struct{})}
	r := newRig(t, func(c *Config) { c.NFT, c.HostsDeny, c.Route, c.Runner = nil, nil, nil, run })
	var lines, want []string
	for i := range n {
		a := fmt.Sprintf("198.18.0.%d", i+1)
		lines = append(lines, block(a, "atcp", 21, ""))
		want = append(want, "run true "+a+" atcp")
	}
	r.feed(lines...)
	got := r.results(t)
	if len(got) != n {
		t.Fatalf("results %q", got)
	}
	for i := range got {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("result %d: %q, want %q...", i, got[i], want[i])
		}
	}
}

// countWrites counts the writes of a log.
type countWrites struct {
	n     int
	lines int
}

func (w *countWrites) Write(p []byte) (int, error) {
	w.n++
	w.lines += bytes.Count(p, []byte("\n"))
	return len(p), nil
}

// TestBatchLogsOnce: the log lines of a batch (one per block and action)
// reach stderr with one write, not one each.
func TestBatchLogsOnce(t *testing.T) {
	for _, n := range []int{1, 50} {
		t.Run(fmt.Sprint(n, " blocks"), func(t *testing.T) {
			w := &countWrites{}
			r := newRig(t, func(c *Config) { c.Log = alert.NewWriter("ps-block", w) })
			*w = countWrites{} // what the start logged
			var lines []string
			for i := range n {
				lines = append(lines, block(fmt.Sprintf("198.18.1.%d", i+1), "atcp", 21, ""))
			}
			r.feed(lines...)
			if w.lines < 3*n || w.n != 1 {
				t.Errorf("%d log line(s) in %d write(s), want at least %d in one", w.lines, w.n, 3*n)
			}
		})
	}
}

// TestEventAsLine: a line its reader decoded (Event, FromFleet's Event)
// has the results of the same line read by the blocker (Line).
func TestEventAsLine(t *testing.T) {
	lines := []string{
		block("198.18.2.1", "atcp", 21, ""),
		block("198.18.2.1", "atcp", 21, ""), // already blocked
		block("127.0.0.1", "atcp", 21, ""),  // refused by the gate
		`{"v":1,"kind":"alert","time":"2026-11-24T14:00:00Z","target":"198.18.2.2","mode":"stcp","proto":"tcp","port":22,"hits":1}`,
		`{"v":1,"kind":"hit","time":"2026-11-24T14:00:00Z","sensor":"ps-sniff","mode":"atcp","proto":"tcp","src":"198.18.2.3","sport":1,"dst":"198.18.0.1","dport":23,"scan":"syn"}`,
		`{"v":1,"kind":"unblock","time":"2026-11-24T14:00:01Z","target":"198.18.2.1","mode":"atcp"}`,
	}
	type handler interface {
		Line(origin string, n int, data []byte, err error)
		Event(origin string, n int, ev *event.Event)
	}
	for _, fleet := range []bool{false, true} {
		t.Run(fmt.Sprint("fleet=", fleet), func(t *testing.T) {
			var got [2][]string
			for i, decoded := range []bool{false, true} {
				r := newRig(t, nil)
				var h handler = r.b
				if fleet {
					h = r.b.FromFleet().(handler)
				}
				for n, l := range lines {
					ev, err := event.Decode([]byte(l))
					if err != nil {
						t.Fatalf("line %d: %v", n+1, err)
					}
					if decoded {
						h.Event("test", n+1, &ev)
					} else {
						h.Line("test", n+1, []byte(l), nil)
					}
				}
				r.b.Idle()
				got[i] = r.results(t)
			}
			if len(got[0]) < len(lines) || !slices.Equal(got[0], got[1]) {
				t.Errorf("results of lines:\n%s\nof decoded lines:\n%s", strings.Join(got[0], "\n"), strings.Join(got[1], "\n"))
			}
		})
	}
}
