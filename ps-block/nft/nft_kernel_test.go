package nft

import (
	"errors"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/portsentry/pipeline/ps-block/gate"
	"github.com/portsentry/pipeline/shared/netlab"
)

// kernelConn opens a lasting nftables connection inside a fresh namespace.
func kernelConn(t testing.TB, tag string) (*nftables.Conn, *netlab.NS) {
	t.Helper()
	ns := netlab.NewNS(t, tag)
	c, err := Open(ns.Fd)
	if err != nil {
		netlab.SkipOrFail(t, "nftables netlink in namespace %s: %v", ns.Name, err)
	}
	t.Cleanup(func() { _ = c.CloseLasting() })
	return c, ns
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }

func listMap(t *testing.T, a *Action) map[netip.Addr]time.Duration {
	t.Helper()
	els, err := a.List()
	if err != nil {
		t.Fatal(err)
	}
	m := map[netip.Addr]time.Duration{}
	for _, e := range els {
		m[e.Addr] = e.Expires
	}
	return m
}

func TestKernelEnsureAddListDelete(t *testing.T) {
	c, _ := kernelConn(t, "eald")
	now := time.Now()
	a := New(c, Config{}, func() time.Time { return now })
	if err := a.Ensure(); err != nil {
		t.Fatal(err)
	}
	adds := []struct {
		addr  string
		until time.Time
	}{
		{"198.18.0.10", time.Time{}},
		{"198.18.0.11", now.Add(time.Hour)},
		{"2001:db8::10", now.Add(10 * time.Minute)},
		{"::ffff:198.18.0.12", time.Time{}},
	}
	for _, ad := range adds {
		if err := a.Add(admit(mustAddr(ad.addr)), ad.until); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Add(admit(mustAddr("198.18.0.13")), now.Add(-time.Second)); !errors.Is(err, ErrEnded) {
		t.Fatalf("ended block: got %v, want ErrEnded", err)
	}
	if err := a.Flush(); err != nil {
		t.Fatal(err)
	}

	// A restart: a new Action runs Ensure again; nothing may be lost or doubled.
	b := New(c, Config{}, time.Now)
	if err := b.Ensure(); err != nil {
		t.Fatalf("second Ensure: %v", err)
	}
	got := listMap(t, b)
	tests := []struct {
		addr     string
		min, max time.Duration // expected range of life left; 0,0: permanent
	}{
		{"198.18.0.10", 0, 0},
		{"198.18.0.11", 59 * time.Minute, time.Hour},
		{"2001:db8::10", 9 * time.Minute, 10 * time.Minute},
		{"198.18.0.12", 0, 0},
	}
	for _, tc := range tests {
		exp, ok := got[mustAddr(tc.addr)]
		if !ok {
			t.Errorf("%s missing from kernel sets: %v", tc.addr, got)
			continue
		}
		if exp < tc.min || exp > tc.max {
			t.Errorf("%s expires in %v, want %v..%v", tc.addr, exp, tc.min, tc.max)
		}
	}
	if len(got) != len(tests) {
		t.Errorf("kernel holds %d elements, want %d: %v", len(got), len(tests), got)
	}

	chain, err := c.ListChain(b.table, inputChain)
	if err != nil {
		t.Fatal(err)
	}
	if *chain.Hooknum != *nftables.ChainHookInput || *chain.Priority != -1 || *chain.Policy != nftables.ChainPolicyAccept {
		t.Errorf("input chain hook %d prio %d policy %d", *chain.Hooknum, *chain.Priority, *chain.Policy)
	}
	rules, err := c.GetRules(b.table, chain)
	if err != nil {
		t.Fatal(err)
	}
	if len(rules) != 2 {
		t.Fatalf("input chain has %d rules after two Ensure, want 2", len(rules))
	}
	var sets []string
	for _, r := range rules {
		for _, e := range r.Exprs {
			if l, ok := e.(*expr.Lookup); ok {
				sets = append(sets, l.SetName)
			}
		}
	}
	if !slices.Equal(sets, []string{Set4, Set6}) {
		t.Errorf("rules look up %v, want [%s %s]", sets, Set4, Set6)
	}
	if _, err := c.ListChain(b.table, forwardChain); err == nil {
		t.Errorf("forward chain exists though Forward is off")
	}

	for _, tc := range []struct {
		addr    string
		present bool
	}{{"198.18.0.10", true}, {"198.18.0.10", false}, {"2001:db8::10", true}, {"2001:db8::99", false}} {
		present, err := b.Delete(mustAddr(tc.addr))
		if err != nil || present != tc.present {
			t.Errorf("Delete(%s) = %v, %v; want %v, nil", tc.addr, present, err, tc.present)
		}
	}
	got = listMap(t, b)
	if _, ok := got[mustAddr("198.18.0.10")]; ok || len(got) != 2 {
		t.Errorf("after deletes kernel holds %v", got)
	}
}

func TestKernelElementExpires(t *testing.T) {
	c, _ := kernelConn(t, "exp")
	a := New(c, Config{Table: "pstest", Forward: true}, time.Now)
	if err := a.Ensure(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ListChain(a.table, forwardChain); err != nil {
		t.Errorf("forward chain: %v", err)
	}
	if err := a.Add(admit(mustAddr("198.18.1.1")), time.Now().Add(300*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if err := a.Add(admit(mustAddr("198.18.1.2")), time.Time{}); err != nil {
		t.Fatal(err)
	}
	if err := a.Flush(); err != nil {
		t.Fatal(err)
	}
	if got := listMap(t, a); len(got) != 2 {
		t.Fatalf("before expiry: %v", got)
	}
	// The kernel's garbage collector runs on its own schedule; poll.
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := listMap(t, a)
		if _, ok := got[mustAddr("198.18.1.1")]; !ok {
			if _, ok := got[mustAddr("198.18.1.2")]; !ok {
				t.Fatalf("permanent element gone too: %v", got)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("element with 300ms timeout still listed after 10s: %v", got)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestKernelProbeDropped joins two namespaces with a veth pair (addresses from
// 198.18.0.0/15 and 2001:db8::/32 only) and checks that a TCP connect from a
// blocked source no longer gets through, while it did before.
func TestKernelProbeDropped(t *testing.T) {
	c, victim := kernelConn(t, "vic")
	attacker := netlab.NewNS(t, "att")
	victim.Run(t, "ip", "link", "add", "psb0", "type", "veth", "peer", "name", "psb1", "netns", attacker.Name)
	victim.Run(t, "ip", "addr", "add", "198.18.5.1/24", "dev", "psb0")
	victim.Run(t, "ip", "addr", "add", "2001:db8:5::1/64", "dev", "psb0", "nodad")
	victim.Run(t, "ip", "link", "set", "psb0", "up")
	attacker.Run(t, "ip", "addr", "add", "198.18.5.2/24", "dev", "psb1")
	attacker.Run(t, "ip", "addr", "add", "2001:db8:5::2/64", "dev", "psb1", "nodad")
	attacker.Run(t, "ip", "link", "set", "psb1", "up")

	var ln net.Listener
	if err := victim.Do(func() (err error) {
		ln, err = net.Listen("tcp", "[::]:7000")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			conn.Close()
		}
	}()
	probe := func(dst string) error {
		return attacker.Do(func() error {
			conn, err := net.DialTimeout("tcp", net.JoinHostPort(dst, "7000"), 500*time.Millisecond)
			if err == nil {
				conn.Close()
			}
			return err
		})
	}

	a := New(c, Config{}, time.Now)
	if err := a.Ensure(); err != nil {
		t.Fatal(err)
	}
	// The path works before the block: a first probe may wait for
	// neighbour discovery, longer than its timeout on a loaded machine.
	for _, dst := range []string{"198.18.5.1", "2001:db8:5::1"} {
		err := probe(dst)
		for end := time.Now().Add(10 * time.Second); err != nil && time.Now().Before(end); {
			err = probe(dst)
		}
		if err != nil {
			t.Fatalf("probe to %s before block: %v", dst, err)
		}
	}
	for _, src := range []string{"198.18.5.2", "2001:db8:5::2"} {
		if err := a.Add(admit(mustAddr(src)), time.Now().Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Flush(); err != nil {
		t.Fatal(err)
	}
	for _, dst := range []string{"198.18.5.1", "2001:db8:5::1"} {
		if err := probe(dst); err == nil {
			t.Errorf("probe to %s got through after its source was blocked", dst)
		}
	}
}

func BenchmarkKernelAdd100k(b *testing.B) {
	c, _ := kernelConn(b, "bench")
	a := New(c, Config{}, time.Now)
	if err := a.Ensure(); err != nil {
		b.Fatal(err)
	}
	addrs := make([]netip.Addr, 100_000)
	for i := range addrs {
		if i%2 == 0 {
			addrs[i] = netip.AddrFrom4([4]byte{198, 18 + byte(i>>16), byte(i >> 8), byte(i)})
		} else {
			addrs[i] = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 13: byte(i >> 16), 14: byte(i >> 8), 15: byte(i)})
		}
	}
	passes := make([]gate.Pass, len(addrs))
	for i, addr := range addrs {
		passes[i] = admit(addr)
	}
	until := time.Now().Add(time.Hour)
	b.ResetTimer()
	for b.Loop() {
		for _, p := range passes {
			if err := a.Add(p, until); err != nil {
				b.Fatal(err)
			}
		}
		if err := a.Flush(); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	els, err := a.List()
	if err != nil {
		b.Fatal(err)
	}
	if len(els) != len(addrs) {
		b.Fatalf("kernel holds %d elements, want %d", len(els), len(addrs))
	}
}
