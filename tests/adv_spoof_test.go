package tests

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/portsentry/pipeline/shared/netlab"
)

// advSensorLab is a lab whose sensor namespace has what the guard protects
// beside its own addresses: default routes via the scanner's addresses and
// a resolv.conf naming two name servers, seen by programs started with
// ip netns exec.
type advSensorLab struct {
	*netlab.Lab
	NS4, NS6 netip.Addr // the name servers
}

func newAdvLab(t *testing.T) *advSensorLab {
	t.Helper()
	l := netlab.New(t)
	for _, s := range [][]string{
		{"-n", l.Sensor, "route", "add", "default", "via", l.Scanner4.String()},
		{"-n", l.Sensor, "-6", "route", "add", "default", "via", l.Scanner6.String()},
	} {
		if out, err := exec.Command("ip", s...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(s, " "), err, out)
		}
	}
	a := &advSensorLab{Lab: l, NS4: netip.MustParseAddr("198.19.53.53"), NS6: netip.MustParseAddr("2001:db8:53::53")}
	dir := filepath.Join("/etc/netns", l.Sensor)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.WriteFile(filepath.Join(dir, "resolv.conf"), []byte(fmt.Sprintf("nameserver %s\nnameserver %s\n", a.NS4, a.NS6)), 0o644); err != nil {
		t.Fatal(err)
	}
	return a
}

// mac is the sensor's MAC address, which synflood writes frames to.
func (l *advSensorLab) mac(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("ip", "-n", l.Sensor, "-br", "link", "show", "dev", l.SensorIf).CombinedOutput()
	if err != nil {
		t.Fatalf("ip link show: %v: %s", err, out)
	}
	f := strings.Fields(string(out))
	if len(f) < 3 {
		t.Fatalf("ip -br link show: %q", out)
	}
	return f[2]
}

// synflood runs the generator in the scanner namespace with extra flags.
func (l *advSensorLab) synflood(t *testing.T, limit time.Duration, args ...string) string {
	t.Helper()
	argv := append([]string{"netns", "exec", l.Scanner, bin("synflood"), "-i", l.ScannerIf, "-dstmac", l.mac(t),
		"-dst4", l.Sensor4.String(), "-dst6", l.Sensor6.String(), "-t", limit.String()}, args...)
	return advRun(t, limit+5*time.Second, "ip", argv...)
}

// advPipeline is ps-sniff -atcp (or the modes given) | ps-judge | ps-block
// in the sensor namespace, joined by pipes; ps-block's results go to a file.
type advPipeline struct {
	sniff, judge, block *advStage
	results             string
}

func (l *advSensorLab) startPipeline(t *testing.T, dir, conf string, modes ...string) *advPipeline {
	t.Helper()
	p := &advPipeline{results: filepath.Join(dir, "results")}
	r1, w1 := advPipe(t)
	r2, w2 := advPipe(t)
	out, err := os.Create(p.results)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	b := advCommand(l.Sensor, "ps-block", "-c", conf)
	b.Stdin, b.Stdout = r2, out
	j := advCommand(l.Sensor, "ps-judge", "-c", conf)
	j.Stdin, j.Stdout = r1, w2
	if len(modes) == 0 {
		modes = []string{"-atcp"}
	}
	s := advCommand(l.Sensor, "ps-sniff", append([]string{"-c", conf, "-i", l.SensorIf}, modes...)...)
	s.Stdout = w1
	// Downstream first, so that no stage writes to one not started.
	p.block = advStart(t, dir, "ps-block", b)
	p.judge = advStart(t, dir, "ps-judge", j)
	p.sniff = advStart(t, dir, "ps-sniff", s)
	for _, f := range []*os.File{r1, w1, r2, w2} {
		f.Close()
	}
	p.block.waitLog(t, "PortSentry ps-block is active", 10*time.Second)
	p.judge.waitLog(t, "portsentry judge is starting.", 10*time.Second)
	p.sniff.waitLog(t, "PortSentry is now active and listening.", 10*time.Second)
	return p
}

// waitNFT waits until the table's sets hold addr.
func (l *advSensorLab) waitNFT(t *testing.T, table string, addr netip.Addr, limit time.Duration) bool {
	t.Helper()
	for end := time.Now().Add(limit); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		if slices.Contains(advNFTAll(t, l.Sensor, table), addr.String()) {
			return true
		}
	}
	return false
}

