package config

import (
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseClassic(t *testing.T) {
	var warnings []string
	c, err := Load("testdata/classic.conf", func(w string) { warnings = append(warnings, w) })
	if err != nil {
		t.Fatal(err)
	}
	if len(warnings) != 0 {
		t.Errorf("warnings: %q", warnings)
	}
	if len(c.TCPPorts) != 26 || c.TCPPorts[0] != 1 || c.TCPPorts[25] != 54320 {
		t.Errorf("TCPPorts = %v", c.TCPPorts)
	}
	if !slices.Equal(c.AdvancedExcludeUDP, []uint16{67, 137, 138, 520}) {
		t.Errorf("AdvancedExcludeUDP = %v", c.AdvancedExcludeUDP)
	}
	if c.BlockTCP != 2 || c.BlockUDP != 1 || c.ScanTrigger != 2 || c.KillRunCmdFirst || c.ResolveHost {
		t.Errorf("numbers: %+v", c)
	}
	if c.KillRoute != "/sbin/iptables -I INPUT -s $TARGET$ -j DROP" || c.KillHostsDeny != "ALL: $TARGET$ : DENY" {
		t.Errorf("commands: %q %q", c.KillRoute, c.KillHostsDeny)
	}
	if !strings.HasPrefix(c.PortBanner, "** UNAUTHORIZED") {
		t.Errorf("PortBanner = %q", c.PortBanner)
	}
}

func TestContribExampleLoadsCleanly(t *testing.T) {
	var warnings []string
	c, err := Load("../../contrib/portsentry.conf", func(w string) { warnings = append(warnings, w) })
	if err != nil {
		t.Fatal(err)
	}
	if len(warnings) != 0 {
		t.Errorf("warnings: %q", warnings)
	}
	// The example documents every key: each must appear in it.
	text, err := os.ReadFile("../../contrib/portsentry.conf")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range Keys() {
		if !strings.Contains(string(text), k+"=") {
			t.Errorf("contrib/portsentry.conf does not document %s", k)
		}
	}
	if c.Source == "" {
		t.Error("Source not set")
	}
}

func TestParseValues(t *testing.T) {
	tests := []struct {
		line  string
		check func(*Config) bool
	}{
		{`TCP_PORTS="1-3,2,10"`, func(c *Config) bool { return slices.Equal(c.TCPPorts, []uint16{1, 2, 3, 10}) }},
		{`UDP_PORTS="1-1000"`, func(c *Config) bool { return len(c.UDPPorts) == 1000 }},
		{`TCP_PORTS=""`, func(c *Config) bool { return len(c.TCPPorts) == 0 }},
		{`SCAN_TRIGGER=3 # unquoted, with comment`, func(c *Config) bool { return c.ScanTrigger == 3 }},
		{`BLOCK_DURATION="0"`, func(c *Config) bool { return c.BlockDuration == 0 }},
		{`BLOCK_DURATION="3600"`, func(c *Config) bool { return c.BlockDuration == time.Hour }},
		{`BLOCK_DURATION="24h"`, func(c *Config) bool { return c.BlockDuration == 24*time.Hour }},
		{`STATE_IDLE_TIMEOUT="90m"`, func(c *Config) bool { return c.StateIdleTimeout == 90*time.Minute }},
		{`PROTECT_ADDRESSES="198.18.0.1, 2001:db8::/32 ::ffff:198.19.0.0/112"`, func(c *Config) bool {
			return slices.Equal(c.ProtectAddresses, []netip.Prefix{netip.MustParsePrefix("198.18.0.1/32"), netip.MustParsePrefix("2001:db8::/32"), netip.MustParsePrefix("198.19.0.0/16")})
		}},
		{`FAST_PATH="0"`, func(c *Config) bool { return len(c.FastPath) == 0 }},
		{`FAST_PATH="stcp, audp"`, func(c *Config) bool { return slices.Equal(c.FastPath, []string{"stcp", "audp"}) }},
		{`NFT_BLOCK="1"`, func(c *Config) bool { return slices.Equal(c.FastPath, []string{"atcp", "audp"}) }},
		{`BLOCK_RATE="2.5"`, func(c *Config) bool { return c.BlockRate == 2.5 }},
		{`KILL_RUN_CMD="/bin/echo $$ price $5"`, func(c *Config) bool { return c.KillRunCmd == "/bin/echo $$ price $5" }},
	}
	for _, tt := range tests {
		c, err := Parse(strings.NewReader(tt.line+"\n"), "t.conf", nil)
		if err != nil {
			t.Errorf("%s: %v", tt.line, err)
			continue
		}
		if !tt.check(c) {
			t.Errorf("%s: wrong value in %+v", tt.line, c)
		}
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct{ text, want string }{
		{"# comment\nTCP_PORTS=\"1,70000\"\n", `config t.conf line 2: TCP_PORTS: "70000" is not a port`},
		{"TCP_PORTS=\"5-1\"\n", "runs backwards"},
		{"TCP_PORTS=\"a\"\n", `TCP_PORTS: "a" is not a port`},
		{"BLOCK_TCP=\"3\"\n", "line 1: BLOCK_TCP: \"3\" is not a whole number from 0 to 2"},
		{"RESOLVE_HOST=\"yes\"\n", "neither 0 nor 1"},
		{"KILL_ROUTE=\"/sbin/route add 1.2.3.4\"\n", "KILL_ROUTE: must contain $TARGET$"},
		{"KILL_HOSTS_DENY=\"ALL: $TARGT$\"\n", "KILL_HOSTS_DENY: must contain $TARGET$"},
		{"KILL_RUN_CMD=\"/bin/x $TARGET$ $HOST$\"\n", "unknown macro $HOST$"},
		{"IGNORE_FILE=\"relative/path\"\n", "not an absolute path"},
		{"BLOCKED_FILE=\"/tmp/x\" junk\n", "text after the closing quote"},
		{"BLOCKED_FILE=\"/tmp/x\n", "no closing quote"},
		{"JUSTAWORD\n", `not a KEY="value" line`},
		{"NFT_TABLE=\"bad name;\"\n", "NFT_TABLE"},
		{"BLOCK_DURATION=\"-5m\"\n", "BLOCK_DURATION"},
		{"STATE_IDLE_TIMEOUT=\"0\"\n", "must be more than 0"},
		{"PROTECT_ADDRESSES=\"fe80::1%eth0\"\n", "not an address"},
		{"BLOCK_RATE=\"NaN\"\n", "BLOCK_RATE"},
		{"FAST_PATH=\"tcp\"\n", `FAST_PATH: "tcp" is not a mode`},
		{"FAST_PATH=\"stcp,atcp\"\n", "one mode per protocol"},
		{"FAST_PATH=\"\"\n", "FAST_PATH: empty"},
	}
	for _, tt := range tests {
		_, err := Parse(strings.NewReader(tt.text), "t.conf", nil)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: error %v, want it to contain %q", tt.text, err, tt.want)
		}
	}
}

func TestWarnings(t *testing.T) {
	var warnings []string
	c, err := Parse(strings.NewReader("SCAN_TRIGGER=\"1\"\nSOME_2X_KEY=\"x\"\nSCAN_TRIGGER=\"5\"\n"), "t.conf", func(w string) { warnings = append(warnings, w) })
	if err != nil {
		t.Fatal(err)
	}
	if c.ScanTrigger != 1 {
		t.Errorf("ScanTrigger = %d, want the first value, 1", c.ScanTrigger)
	}
	want := []string{"config t.conf line 2: unknown key SOME_2X_KEY ignored", "config t.conf line 3: SCAN_TRIGGER repeats line 1; the first one counts"}
	if !slices.Equal(warnings, want) {
		t.Errorf("warnings = %q, want %q", warnings, want)
	}
}

// A mistyped key names the key it was likely meant to be: otherwise that
// key's default applies with no more than "unknown key".
func TestWarningNearestKey(t *testing.T) {
	text := "NFT_BLOK=\"0\"\nblock_udp=\"0\"\nSCAN_TRIGER=\"2\"\nKILL_ROUTE6=\"x $TARGET$\"\nSOME_2X_KEY=\"x\"\n"
	var warnings []string
	if _, err := Parse(strings.NewReader(text), "t.conf", func(w string) { warnings = append(warnings, w) }); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"config t.conf line 1: unknown key NFT_BLOK ignored: did you mean NFT_BLOCK?",
		"config t.conf line 2: unknown key block_udp ignored: did you mean BLOCK_UDP? (keys are upper case)",
		"config t.conf line 3: unknown key SCAN_TRIGER ignored: did you mean SCAN_TRIGGER?",
		"config t.conf line 4: unknown key KILL_ROUTE6 ignored: did you mean KILL_ROUTE?",
		"config t.conf line 5: unknown key SOME_2X_KEY ignored",
	}
	if !slices.Equal(warnings, want) {
		t.Errorf("warnings:\n%s\nwant:\n%s", strings.Join(warnings, "\n"), strings.Join(want, "\n"))
	}
}

