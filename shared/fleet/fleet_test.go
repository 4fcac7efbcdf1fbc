package fleet

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/portsentry/pipeline/shared/config"
	"github.com/portsentry/pipeline/shared/event"
	"github.com/portsentry/pipeline/shared/fleet/natstest"
)

// runServer starts an embedded JetStream server on port (-1: any), keeping
// its store in dir, and stops it at the end of the test.
func runServer(t *testing.T, dir string, port int) *server.Server {
	return natstest.Run(t, dir, port, nil)
}

func dial(t *testing.T, s *server.Server) *nats.Conn {
	t.Helper()
	nc, err := Dial(s.ClientURL(), &config.Fleet{}, t.Name(), t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// recorder is a transport.Handler keeping what it was given.
type recorder struct {
	mu    sync.Mutex
	lines []string
	errs  []string
	idle  int
}

func (r *recorder) Line(origin string, n int, data []byte, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		r.errs = append(r.errs, fmt.Sprintf("%s line %d: %v", origin, n, err))
		return
	}
	r.lines = append(r.lines, string(data))
}

func (r *recorder) Idle() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.idle++
}

func (r *recorder) snapshot() (lines, errs []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.lines...), append([]string(nil), r.errs...)
}

// waitFor polls cond for up to 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

// follow runs Follow as self until the test ends.
func follow(t *testing.T, nc *nats.Conn, self string) *recorder {
	t.Helper()
	r := &recorder{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := Follow(ctx, nc, self, r, t.Logf); err != nil {
			t.Error(err)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return r
}

func decision(kind event.Kind, target string, until time.Time, host string) []byte {
	return event.Encode(&event.Event{Kind: kind, Time: time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC), Target: netip.MustParseAddr(target),
		Mode: event.ModeATCP, Port: 21, Scan: event.ScanSYN, Hits: 1, Until: until, Host: host})
}

func TestDecisionsReachOtherMembersOnce(t *testing.T) {
	s := runServer(t, t.TempDir(), -1)
	a, b := dial(t, s), dial(t, s)
	out, err := NewOutbox(a, "host-a", "ps-block", t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	until := time.Now().Add(time.Hour).UTC()
	got := follow(t, b, "host-b/ps-block")
	mine := follow(t, a, "host-a/ps-block")

	// The same decision twice (as after a lost acknowledgement), a block
	// naming no host, an alert (acts on nothing: stays local), and a run.
	out.Add(decision(event.KindBlock, "198.18.0.1", until, "host-a"))
	out.Add(decision(event.KindBlock, "198.18.0.1", until, "host-a"))
	out.Add(decision(event.KindBlock, "2001:db8::7", time.Time{}, ""))
	out.Add(decision(event.KindAlert, "198.18.0.3", until, "host-a"))
	out.Add(decision(event.KindRun, "198.18.0.4", until, "host-a"))
	waitFor(t, "3 decisions at host-b", func() bool { l, _ := got.snapshot(); return len(l) >= 3 })
	time.Sleep(200 * time.Millisecond) // a fourth would come now
	lines, errs := got.snapshot()
	if len(lines) != 3 || len(errs) != 0 {
		t.Fatalf("host-b got %d lines %q, errors %q; want 3 lines", len(lines), lines, errs)
	}
	for i, want := range []string{`"target":"198.18.0.1"`, `"target":"2001:db8::7"`, `"kind":"run"`} {
		if !strings.Contains(lines[i], want) || !strings.Contains(lines[i], `"host":"host-a"`) {
			t.Errorf("line %d = %s, want %s naming host-a", i, lines[i], want)
		}
	}
	// The publisher skips its own, and says no pause of its input for
	// them: that would cut its own input's batch.
	if l, e := mine.snapshot(); len(l)+len(e) != 0 {
		t.Errorf("host-a followed its own decisions: %q %q", l, e)
	}
	mine.mu.Lock()
	if mine.idle != 0 {
		t.Errorf("host-a's own decisions called Idle %d times, want none", mine.idle)
	}
	mine.mu.Unlock()

	// A member starting now gets what is in force: the unblocked host no
	// longer, each other once.
	out.Add(decision(event.KindUnblock, "198.18.0.1", time.Time{}, "host-a"))
	waitFor(t, "the unblock at host-b", func() bool { l, _ := got.snapshot(); return len(l) == 4 })
	late := follow(t, dial(t, s), "host-c/ps-block")
	waitFor(t, "replay at host-c", func() bool { l, _ := late.snapshot(); return len(l) >= 3 })
	time.Sleep(200 * time.Millisecond)
	lines, _ = late.snapshot()
	if len(lines) != 3 {
		t.Fatalf("host-c replayed %d lines: %q, want 3", len(lines), lines)
	}
	if strings.Contains(lines[0]+lines[1]+lines[2], `"kind":"block","time":"2026-11-30T12:00:00Z","target":"198.18.0.1"`) {
		t.Errorf("host-c got the lifted block: %q", lines)
	}
}

func TestEndedBlocksLeaveTheStream(t *testing.T) {
	s := runServer(t, t.TempDir(), -1)
	out, err := NewOutbox(dial(t, s), "host-a", "ps-block", t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	out.Add(decision(event.KindBlock, "198.18.0.1", time.Now().Add(time.Second), "host-a"))
	out.Add(decision(event.KindBlock, "198.18.0.2", time.Now().Add(time.Hour), "host-a"))
	out.Add(decision(event.KindBlock, "198.18.0.3", time.Now().Add(-time.Second), "host-a")) // over before it left
	waitFor(t, "the outbox to empty", func() bool { return out.Waiting() == 0 })
	time.Sleep(3 * time.Second) // the first block's TTL passes
	r := follow(t, dial(t, s), "host-b/ps-block")
	waitFor(t, "replay", func() bool { l, _ := r.snapshot(); return len(l) >= 1 })
	time.Sleep(300 * time.Millisecond)
	lines, _ := r.snapshot()
	if len(lines) != 1 || !strings.Contains(lines[0], "198.18.0.2") {
		t.Fatalf("replay = %q, want only the block in force (198.18.0.2)", lines)
	}
}

// eventRecorder is a recorder that takes decoded events too
// (EventHandler): it keeps them re-encoded, and counts them.
type eventRecorder struct {
	recorder
	events int
}

func (r *eventRecorder) Event(origin string, n int, ev *event.Event) {
	r.mu.Lock()
	r.events++
	r.mu.Unlock()
	r.Line(origin, n, bytes.TrimSuffix(event.Append(nil, ev), []byte("\n")), nil)
}

// Every message is checked: framing, the event, and that a member speaks
// in its own name on the subject of what it decides; a handler that takes
// events gets the good one decoded, and the refusals as errors still.
func TestFollowRefusesForgedMessages(t *testing.T) {
	for _, events := range []bool{false, true} {
		t.Run(fmt.Sprint("events=", events), func(t *testing.T) { testFollowRefuses(t, events) })
	}
}

func testFollowRefuses(t *testing.T, events bool) {
	s := runServer(t, t.TempDir(), -1)
	nc := dial(t, s)
	var r *recorder
	var er *eventRecorder
	if events {
		er = &eventRecorder{}
		r = &er.recorder
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			if err := Follow(ctx, dial(t, s), "host-b/ps-block", er, t.Logf); err != nil {
				t.Error(err)
			}
		}()
		t.Cleanup(func() { cancel(); <-done })
	} else {
		r = follow(t, dial(t, s), "host-b/ps-block")
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the stream", func() bool {
		_, err := js.Stream(context.Background(), Stream)
		return err == nil
	})
	until := time.Now().Add(time.Hour)
	good := decision(event.KindBlock, "198.18.0.9", until, "host-a")
	// Each on its own subject: the stream keeps one message a subject.
	cases := []struct {
		subject string
		data    []byte
		want    string
	}{
		{DecisionSubject("host-a", event.ModeATCP, netip.MustParseAddr("198.18.0.1")), decision(event.KindBlock, "198.18.0.1", until, "host-c"), "does not belong on subject"},
		{DecisionSubject("host-a", event.ModeATCP, netip.MustParseAddr("198.18.0.2")), decision(event.KindBlock, "198.18.0.1", until, "host-a"), "does not belong on subject"},
		{DecisionSubject("host-a", event.ModeATCP, netip.MustParseAddr("198.18.0.7")), decision(event.KindBlock, "198.18.0.7", until, ""), "names no host"},
		{DecisionSubject("host-a", event.ModeATCP, netip.MustParseAddr("198.18.0.3")), []byte(`{"v":1,"kind":"hit"`), "not a JSON object"},
		{DecisionSubject("host-a", event.ModeATCP, netip.MustParseAddr("198.18.0.4")), append(append([]byte{}, good...), good...), "more than one line"},
		{DecisionSubject("host-a", event.ModeATCP, netip.MustParseAddr("198.18.0.5")), []byte(strings.Repeat("x", 5000)), "too long"},
		{DecisionSubject("host-a", event.ModeATCP, netip.MustParseAddr("198.18.0.6")), decision(event.KindAlert, "198.18.0.6", until, "host-a"), "not a fleet decision"},
		{DecisionSubject("host-a", event.ModeATCP, netip.MustParseAddr("198.18.0.9")), good, ""},
	}
	for _, c := range cases {
		if _, err := nc.Request(c.subject, c.data, 2*time.Second); err != nil {
			t.Fatalf("publishing to %s: %v", c.subject, err)
		}
	}
	waitFor(t, "every case", func() bool { l, e := r.snapshot(); return len(l)+len(e) == len(cases) })
	lines, errs := r.snapshot()
	if len(lines) != 1 || !strings.Contains(lines[0], "198.18.0.9") {
		t.Errorf("accepted %q, want only the good decision", lines)
	}
	for i, c := range cases[:len(cases)-1] {
		if i >= len(errs) || !strings.Contains(errs[i], c.want) || !strings.Contains(errs[i], "NATS "+c.subject) {
			t.Errorf("case %d: refusal %q, want one naming the subject and %q", i, errs, c.want)
		}
	}
	if er != nil && er.events != 1 {
		t.Errorf("%d decoded event(s) handed over, want the good decision's", er.events)
	}
}

// While the server is away the decisions wait, and reach the fleet when
// it is back; a follower goes on where it was.
func TestOutboxWaitsForTheServer(t *testing.T) {
	dir := t.TempDir()
	s := runServer(t, dir, -1)
	port := s.Addr().(interface{ AddrPort() netip.AddrPort }).AddrPort().Port()
	out, err := NewOutbox(dial(t, s), "host-a", "ps-block", t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	r := follow(t, dial(t, s), "host-b/ps-block")
	until := time.Now().Add(time.Hour)
	out.Add(decision(event.KindBlock, "198.18.1.1", until, "host-a"))
	waitFor(t, "the first decision", func() bool { l, _ := r.snapshot(); return len(l) == 1 })

	s.Shutdown()
	s.WaitForShutdown()
	for i := 2; i <= 101; i++ {
		out.Add(decision(event.KindBlock, fmt.Sprintf("198.18.1.%d", i), until, "host-a"))
	}
	time.Sleep(500 * time.Millisecond)
	if n := out.Waiting(); n != 100 {
		t.Fatalf("%d decisions wait while the server is away, want 100", n)
	}
	runServer(t, dir, int(port))
	receivedOnce(t, r, "host-b", 101)
}

// receivedOnce waits for want lines at r, and a moment for more, and
// checks that none came twice and none was refused. It returns the lines.
func receivedOnce(t *testing.T, r *recorder, who string, want int) []string {
	t.Helper()
	waitFor(t, "every decision at "+who, func() bool { l, _ := r.snapshot(); return len(l) >= want })
	time.Sleep(300 * time.Millisecond)
	lines, errs := r.snapshot()
	seen := map[string]bool{}
	for _, l := range lines {
		if seen[l] {
			t.Errorf("%s: delivered twice: %s", who, l)
		}
		seen[l] = true
	}
	if len(lines) != want || len(errs) != 0 {
		t.Errorf("%s got %d lines (%d errors), want %d", who, len(lines), len(errs), want)
	}
	return lines
}

func TestOutboxIsBounded(t *testing.T) {
	// A server that is never there: everything waits, up to the bound.
	nc, err := Dial("nats://127.0.0.1:1", &config.Fleet{}, t.Name(), func(string, ...any) {})
	if err != nil {
		t.Fatal(err)
	}
	out, err := NewOutbox(nc, "host-a", "ps-block", t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	line := decision(event.KindBlock, "198.18.0.1", time.Now().Add(time.Hour), "host-a")
	n := 2 * maxOutbox / len(line)
	for i := 0; i < n; i++ {
		out.Add(line)
	}
	// Each waits without its newline.
	if w := out.Waiting(); w >= n || w*(len(line)-1) > maxOutbox {
		t.Errorf("%d of %d decisions wait (%d bytes each), bound %d bytes", w, n, len(line), maxOutbox)
	}
	if err := out.Close(); err == nil || !strings.Contains(err.Error(), "not sent") {
		t.Errorf("Close = %v, want it to say what was not sent", err)
	}
}

func TestHitsOverCoreNATS(t *testing.T) {
	s := runServer(t, t.TempDir(), -1)
	r := &recorder{}
	sub, err := ReadHits(dial(t, s), r)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	w := NewCore(dial(t, s), HitSubject("sensor-1"), t.Logf)
	hit := `{"v":1,"kind":"hit","time":"2026-11-24T14:29:45Z","sensor":"ps-sniff","mode":"atcp","proto":"tcp","src":"198.18.0.1","sport":1,"dst":"198.18.0.2","dport":21,"scan":"syn"}`
	// A line cut between two writes, as a Sink's buffer may cut it.
	w.Write([]byte(hit + "\n" + hit[:20]))
	w.Write([]byte(hit[20:] + "\n"))
	nc := dial(t, s)
	nc.Publish(HitSubject("sensor-2"), []byte(hit+"\n"+hit)) // two lines in one message
	nc.Flush()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "3 messages", func() bool { l, e := r.snapshot(); return len(l)+len(e) == 3 })
	lines, errs := r.snapshot()
	if len(lines) != 2 || lines[0] != hit || lines[1] != hit {
		t.Errorf("lines = %q", lines)
	}
	if len(errs) != 1 || !strings.Contains(errs[0], "NATS portsentry.hit.sensor-2 line") || !strings.Contains(errs[0], "more than one line") {
		t.Errorf("errors = %q", errs)
	}
}

func TestMembersSeeEachOther(t *testing.T) {
	s := runServer(t, t.TempDir(), -1)
	type view struct {
		mu sync.Mutex
		m  map[netip.Addr]string
	}
	start := func(host string, addrs ...string) *view {
		v := &view{}
		var own []netip.Addr
		for _, a := range addrs {
			own = append(own, netip.MustParseAddr(a))
		}
		ctx, cancel := context.WithCancel(context.Background())
		t.Cleanup(cancel)
		ready := make(chan struct{})
		go NewMembership(dial(t, s), host, func() []netip.Addr { return MemberAddrs(own, nil) },
			func(m map[netip.Addr]string) { v.mu.Lock(); v.m = m; v.mu.Unlock() }, t.Logf).Run(ctx, ready)
		select {
		case <-ready:
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: member bucket not read", host)
		}
		return v
	}
	a := start("host-a", "198.18.0.2", "127.0.0.1", "fe80::1")
	b := start("host-b", "198.18.0.3", "2001:db8::3")
	// A forged entry: bad addresses are skipped, the good one kept.
	js := dial(t, s)
	if _, err := js.Request("$KV."+Members+".host-x", []byte("198.18.0.99 nonsense 300.1.1.1"), 2*time.Second); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"198.18.0.2": "host-a", "198.18.0.3": "host-b", "2001:db8::3": "host-b", "198.18.0.99": "host-x"}
	for name, v := range map[string]*view{"host-a": a, "host-b": b} {
		waitFor(t, name+" to see every member", func() bool {
			v.mu.Lock()
			defer v.mu.Unlock()
			if len(v.m) != len(want) {
				return false
			}
			for addr, host := range want {
				if v.m[netip.MustParseAddr(addr)] != host {
					return false
				}
			}
			return true
		})
	}
}

// TestNames: the subject and Nats-Msg-Id of a decision, spelled out (a
// stored stream keeps them across versions: the same decision must keep
// its subject, and a retry its id).
func TestNames(t *testing.T) {
	at := time.Date(2026, 11, 30, 19, 40, 1, 123456789, time.UTC)
	for _, tc := range []struct {
		ev      event.Event
		subject string
		id      string
	}{
		{event.Event{Kind: event.KindBlock, Host: "host-a", Mode: event.ModeATCP, Target: netip.MustParseAddr("198.18.0.1"), Time: at},
			"portsentry.decision.host-a.atcp.198-18-0-1", "host-a|block|atcp|198.18.0.1|2026-11-30T19:40:01.123456789Z"},
		{event.Event{Kind: event.KindUnblock, Host: "fw_1", Mode: event.ModeSUDP, Target: netip.MustParseAddr("2001:db8::1"), Time: at.Truncate(time.Second)},
			"portsentry.decision.fw_1.sudp.2001:db8::1", "fw_1|unblock|sudp|2001:db8::1|2026-11-30T19:40:01Z"},
		{event.Event{Kind: event.KindRun, Host: "h", Mode: event.ModeTCP, Target: netip.MustParseAddr("::ffff:198.18.0.2"), Time: at.In(time.FixedZone("x", 3600))},
			"portsentry.decision.h.tcp.::ffff:198-18-0-2", "h|run|tcp|::ffff:198.18.0.2|2026-11-30T20:40:01.123456789+01:00"},
	} {
		if got := DecisionSubject(tc.ev.Host, tc.ev.Mode, tc.ev.Target); got != tc.subject {
			t.Errorf("DecisionSubject = %q, want %q", got, tc.subject)
		}
		if got := msgID([]byte("left over")[:0], &tc.ev); got != tc.id {
			t.Errorf("msgID = %q, want %q", got, tc.id)
		}
	}
}
