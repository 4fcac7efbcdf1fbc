package fleet

import (
	"context"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/portsentry/pipeline/shared/config"
	"github.com/portsentry/pipeline/shared/event"
	"github.com/portsentry/pipeline/shared/fleet/natstest"
)

// TestContribServerConfig runs the server of contrib/nats/nats-server.conf
// (its users and subject permissions, on a local port and a temporary
// store) and checks each role: members publish and follow decisions and
// register in their own name only, the central judge reads hits, and a
// sensor's credentials publish hits but can carry no decision.
func TestContribServerConfig(t *testing.T) {
	opts, err := server.ProcessConfigFile("../../contrib/nats/nats-server.conf")
	if err != nil {
		t.Fatal(err)
	}
	s := natstest.Run(t, t.TempDir(), -1, opts)
	var (
		mu         sync.Mutex // the connections' error handlers run apart
		violations []string
	)
	as := func(user string) *nats.Conn {
		t.Helper()
		nc, err := Dial(s.ClientURL(), &config.Fleet{User: user, Password: "change-me-" + user}, user, func(f string, a ...any) {
			t.Logf(user+": "+f, a...)
		})
		if err != nil {
			t.Fatal(err)
		}
		nc.SetErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			mu.Lock()
			violations = append(violations, user+": "+err.Error())
			mu.Unlock()
		})
		t.Cleanup(nc.Close)
		return nc
	}
	a, b, sensor, judge := as("host-a"), as("host-b"), as("sensor"), as("judge")

	// Members register and see each other.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	seen := make(chan map[netip.Addr]string, 16)
	for host, nc := range map[string]*nats.Conn{"host-a": a, "host-b": b} {
		ready := make(chan struct{})
		own := netip.MustParseAddr(map[string]string{"host-a": "198.18.0.2", "host-b": "198.18.0.3"}[host])
		go NewMembership(nc, host, func() []netip.Addr { return []netip.Addr{own} },
			func(m map[netip.Addr]string) { seen <- m }, t.Logf).Run(ctx, ready)
		select {
		case <-ready:
		case <-time.After(10 * time.Second):
			t.Fatalf("%s could not register and read the member bucket", host)
		}
	}
	var last map[netip.Addr]string
	waitFor(t, "both members in a member's view", func() bool {
		select {
		case last = <-seen:
			return len(last) == 2
		default:
			return false
		}
	})

	// host-b follows; host-a and the judge publish decisions in their names.
	got := follow(t, b, "host-b/ps-block")
	until := time.Now().Add(time.Hour)
	for host, nc := range map[string]*nats.Conn{"host-a": a, "judge": judge} {
		out, err := NewOutbox(nc, host, "ps-block", t.Logf)
		if err != nil {
			t.Fatal(err)
		}
		defer out.Close()
		out.Add(decision(event.KindBlock, map[string]string{"host-a": "198.18.5.1", "judge": "198.18.5.2"}[host], until, host))
	}
	waitFor(t, "host-a's and the judge's decisions at host-b", func() bool { l, _ := got.snapshot(); return len(l) == 2 })

	// The sensor's hits reach the judge.
	r := &recorder{}
	if _, err := ReadHits(judge, r); err != nil {
		t.Fatal(err)
	}
	judge.Flush()
	hits := NewCore(sensor, HitSubject("host-a"), t.Logf)
	hits.Write([]byte(`{"v":1,"kind":"hit","time":"2026-11-24T14:29:45Z","mode":"atcp","src":"198.18.0.1","sport":1,"dst":"198.18.0.2","dport":21,"scan":"syn"}` + "\n"))
	sensor.Flush()
	waitFor(t, "the sensor's hit at the judge", func() bool { l, _ := r.snapshot(); return len(l) == 1 })

	// What must fail: a sensor carrying a decision (as a JetStream
	// publication and as a plain message), a member deciding or
	// registering in another's name.
	forged, err := NewOutbox(sensor, "host-a", "ps-sniff", func(string, ...any) {})
	if err != nil {
		t.Fatal(err)
	}
	forged.Add(decision(event.KindBlock, "198.18.6.1", until, "host-a"))
	sensor.Publish(DecisionSubject("host-a", event.ModeATCP, netip.MustParseAddr("198.18.6.2")), decision(event.KindBlock, "198.18.6.2", until, "host-a"))
	a.Publish(DecisionSubject("host-b", event.ModeATCP, netip.MustParseAddr("198.18.6.3")), decision(event.KindBlock, "198.18.6.3", until, "host-b"))
	a.Publish("$KV."+Members+".host-b", []byte("198.18.6.4"))
	time.Sleep(2 * time.Second)
	if lines, errs := got.snapshot(); len(lines) != 2 || len(errs) != 0 {
		t.Errorf("host-b followed %q (errors %q): a forbidden decision got through", lines, errs)
	}
	if n := forged.Waiting(); n != 1 {
		t.Errorf("the sensor's decision left its outbox (%d waiting): the server stored it", n)
	}
	for len(seen) > 0 {
		last = <-seen
	}
	if h, ok := last[netip.MustParseAddr("198.18.6.4")]; ok || last[netip.MustParseAddr("198.18.0.3")] != "host-b" {
		t.Errorf("members = %v (198.18.6.4 registered by %q): host-a rewrote host-b's entry", last, h)
	}
	mu.Lock()
	v := strings.Join(violations, "\n")
	mu.Unlock()
	for _, want := range []string{`sensor: nats: permissions violation: Permissions Violation for Publish to "portsentry.decision.host-a`,
		`sensor: nats: permissions violation: Permissions Violation for Publish to "$JS.API.STREAM.INFO.PORTSENTRY_DECISIONS"`,
		`host-a: nats: permissions violation: Permissions Violation for Publish to "portsentry.decision.host-b`,
		`host-a: nats: permissions violation: Permissions Violation for Publish to "$KV.portsentry_members.host-b"`} {
		if !strings.Contains(v, want) {
			t.Errorf("no %q among the violations:\n%s", want, v)
		}
	}
}