func TestLoadMissing(t *testing.T) {
	if _, err := Load("/nonexistent/portsentry.conf", nil); err == nil {
		t.Error("an explicit missing file must be an error")
	}
	_, err := Load(t.TempDir(), nil)
	if err == nil || !strings.Contains(err.Error(), "is a directory, not a configuration file") {
		t.Errorf("a directory given as the file: error %v", err)
	}
}

func FuzzParse(f *testing.F) {
	b, err := os.ReadFile("testdata/classic.conf")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(string(b))
	f.Add("TCP_PORTS=\"1-5,7\"\nKILL_ROUTE=\"x $TARGET$ $PORT$\"\n")
	f.Add("PROTECT_ADDRESSES=\"::ffff:0.0.0.0/96\"")
	f.Fuzz(func(t *testing.T, text string) {
		c, err := Parse(strings.NewReader(text), "fuzz.conf", nil)
		if err != nil {
			return
		}
		for _, p := range append(slices.Clone(c.TCPPorts), c.UDPPorts...) {
			if p == 0 {
				t.Fatal("port 0 accepted")
			}
		}
		if c.KillRoute != "" && !strings.Contains(c.KillRoute, "$TARGET$") {
			t.Fatalf("KILL_ROUTE without $TARGET$ accepted: %q", c.KillRoute)
		}
		if c.BlockTCP < 0 || c.BlockTCP > 2 || c.ScanTrigger < 0 {
			t.Fatalf("out of range: %+v", c)
		}
	})
}
