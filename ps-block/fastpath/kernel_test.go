package fastpath

import (
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/portsentry/pipeline/ps-block/nft"
	"github.com/portsentry/pipeline/shared/config"
	"github.com/portsentry/pipeline/shared/guard"
	"github.com/portsentry/pipeline/shared/netlab"
)

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
	rs, err := Build(s, Ranges(guard.New(nil, nil, nil).Prefixes()))
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
	t.Logf("%s", out)
	if !strings.Contains(string(out), "socket transparent 0 return") {
		t.Fatal("no socket rule")
	}
	_ = netip.Addr{}
}
