package blockfile

import (
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// The failregex of fail2ban's stock filter.d/portsentry.conf, with <HOST>
// as fail2ban expands it for an address.
var fail2ban = regexp.MustCompile(`\/(?P<host>[0-9A-Fa-f.:]+) Port\: [0-9]+ (TCP|UDP) Blocked$`)

var zone = time.FixedZone("CET", 3600)

func sample() []Line {
	return []Line{
		{Time: time.Date(2026, 11, 24, 14, 29, 45, 0, zone), Addr: netip.MustParseAddr("198.18.0.1"), Port: 21, Proto: "TCP"},
		{Time: time.Date(2026, 1, 2, 3, 4, 5, 0, zone), Name: "scanner.example.net", Addr: netip.MustParseAddr("2001:db8::1"), Port: 0, Proto: "UDP"},
		// A PTR answer is the attacker's: anything unsafe falls back to the address.
		{Time: time.Date(2026, 1, 2, 3, 4, 5, 0, zone), Name: "evil/1.2.3.4 Port: 1 TCP Blocked\nx", Addr: netip.MustParseAddr("198.18.0.2"), Port: 65535, Proto: "TCP"},
	}
}

func TestGoldenAndFail2ban(t *testing.T) {
	p := filepath.Join(t.TempDir(), "portsentry.blocked.atcp")
	if err := Append(p, sample()[:1]); err != nil {
		t.Fatal(err)
	}
	if err := Append(p, sample()[1:]); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	gp := filepath.Join("testdata", "blocked.golden")
	if *update {
		if err := os.WriteFile(gp, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(gp)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Errorf("file:\n%s\nwant:\n%s", got, want)
	}
	lines := strings.Split(strings.TrimSuffix(string(got), "\n"), "\n")
	for i, l := range lines {
		m := fail2ban.FindStringSubmatch(l)
		if m == nil || m[1] != sample()[i].Addr.String() {
			t.Errorf("fail2ban's regex does not find %s in %q", sample()[i].Addr, l)
		}
	}
	if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("mode of a new blocked file: %v %v", fi.Mode(), err)
	}
}

// fail2ban-regex, where installed, is the final word on the stock filter.
func TestFail2banRegexTool(t *testing.T) {
	const filter = "/etc/fail2ban/filter.d/portsentry.conf"
	tool, err := exec.LookPath("fail2ban-regex")
	if err != nil {
		t.Skip("fail2ban-regex not installed")
	}
	if _, err := os.Stat(filter); err != nil {
		t.Skipf("%s: %v", filter, err)
	}
	p := filepath.Join(t.TempDir(), "history")
	if err := Append(p, sample()); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(tool, p, filter).CombinedOutput()
	if err != nil {
		t.Fatalf("fail2ban-regex: %v\n%s", err, out)
	}
	if !regexp.MustCompile(`Lines: 3 lines, 0 ignored, 3 matched, 0 missed`).Match(out) {
		t.Errorf("fail2ban-regex did not match every line:\n%s", out)
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		line    string
		want    Line
		wantErr bool
	}{
		{"1795613385 - 11/24/2026 14:29:45 Host: 198.18.0.1/198.18.0.1 Port: 21 TCP Blocked",
			Line{Time: time.Unix(1795613385, 0), Name: "198.18.0.1", Addr: netip.MustParseAddr("198.18.0.1"), Port: 21, Proto: "TCP"}, false},
		{"1 - 01/02/2026 03:04:05 Host: h.example/2001:db8::1 Port: 0 UDP Blocked",
			Line{Time: time.Unix(1, 0), Name: "h.example", Addr: netip.MustParseAddr("2001:db8::1"), Port: 0, Proto: "UDP"}, false},
		{"1 - 01/02/2026 03:04:05 Host: h/not-an-ip Port: 0 UDP Blocked", Line{}, true},
		{"1 - 01/02/2026 03:04:05 Host: h/198.18.0.1 Port: 70000 UDP Blocked", Line{}, true},
		{"1 - 01/02/2026 03:04:05 Host: h/198.18.0.1 Port: 1 ICMP Blocked", Line{}, true},
		{"garbage", Line{}, true},
	}
	for _, tc := range tests {
		got, err := Parse(tc.line)
		if (err != nil) != tc.wantErr {
			t.Errorf("Parse(%q) err %v", tc.line, err)
			continue
		}
		if !tc.wantErr && (got.Addr != tc.want.Addr || got.Name != tc.want.Name || got.Port != tc.want.Port ||
			got.Proto != tc.want.Proto || !got.Time.Equal(tc.want.Time)) {
			t.Errorf("Parse(%q) = %+v, want %+v", tc.line, got, tc.want)
		}
	}
}

type badLine struct {
	N   int
	Err error
}

// load reads path with Scan.
func load(path string) ([]Line, []badLine, error) {
	var (
		lines []Line
		bad   []badLine
	)
	err := Scan(path, func(l Line) { lines = append(lines, l) }, func(n int, err error) { bad = append(bad, badLine{n, err}) })
	return lines, bad, err
}

func TestScanRemove(t *testing.T) {
	p := filepath.Join(t.TempDir(), "blocked.tcp")
	if lines, bad, err := load(p); err != nil || len(lines)+len(bad) != 0 {
		t.Fatalf("missing file: %v %v %v", lines, bad, err)
	}
	if err := Append(p, sample()); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("torn line\n\n")
	f.Close()
	lines, bad, err := load(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(lines) != 3 || len(bad) != 1 || bad[0].N != 4 {
		t.Fatalf("Scan: %d lines, bad %v", len(lines), bad)
	}
	n, err := Remove(p, netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("198.18.0.9"))
	if err != nil || n != 1 {
		t.Fatalf("Remove = %d, %v", n, err)
	}
	lines, _, _ = load(p)
	if len(lines) != 2 || lines[0].Addr != netip.MustParseAddr("2001:db8::1") {
		t.Errorf("after Remove: %+v", lines)
	}
	if n, err := Remove(filepath.Join(t.TempDir(), "none"), netip.MustParseAddr("198.18.0.1")); n != 0 || err != nil {
		t.Errorf("Remove on missing file: %d %v", n, err)
	}
}

func TestNoSymlink(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "real")
	os.WriteFile(real, nil, 0o600)
	link := filepath.Join(dir, "blocked.tcp")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	if err := Append(link, sample()); err == nil {
		t.Error("Append followed a symlink")
	}
	if _, _, err := load(link); err == nil {
		t.Error("Scan followed a symlink")
	}
}

// TestLineFormat: the line is 1.2's printf format, byte for byte, for
// times across the years, names safe and unsafe, IPv4 and IPv6.
func TestLineFormat(t *testing.T) {
	loc := time.FixedZone("X", -5*3600)
	for _, tc := range []Line{
		{Time: time.Unix(1763994585, 0), Name: "scanner.example", Addr: netip.MustParseAddr("198.18.0.7"), Port: 21, Proto: "TCP"},
		{Time: time.Unix(0, 0).In(loc), Name: "", Addr: netip.MustParseAddr("2001:db8::1"), Port: 0, Proto: "UDP"},
		{Time: time.Date(9, 1, 2, 3, 4, 5, 0, time.UTC), Name: "a b/c", Addr: netip.MustParseAddr("198.19.255.255"), Port: 65535, Proto: "TCP"},
		{Time: time.Date(-12, 12, 31, 23, 59, 59, 0, time.UTC), Name: "x", Addr: netip.MustParseAddr("::ffff:198.18.0.1"), Port: 80, Proto: "UDP"},
	} {
		name := tc.Name
		if !safeName.MatchString(name) {
			name = tc.Addr.String()
		}
		tm := tc.Time
		want := fmt.Sprintf("%d - %02d/%02d/%04d %02d:%02d:%02d Host: %s/%s Port: %d %s Blocked",
			tm.Unix(), tm.Month(), tm.Day(), tm.Year(), tm.Hour(), tm.Minute(), tm.Second(), name, tc.Addr, tc.Port, tc.Proto)
		if got := tc.String(); got != want {
			t.Errorf("Line %+v:\n got %q\nwant %q", tc, got, want)
		}
	}
}