// TestAdvSpoof: SYN scans forged (hping3 -a for IPv4, synflood with a
// one-address source for IPv6) from every address the guard protects reach
// ps-sniff -atcp | ps-judge | ps-block with the nftables action; none is
// blocked and ps-judge's log says why for each. A forged scan from an
// unprotected address, sent last, is blocked: the pipeline works, and it
// saw the forged ones before it. Then ps-block, fed block decisions for the
// same addresses directly, refuses every one with ok:false (defense in
// depth).
func TestAdvSpoof(t *testing.T) {
	l := newAdvLab(t)
	dir := t.TempDir()
	ignore := writeFile(t, dir, "ignore", "198.19.61.0/24\n2001:db8:61::/48\n")
	keys := map[string]string{
		"SCAN_TRIGGER":      "0",
		"IGNORE_FILE":       ignore,
		"BLOCKED_FILE":      filepath.Join(dir, "blocked"),
		"HISTORY_FILE":      filepath.Join(dir, "history"),
		"PROTECT_ADDRESSES": "198.19.62.0/24, 2001:db8:62::/48",
		"NFT_TABLE":         "advspoof",
	}
	conf := advConf(t, dir, "p.conf", keys)
	p := l.startPipeline(t, dir, conf, "-atcp", "-audp")

	cases := []struct {
		name string
		src  netip.Addr
		why  string
	}{
		{"own address", l.Sensor4, "one of this host's own addresses"},
		{"own IPv6 address", l.Sensor6, "one of this host's own addresses"},
		{"default gateway", l.Scanner4, "a default gateway of this host"},
		{"IPv6 default gateway", l.Scanner6, "a default gateway of this host"},
		{"name server", l.NS4, "a name server of this host"},
		{"IPv6 name server", l.NS6, "a name server of this host"},
		{"ignored network", netip.MustParseAddr("198.19.61.7"), "in the ignore file"},
		{"ignored IPv6 network", netip.MustParseAddr("2001:db8:61::7"), "in the ignore file"},
		{"PROTECT_ADDRESSES network", netip.MustParseAddr("198.19.62.7"), "protected by PROTECT_ADDRESSES"},
		{"PROTECT_ADDRESSES IPv6 network", netip.MustParseAddr("2001:db8:62::7"), "protected by PROTECT_ADDRESSES"},
	}
	forge := func(src netip.Addr, port int, udp bool) {
		if src.Is4() {
			// One SYN from the forged source to a tripwire port: one log line
			// each, well under ps-judge's limit of 20 a second.
			// hping3 exits 1 when nothing answers, as nothing does for a
			// forged source: what counts is that it sent them.
			if _, err := exec.LookPath("hping3"); err != nil {
				netlab.SkipOrFail(t, "no hping3: %v", err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			kind := "-S"
			if udp {
				kind = "--udp"
			}
			out, _ := exec.CommandContext(ctx, "ip", "netns", "exec", l.Scanner, "hping3", "-q", "-a", src.String(),
				kind, "-p", fmt.Sprint(port), "-c", "1", l.Sensor4.String()).CombinedOutput()
			if !strings.Contains(string(out), "1 packets transmitted") {
				t.Fatalf("hping3 -a %s: %s", src, out)
			}
			return
		}
		// hping3 has no IPv6: the flood generator with a one-address source.
		l.synflood(t, 5*time.Second, "-v6", "1", "-src6", src.String()+"/128", "-ports", fmt.Sprint(port), "-n", "1")
	}
	for i, c := range cases {
		forge(c.src, 100+i, false)
	}
	// The control: nothing protects 198.19.63.7; sent last, through the
	// same stages, so once it is blocked every forged packet was judged.
	control := netip.MustParseAddr("198.19.63.7")
	forge(control, 99, false)
	if !l.waitNFT(t, "advspoof", control, 10*time.Second) {
		t.Fatalf("the unprotected control %s was never blocked\njudge:\n%s\nblock:\n%s", control, p.judge.log(t), p.block.log(t))
	}
	// UDP, the easiest to forge, from the IPv4 sources (hping3 has no
	// IPv6), after a pause: ps-judge logs at most 20 lines a second.
	time.Sleep(1100 * time.Millisecond)
	for i, c := range cases {
		if c.src.Is4() {
			forge(c.src, 200+i, true)
		}
	}
	controlUDP := netip.MustParseAddr("198.19.63.8")
	forge(controlUDP, 199, true)
	if !l.waitNFT(t, "advspoof", controlUDP, 10*time.Second) {
		t.Fatalf("the unprotected UDP control %s was never blocked\njudge:\n%s\nblock:\n%s", controlUDP, p.judge.log(t), p.block.log(t))
	}
	if got, want := advNFTAll(t, l.Sensor, "advspoof"), []string{control.String(), controlUDP.String()}; !slices.Equal(got, want) {
		t.Errorf("nft sets hold %q, want only the controls %q", got, want)
	}
	jlog := p.judge.log(t)
	for _, c := range cases {
		protos := []string{"TCP"}
		if c.src.Is4() {
			protos = append(protos, "UDP")
		}
		for _, proto := range protos {
			want := fmt.Sprintf("Host: %s/%s to %s port: ", c.src, c.src, proto)
			found := false
			for _, line := range strings.Split(jlog, "\n") {
				if strings.Contains(line, want) && strings.HasSuffix(line, "ignored: "+c.why) {
					found = true
				}
			}
			if !found {
				t.Errorf("%s (%s, %s): ps-judge's log does not say %q\n%s", c.name, c.src, proto, "ignored: "+c.why, jlog)
			}
		}
	}

	// Defense in depth: ps-block alone, fed the decisions a compromised
	// or buggy judge could send, with a table of its own.
	keys["NFT_TABLE"] = "advspoofdirect"
	keys["BLOCKED_FILE"] = filepath.Join(dir, "blocked-direct")
	conf2 := advConf(t, dir, "direct.conf", keys)
	var in strings.Builder
	for _, c := range cases {
		in.WriteString(advDecision("block", c.src.String(), 21))
	}
	cmd := advCommand(l.Sensor, "ps-block", "-c", conf2)
	cmd.Stdin = strings.NewReader(in.String())
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("ps-block: %v\n%s", err, out)
	}
	results := strings.Split(strings.TrimSpace(string(out)), "\n")
	for _, c := range cases {
		want := fmt.Sprintf(`"target":"%s","mode":"atcp","action":"block","ok":false,"detail":"refused: %s is %s"`, c.src, c.src, c.why)
		if !slices.ContainsFunc(results, func(r string) bool { return strings.Contains(r, want) }) {
			t.Errorf("%s: ps-block did not refuse %s: no result with %s", c.name, c.src, want)
		}
	}
	if got := advNFTAll(t, l.Sensor, "advspoofdirect"); len(got) != 0 {
		t.Errorf("ps-block fed directly blocked %q", got)
	}
	if t.Failed() {
		t.Logf("results:\n%s", out)
	}
}
