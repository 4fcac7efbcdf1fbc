package fastpath

import (
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables/expr"
	"github.com/portsentry/pipeline/shared/config"
)

var updateGolden = flag.Bool("update", false, "rewrite the golden files")

func mustConfig(t *testing.T, text string) *config.Config {
	t.Helper()
	c, err := config.Parse(strings.NewReader(text), "t.conf", nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestBuildGolden: the whole ruleset for representative configurations,
// as Ruleset.String renders it.
func TestBuildGolden(t *testing.T) {
	protected := Ranges([]netip.Prefix{
		netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("198.18.0.2/32"),
		netip.MustParsePrefix("198.18.0.3/32"), netip.MustParsePrefix("::1/128"), netip.MustParsePrefix("ff00::/8"),
	})
	tests := []struct{ name, conf string }{
		{"default", ""},
		{"stealth-trigger2", "FAST_PATH=\"stcp,sudp\"\nSCAN_TRIGGER=\"2\"\nSTATE_IDLE_TIMEOUT=\"90m\"\nBLOCK_DURATION=\"24h\"\nBLOCK_RATE=\"0.5\"\nBLOCK_BURST=\"5\"\nTCP_PORTS=\"1,11,15-17\"\nUDP_PORTS=\"65535\"\n"},
		{"forward-udp-alert", "NFT_FORWARD=\"1\"\nBLOCK_UDP=\"0\"\nNFT_TABLE=\"ps\"\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, notes := FromConfig(mustConfig(t, tc.conf))
			rs, err := Build(s, protected)
			if err != nil {
				t.Fatal(err)
			}
			got := rs.String()
			for _, n := range notes {
				got += "note: " + n + "\n"
			}
			path := filepath.Join("testdata", tc.name+".golden")
			if *updateGolden {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if got != string(want) {
				t.Errorf("ruleset differs from %s (go test -update rewrites it):\n%s", path, got)
			}
		})
	}
}

func TestFromConfigOff(t *testing.T) {
	for _, conf := range []string{"FAST_PATH=\"0\"\n", "NFT_BLOCK=\"0\"\n", "BLOCK_TCP=\"2\"\nBLOCK_UDP=\"0\"\n", "SCAN_TRIGGER=\"17\"\n", "FAST_PATH=\"stcp\"\nTCP_PORTS=\"\"\n"} {
		s, notes := FromConfig(mustConfig(t, conf))
		if len(s.Watches) != 0 {
			t.Errorf("%q: watches %+v, want none", conf, s.Watches)
		}
		if strings.Contains(conf, "BLOCK_TCP") || strings.Contains(conf, "SCAN_TRIGGER") || strings.Contains(conf, "TCP_PORTS") {
			if len(notes) == 0 {
				t.Errorf("%q: the log would not say why the fast path is off", conf)
			}
		}
	}
}

func TestWatchedPorts(t *testing.T) {
	got := below(1024, []uint16{1, 113, 139, 1023, 2000})
	want := []PortRange{{2, 112}, {114, 138}, {140, 1022}}
	if !slices.Equal(got, want) {
		t.Errorf("below: %v, want %v", got, want)
	}
	if got := below(2, nil); !slices.Equal(got, []PortRange{{1, 1}}) {
		t.Errorf("below 2: %v", got)
	}
	if got := ranges([]uint16{1, 2, 3, 7, 65534, 65535}); !slices.Equal(got, []PortRange{{1, 3}, {7, 7}, {65534, 65535}}) {
		t.Errorf("ranges: %v", got)
	}
}

func TestRanges(t *testing.T) {
	in := []netip.Prefix{
		netip.MustParsePrefix("198.18.0.0/24"), netip.MustParsePrefix("198.18.0.7/32"), // inside
		netip.MustParsePrefix("198.18.1.0/24"), // adjacent
		netip.MustParsePrefix("255.255.255.255/32"), netip.MustParsePrefix("::ffff:10.0.0.0/104"),
		netip.MustParsePrefix("2001:db8::/32"), netip.MustParsePrefix("ff00::/8"), {},
	}
	got := Ranges(in)
	want := []PrefixRange{
		{netip.MustParseAddr("10.0.0.0"), netip.MustParseAddr("10.255.255.255")},
		{netip.MustParseAddr("198.18.0.0"), netip.MustParseAddr("198.18.1.255")},
		{netip.MustParseAddr("255.255.255.255"), netip.MustParseAddr("255.255.255.255")},
		{netip.MustParseAddr("2001:db8::"), netip.MustParseAddr("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff")},
		{netip.MustParseAddr("ff00::"), netip.MustParseAddr("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("Ranges:\n%v\nwant\n%v", got, want)
	}
	v4, v6 := protectElements(got)
	// 0 (end), then a start and an end per range, none after the top.
	if len(v4) != 1+2+2+1 || !v4[0].IntervalEnd || v4[len(v4)-1].IntervalEnd {
		t.Errorf("IPv4 elements %+v", v4)
	}
	if len(v6) != 1+2+1 || v6[len(v6)-1].IntervalEnd {
		t.Errorf("IPv6 elements %+v", v6)
	}
}

func TestLimitOf(t *testing.T) {
	tests := []struct {
		rate float64
		n    uint64
		unit expr.LimitTime
	}{
		{50, 50, expr.LimitTimeSecond},
		{0.5, 30, expr.LimitTimeMinute},
		{2.5, 150, expr.LimitTimeMinute},
		{0.001, 4, expr.LimitTimeHour},
		{1e-6, 1, expr.LimitTimeDay},
	}
	for _, tc := range tests {
		if n, u := limitOf(tc.rate); n != tc.n || u != tc.unit {
			t.Errorf("limitOf(%v) = %d per %d s, want %d per %d s", tc.rate, n, u, tc.n, tc.unit)
		}
	}
}

func TestBuildRefuses(t *testing.T) {
	for _, s := range []Settings{{}, {Table: "t", Trigger: 17}, {Table: "t", Trigger: 1}} {
		if _, err := Build(s, nil); err == nil {
			t.Errorf("Build(%+v) accepted", s)
		}
	}
	if _, err := Build(Settings{Table: "t", Trigger: 1, Idle: time.Hour}, nil); err != nil {
		t.Error(err)
	}
}
