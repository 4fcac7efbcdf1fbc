package fastpath

import (
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/portsentry/pipeline/ps-block/nft"
	"github.com/portsentry/pipeline/shared/config"
	"github.com/portsentry/pipeline/shared/guard"
	"github.com/portsentry/pipeline/shared/netlab"
)

// TestKernelInstallListed: this kernel takes the whole ruleset, twice (a
// restart), and nft(8) reads it back with the socket lookups in place.
func TestKernelInstallListed(t *testing.T) {
	ns := netlab.NewNS(t, "fpk")
	c, err := nft.Open(ns.Fd)
	if err != nil {
		netlab.SkipOrFail(t, "nftables netlink: %v", err)
	}
	t.Cleanup(func() { _ = c.CloseLasting() })
	cfg := config.Default()
	cfg.ScanTrigger = 2
	cfg.BlockDuration = time.Hour
	s, _ := FromConfig(cfg)
	rs, err := Build(s, Protected(guard.New(nil, nil, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if err := Install(c, rs); err != nil {
		t.Fatal(err)
	}
	if err := Install(c, rs); err != nil {
		t.Fatalf("second Install: %v", err)
	}
	out, err := exec.Command("ip", "netns", "exec", ns.Name, "nft", "list", "table", "inet", "portsentry").CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	for _, want := range []string{"socket transparent 0 return", "socket transparent 1 return",
		"update @fp_atcp4_s2 { ip saddr timeout 6h }", "add @fp_atcp6 { ip6 saddr timeout 1h : th dport }",
		"limit rate over 50/second burst 200 packets"} {
		if strings.Count(string(out), want) < 1 {
			t.Errorf("nft list shows no %q:\n%s", want, out)
		}
	}
	if n := strings.Count(string(out), "jump fp_atcp4"); n != 1 {
		t.Errorf("%d jumps to fp_atcp4 after two installs, want 1", n)
	}
}
