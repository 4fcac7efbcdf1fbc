package tests

// Checks of what contrib/ ships: the systemd units (systemd-analyze, and the
// split they describe run for real with the same users, groups and
// capabilities through setpriv), the example shell stage in a pipeline of
// the real programs, and the logrotate file.

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/portsentry/pipeline/shared/netlab"
)

const contribUnits = "../contrib/systemd"

// contribUnit is a unit file's settings: key -> values, in order.
type contribUnit map[string][]string

func contribReadUnit(t *testing.T, name string) contribUnit {
	t.Helper()
	f, err := os.Open(filepath.Join(contribUnits, name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	u := contribUnit{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l == "" || l[0] == '#' || l[0] == ';' || l[0] == '[' {
			continue
		}
		k, v, ok := strings.Cut(l, "=")
		if !ok {
			t.Fatalf("%s: not a setting: %q", name, l)
		}
		u[k] = append(u[k], v)
	}
	return u
}

// one is the single value of key; "" when unset.
func (u contribUnit) one(t *testing.T, key string) string {
	t.Helper()
	switch len(u[key]) {
	case 0:
		return ""
	case 1:
		return u[key][0]
	}
	t.Fatalf("%s set %d times", key, len(u[key]))
	return ""
}

// flag is the value of --name in the unit's ExecStart.
func (u contribUnit) flag(t *testing.T, name string) string {
	t.Helper()
	f := strings.Fields(u.one(t, "ExecStart"))
	for i, w := range f {
		if w == "--"+name && i+1 < len(f) {
			return f[i+1]
		}
	}
	return ""
}

var contribServices = []string{"ps-block.service", "ps-judge.service", "ps-sniff.service", "ps-listen.service"}

// TestContribUnitsWiring checks that the units fit together: the sockets one
// listens on are those the next connects to, each writer is in the group of
// the socket it writes to (the sockets are 0660) and not in the other, each
// stage holds exactly the capability it needs, the hardening is there, and
// every user and group is declared for systemd-sysusers.
func TestContribUnitsWiring(t *testing.T) {
	u := map[string]contribUnit{}
	for _, s := range contribServices {
		u[s] = contribReadUnit(t, s)
	}
	block, judge, sniff, listen := u["ps-block.service"], u["ps-judge.service"], u["ps-sniff.service"], u["ps-listen.service"]

	if got := block.flag(t, "listen"); got != "/run/portsentry/block.sock" {
		t.Errorf("ps-block listens on %q", got)
	}
	if judge.flag(t, "connect") != block.flag(t, "listen") {
		t.Errorf("ps-judge connects to %q, ps-block listens on %q", judge.flag(t, "connect"), block.flag(t, "listen"))
	}
	if got := judge.flag(t, "listen"); got != "/run/portsentry/judge.sock" {
		t.Errorf("ps-judge listens on %q", got)
	}
	for _, s := range []contribUnit{sniff, listen} {
		if s.flag(t, "connect") != judge.flag(t, "listen") {
			t.Errorf("a sensor connects to %q, ps-judge listens on %q", s.flag(t, "connect"), judge.flag(t, "listen"))
		}
	}
	if block.one(t, "RuntimeDirectory") != "portsentry" || block.one(t, "RuntimeDirectoryPreserve") != "yes" {
		t.Errorf("ps-block must own /run/portsentry and keep it across restarts")
	}
	if !strings.Contains(judge.one(t, "ReadWritePaths"), "/run/portsentry") {
		t.Errorf("ps-judge cannot create its socket: ReadWritePaths=%q", judge.one(t, "ReadWritePaths"))
	}

	// A socket's group is its creator's group (mode 0660).
	groups := func(x contribUnit) []string {
		return append([]string{x.one(t, "Group")}, strings.Fields(x.one(t, "SupplementaryGroups"))...)
	}
	has := func(list []string, g string) bool {
		for _, x := range list {
			if x == g {
				return true
			}
		}
		return false
	}
	blockSock, judgeSock := block.one(t, "Group"), judge.one(t, "Group")
	if !has(groups(judge), blockSock) {
		t.Errorf("ps-judge (groups %v) cannot write to block.sock (group %s)", groups(judge), blockSock)
	}
	for name, s := range map[string]contribUnit{"ps-sniff": sniff, "ps-listen": listen} {
		if !has(groups(s), judgeSock) {
			t.Errorf("%s (groups %v) cannot write to judge.sock (group %s)", name, groups(s), judgeSock)
		}
		if has(groups(s), blockSock) {
			t.Errorf("%s (groups %v) could write decisions straight to block.sock", name, groups(s))
		}
		if s.one(t, "User") == "root" || s.one(t, "User") == "" {
			t.Errorf("%s runs as root", name)
		}
	}

	caps := map[string]string{"ps-block.service": "CAP_NET_ADMIN", "ps-judge.service": "", "ps-sniff.service": "CAP_NET_RAW", "ps-listen.service": "CAP_NET_BIND_SERVICE"}
	families := map[string][]string{
		"ps-block.service":  {"AF_UNIX", "AF_NETLINK"},
		"ps-judge.service":  {"AF_UNIX", "AF_NETLINK"},
		"ps-sniff.service":  {"AF_UNIX", "AF_NETLINK", "AF_PACKET"},
		"ps-listen.service": {"AF_UNIX", "AF_NETLINK", "AF_INET", "AF_INET6"},
	}
	for _, s := range contribServices {
		x := u[s]
		if x.one(t, "User") == "" || x.one(t, "User") == "root" {
			t.Errorf("%s: runs as root", s)
		}
		if got := x.one(t, "CapabilityBoundingSet"); got != caps[s] {
			t.Errorf("%s: CapabilityBoundingSet=%q, want %q", s, got, caps[s])
		}
		if got := x.one(t, "AmbientCapabilities"); got != caps[s] {
			t.Errorf("%s: AmbientCapabilities=%q, want %q", s, got, caps[s])
		}
		if got := strings.Fields(x.one(t, "RestrictAddressFamilies")); strings.Join(got, " ") != strings.Join(families[s], " ") {
			t.Errorf("%s: RestrictAddressFamilies=%v, want %v", s, got, families[s])
		}
		for k, v := range map[string]string{
			"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
			"PrivateDevices": "yes", "ProtectKernelTunables": "yes", "ProtectKernelModules": "yes",
			"ProtectControlGroups": "yes", "RestrictNamespaces": "yes", "RestrictSUIDSGID": "yes",
			"MemoryDenyWriteExecute": "yes", "LockPersonality": "yes", "SystemCallArchitectures": "native",
			"Restart": "on-failure", "PrivateMounts": "yes",
		} {
			if got := x.one(t, k); got != v {
				t.Errorf("%s: %s=%q, want %q", s, k, got, v)
			}
		}
		if x.one(t, "MemoryMax") == "" {
			t.Errorf("%s: no MemoryMax", s)
		}
		if !has(x["SystemCallFilter"], "@system-service") {
			t.Errorf("%s: SystemCallFilter lacks @system-service", s)
		}
		if !strings.Contains(x.one(t, "ExecStart"), "-c /etc/portsentry/portsentry.conf") {
			t.Errorf("%s: ExecStart does not name the configuration", s)
		}
	}
	// Order: ps-block, then ps-judge, then the sensors.
	if !strings.Contains(judge.one(t, "After"), "ps-block.service") {
		t.Errorf("ps-judge is not ordered after ps-block")
	}
	for _, s := range []contribUnit{sniff, listen} {
		if !strings.Contains(s.one(t, "After"), "ps-judge.service") {
			t.Errorf("a sensor is not ordered after ps-judge")
		}
	}

	// Every user and group the units name is declared for systemd-sysusers.
	sysusers, err := os.ReadFile(filepath.Join(contribUnits, "portsentry.sysusers"))
	if err != nil {
		t.Fatal(err)
	}
	declared := map[string]bool{}
	for _, l := range strings.Split(string(sysusers), "\n") {
		f := strings.Fields(l)
		if len(f) >= 2 && (f[0] == "u" || f[0] == "g") {
			declared[f[1]] = true // a u line makes the group of the same name too
		}
	}
	for _, s := range contribServices {
		x := u[s]
		for _, name := range append([]string{x.one(t, "User")}, groups(x)...) {
			if !declared[name] {
				t.Errorf("%s: %q is not declared in portsentry.sysusers", s, name)
			}
		}
	}
}

// contribVerify runs systemd-analyze verify on the units in units (every
// .service and .target) with the programs' directory sbin rewritten to
// programs, and fails on any complaint. It returns the directory of the
// rewritten units.
func contribVerify(t *testing.T, units, sbin, programs string) string {
	t.Helper()
	dir := t.TempDir()
	files, _ := filepath.Glob(filepath.Join(units, "*.service"))
	targets, _ := filepath.Glob(filepath.Join(units, "*.target"))
	if len(files) == 0 || len(targets) == 0 {
		t.Fatalf("no units in %s", units)
	}
	var names []string
	for _, f := range append(files, targets...) {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		b = bytes.ReplaceAll(b, []byte(sbin), []byte(programs))
		name := filepath.Join(dir, filepath.Base(f))
		if err := os.WriteFile(name, b, 0o644); err != nil {
			t.Fatal(err)
		}
		names = append(names, name)
	}
	cmd := exec.Command("systemd-analyze", append([]string{"verify", "--man=no"}, names...)...)
	out, err := cmd.CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	return dir
}

// TestContribUnitsVerify runs systemd-analyze verify on the units (with the
// programs' paths pointed at the freshly built ones) and checks that
// systemd's own exposure score stays low.
func TestContribUnitsVerify(t *testing.T) {
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		netlab.SkipOrFail(t, "no systemd-analyze (Debian package systemd): %v", err)
	}
	dir := contribVerify(t, contribUnits, "/usr/local/sbin/", binDir+"/")
	exposure := regexp.MustCompile(`Overall exposure level for \S+: ([0-9.]+)`)
	for _, s := range contribServices {
		out, err := exec.Command("systemd-analyze", "security", "--offline=yes", filepath.Join(dir, s)).CombinedOutput()
		if err != nil {
			t.Fatalf("systemd-analyze security %s: %v\n%s", s, err, out)
		}
		m := exposure.FindSubmatch(out)
		if m == nil {
			t.Fatalf("systemd-analyze security %s: no overall level\n%s", s, out)
		}
		if v, _ := strconv.ParseFloat(string(m[1]), 64); v > 2.0 {
			t.Errorf("%s: exposure level %.1f, want at most 2.0\n%s", s, v, out)
		} else {
			t.Logf("%s: exposure level %.1f", s, v)
		}
	}
}

// contribStage is a program started in the background, its output collected.
type contribStage struct {
	name string
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  bytes.Buffer // stdout
	err  bytes.Buffer // stderr
	done chan struct{}
}

type contribLocked struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w contribLocked) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func contribStart(t *testing.T, name string, argv ...string) *contribStage {
	t.Helper()
	s := &contribStage{name: name, done: make(chan struct{})}
	s.cmd = exec.Command(argv[0], argv[1:]...)
	s.cmd.Stdout = contribLocked{&s.mu, &s.out}
	s.cmd.Stderr = contribLocked{&s.mu, &s.err}
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	go func() { _ = s.cmd.Wait(); close(s.done) }()
	t.Cleanup(func() {
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.done:
		case <-time.After(3 * time.Second):
			_ = s.cmd.Process.Kill()
			<-s.done
		}
		if t.Failed() {
			t.Logf("%s stderr:\n%s", name, s.stderr())
		}
	})
	return s
}

func (s *contribStage) stdout() string { s.mu.Lock(); defer s.mu.Unlock(); return s.out.String() }
func (s *contribStage) stderr() string { s.mu.Lock(); defer s.mu.Unlock(); return s.err.String() }

func contribWait(t *testing.T, limit time.Duration, what string, ok func() bool) {
	t.Helper()
	end := time.Now().Add(limit)
	for !ok() {
		if time.Now().After(end) {
			t.Fatalf("timed out after %v waiting for %s", limit, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestContribSplitPrivileges runs the split exactly as the units describe it,
// in a network namespace: each stage under its own uid and groups with only
// the capability its unit grants (setpriv does what systemd's User=, Group=,
// SupplementaryGroups=, AmbientCapabilities=, CapabilityBoundingSet= and
// NoNewPrivileges= do), joined by Unix sockets in a sticky run directory.
// A real SYN from the scanner namespace must end in an nftables block and a
// HISTORY_FILE line that fail2ban's filter reads; a sensor must not be able
// to write to ps-block's socket, nor a stranger to ps-judge's.
func TestContribSplitPrivileges(t *testing.T) {
	lab := netlab.New(t)
	for _, tool := range []string{"setpriv", "nft"} {
		if _, err := exec.LookPath(tool); err != nil {
			netlab.SkipOrFail(t, "no %s: %v", tool, err)
		}
	}
	// Numeric ids stand for the users and groups of portsentry.sysusers.
	const (
		uidBlock, uidJudge, uidSensor = 64301, 64302, 64303
		gidHits, gidDecisions         = 64311, 64312
		gidSensor, uidStranger        = 64313, 64304
	)
	top, err := os.MkdirTemp("", "ps-contrib-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(top) })
	run, state := filepath.Join(top, "run"), filepath.Join(top, "state")
	for _, d := range []struct {
		path     string
		mode     os.FileMode
		uid, gid int
	}{{top, 0o755, 0, 0}, {run, 0o1771, uidBlock, gidDecisions}, {state, 0o755, uidBlock, gidDecisions}} {
		if err := os.MkdirAll(d.path, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(d.path, d.uid, d.gid); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(d.path, d.mode); err != nil { // Mkdir's mode is masked by umask; sticky needs Chmod
			t.Fatal(err)
		}
	}
	table := fmt.Sprintf("pscontrib%d", os.Getpid())
	conf := writeFile(t, top, "portsentry.conf", fmt.Sprintf(`IGNORE_FILE="%[1]s/portsentry.ignore"
BLOCKED_FILE="%[2]s/portsentry.blocked"
HISTORY_FILE="%[2]s/portsentry.history"
SCAN_TRIGGER="0"
BLOCK_DURATION="10m"
NFT_TABLE="%[3]s"
`, top, state, table))
	writeFile(t, top, "portsentry.ignore", "")
	judgeSock, blockSock := filepath.Join(run, "judge.sock"), filepath.Join(run, "block.sock")

	as := func(uid, gid int, groups []int, capability string, argv ...string) []string {
		gs := make([]string, len(groups))
		for i, g := range groups {
			gs[i] = strconv.Itoa(g)
		}
		caps := "-all"
		if capability != "" {
			caps += ",+" + capability
		}
		a := []string{"ip", "netns", "exec", lab.Sensor, "setpriv",
			"--reuid", strconv.Itoa(uid), "--regid", strconv.Itoa(gid)}
		if len(gs) > 0 {
			a = append(a, "--groups", strings.Join(gs, ","))
		} else {
			a = append(a, "--clear-groups")
		}
		a = append(a, "--inh-caps", caps, "--ambient-caps", caps, "--bounding-set", caps, "--no-new-privs", "--")
		return append(a, argv...)
	}

	block := contribStart(t, "ps-block", as(uidBlock, gidDecisions, nil, "net_admin",
		bin("ps-block"), "-c", conf, "--listen", blockSock)...)
	contribWait(t, 10*time.Second, "ps-block to start", func() bool { return strings.Contains(block.stderr(), "ps-block is active") })
	contribStart(t, "ps-judge", as(uidJudge, gidHits, []int{gidDecisions}, "",
		bin("ps-judge"), "-c", conf, "--listen", judgeSock, "--connect", blockSock)...)
	contribWait(t, 10*time.Second, "judge.sock", func() bool { _, err := os.Stat(judgeSock); return err == nil })
	sniff := contribStart(t, "ps-sniff", as(uidSensor, gidSensor, []int{gidHits}, "net_raw",
		bin("ps-sniff"), "-atcp", "-c", conf, "--connect", judgeSock)...)
	contribWait(t, 10*time.Second, "ps-sniff to start", func() bool {
		return strings.Contains(sniff.stderr(), "now active and listening")
	})
	if !strings.Contains(sniff.stderr(), fmt.Sprintf("running as uid %d, not root", uidSensor)) {
		t.Errorf("ps-sniff does not report running unprivileged:\n%s", sniff.stderr())
	}

	// The sockets: 0660, owned by their listener, in the group of their writers.
	for _, s := range []struct {
		path     string
		uid, gid uint32
	}{{blockSock, uidBlock, gidDecisions}, {judgeSock, uidJudge, gidHits}} {
		fi, err := os.Lstat(s.path)
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		if fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o660 || st.Uid != s.uid || st.Gid != s.gid {
			t.Errorf("%s: mode %v owner %d:%d, want socket 0660 %d:%d", s.path, fi.Mode(), st.Uid, st.Gid, s.uid, s.gid)
		}
	}

	// A real probe: a TCP connection attempt from the scanner to a port
	// nothing listens on.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = exec.CommandContext(ctx, "ip", "netns", "exec", lab.Scanner, "bash", "-c",
		fmt.Sprintf("exec 3<>/dev/tcp/%s/7", lab.Sensor4)).Run()
	scanner := lab.Scanner4.String()
	contribWait(t, 10*time.Second, "ps-block's nft result", func() bool {
		return strings.Contains(block.stdout(), `"target":"`+scanner+`","mode":"atcp","action":"nft","ok":true`)
	})
	out, err := exec.Command("ip", "netns", "exec", lab.Sensor, "nft", "list", "set", "inet", table, "portsentry4").CombinedOutput()
	if err != nil || !strings.Contains(string(out), scanner) {
		t.Errorf("nft set does not hold %s: %v\n%s", scanner, err, out)
	}
	history := filepath.Join(state, "portsentry.history")
	if fi, err := os.Stat(history); err != nil {
		t.Errorf("no HISTORY_FILE: %v", err)
	} else if st := fi.Sys().(*syscall.Stat_t); st.Uid != uidBlock {
		t.Errorf("HISTORY_FILE owned by uid %d, want ps-block's %d", st.Uid, uidBlock)
	}
	const filter = "/etc/fail2ban/filter.d/portsentry.conf"
	if _, err := exec.LookPath("fail2ban-regex"); err == nil {
		if _, err := os.Stat(filter); err == nil {
			out, err := exec.Command("fail2ban-regex", "-o", "ip", history, filter).CombinedOutput()
			if err != nil || strings.TrimSpace(string(out)) != scanner {
				t.Errorf("fail2ban-regex on HISTORY_FILE: %v\n%s", err, out)
			}
		}
	}

	// Writers without the socket's group are refused by the kernel.
	hit := hitLine("198.18.0.99", 25, time.Now())
	for _, w := range []struct {
		name     string
		uid, gid int
		groups   []int
		sock     string
	}{
		{"a sensor writing to block.sock", uidSensor, gidSensor, []int{gidHits}, blockSock},
		{"a stranger writing to judge.sock", uidStranger, uidStranger, nil, judgeSock},
	} {
		argv := as(w.uid, w.gid, w.groups, "", bin("ps-judge"), "-c", conf, "--connect", w.sock)
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Stdin = strings.NewReader(hit)
		cmd.WaitDelay = time.Second
		out, _ := cmd.CombinedOutput()
		if !strings.Contains(string(out), "permission denied") {
			t.Errorf("%s was not refused:\n%s", w.name, out)
		}
	}
	if strings.Contains(block.stdout(), "198.18.0.99") {
		t.Errorf("a refused writer's decision reached ps-block:\n%s", block.stdout())
	}
}

// TestContribQuietHoursStage runs the example shell stage between the real
// ps-judge and ps-block: decisions pass, those in the quiet window become
// alerts, hostile lines are reported and never reach ps-block, and nothing
// in a line is ever run by the shell.
func TestContribQuietHoursStage(t *testing.T) {
	if _, err := exec.LookPath("jq"); err != nil {
		netlab.SkipOrFail(t, "no jq (Debian package jq): %v", err)
	}
	script, err := filepath.Abs("../contrib/examples/ps-quiet-hours.sh")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	conf := writeFile(t, dir, "p.conf", fmt.Sprintf("IGNORE_FILE=\"%[1]s/ignore\"\nBLOCKED_FILE=\"%[1]s/blocked\"\nHISTORY_FILE=\"%[1]s/history\"\nSCAN_TRIGGER=\"0\"\n", dir))
	writeFile(t, dir, "ignore", "")
	day := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	night := time.Date(2026, 11, 24, 23, 30, 0, 0, time.UTC)
	hit6 := strings.NewReplacer(`"198.18.0.2"`, `"2001:db8::2"`).Replace(hitLine("2001:db8:7::3", 25, day.Add(time.Minute)))
	writeFile(t, dir, "hits.jsonl", hitLine("198.18.7.1", 21, day)+hit6+hitLine("198.18.7.2", 23, night))
	pwned := filepath.Join(dir, "pwned")
	hostile := strings.Join([]string{
		`not json`,
		`{"v":1,"kind":"block","time":"2026-11-24T12:00:00Z","target":"$(touch ` + pwned + `)","mode":"atcp","port":1}`,
		`{"v":1,"kind":"block","time":"2026-11-24T12:00:00Z","target":"198.18.7.9;touch ` + pwned + `","mode":"atcp","port":1}`,
		`{"v":1,"kind":"block","time":"2026-11-24T12:00:00Z","target":"198.18.7.10","mode":"atcp\ttouch","port":1}`,
		`{"v":1,"kind":"block","time":"` + "`touch " + pwned + "`" + `","target":"198.18.7.11","mode":"atcp","port":1}`,
		`{"v":2,"kind":"block","time":"2026-11-24T12:00:00Z","target":"198.18.7.12","mode":"atcp"}`,
		`{"v":1,"kind":"hit","time":"2026-11-24T12:00:00Z","target":"198.18.7.13","mode":"atcp"}`,
		`{"v":1,"kind":"block","time":"2026-11-24T12:00:00Z","target":"198.18.7.14","mode":"atcp","port":70000}`,
		`{"v":1,"kind":"block","time":"2026-11-24T12:00:00Z","target":"198.18.7.15","mode":"atcp","port":"22"}`,
		"{\"v\":1,\"kind\":\"block\",\"time\":\"2026-11-24T12:00:00Z\",\"target\":\"198.18.7.16\",\"mode\":\"atcp\",\"x\":\"\x00\"}",
		`{"v":1,"kind":"block","time":"2026-11-24T12:00:00Z","target":"198.18.7.17","mode":"atcp","x":"` + strings.Repeat("a", 5000) + `"}`,
		"{\"v\":1,\"kind\":\"block\",\"time\":\"2026-11-24T12:00:00Z\",\"target\":\"198.18.7.18\",\"mode\":\"atcp\",\"x\":\"\xff\"}",
		`[1,2,3]`,
		``,
	}, "\n") + "\n"
	writeFile(t, dir, "hostile.jsonl", hostile)
	logfile := filepath.Join(dir, "decisions.log")
	pipeline := fmt.Sprintf(`set -o pipefail; { %[1]q -c %[2]q < %[3]q/hits.jsonl; cat %[3]q/hostile.jsonl; } | %[4]q -q 22:00-06:00 -l %[5]q 2>%[3]q/stage.err | %[6]q -c %[2]q --dry-run 2>%[3]q/block.err`,
		bin("ps-judge"), conf, dir, script, logfile, bin("ps-block"))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", pipeline)
	cmd.Dir = dir
	out, err := cmd.Output()
	stageErr, _ := os.ReadFile(filepath.Join(dir, "stage.err"))
	blockErr, _ := os.ReadFile(filepath.Join(dir, "block.err"))
	if err != nil {
		t.Fatalf("pipeline: %v\nstage:\n%s\nps-block:\n%s", err, stageErr, blockErr)
	}
	results := string(out)
	for _, want := range []string{`"target":"198.18.7.1","mode":"atcp","action":"nft","ok":true`, `"target":"2001:db8:7::3","mode":"atcp","action":"nft","ok":true`} {
		if !strings.Contains(results, want) {
			t.Errorf("no result %s:\n%s", want, results)
		}
	}
	if strings.Contains(results, "198.18.7.2\"") {
		t.Errorf("the night-time decision was carried out despite the quiet hours:\n%s", results)
	}
	if !strings.Contains(string(blockErr), "Host 198.18.7.2 probed") || !strings.Contains(string(blockErr), "alert only") {
		t.Errorf("ps-block did not log the downgraded decision as an alert:\n%s", blockErr)
	}
	for i := 9; i <= 18; i++ {
		if strings.Contains(results, fmt.Sprintf("198.18.7.%d\"", i)) {
			t.Errorf("a hostile line for 198.18.7.%d reached an action:\n%s", i, results)
		}
	}
	if _, err := os.Stat(pwned); err == nil {
		t.Errorf("a hostile line ran a command")
	}
	// Every hostile line is reported with its number; ps-block saw none.
	refused := regexp.MustCompile(`(?m)^ps-quiet-hours: line \d+: `).FindAllString(string(stageErr), -1)
	if len(refused) != 14 {
		t.Errorf("%d lines refused, want 14:\n%s", len(refused), stageErr)
	}
	if regexp.MustCompile(`line \d+`).Match(blockErr) {
		t.Errorf("ps-block complained about a line the stage passed:\n%s", blockErr)
	}
	log, _ := os.ReadFile(logfile)
	for _, want := range []string{"block 198.18.7.1 mode atcp port 21 hits 1", "alert 198.18.7.2 mode atcp port 23 hits 1 (downgraded: quiet hours)"} {
		if !strings.Contains(string(log), want) {
			t.Errorf("decision log lacks %q:\n%s", want, log)
		}
	}
	if strings.Count(string(log), "\n") != 3 {
		t.Errorf("decision log has other lines than the 3 decisions:\n%s", log)
	}
}

// TestContribLogrotate runs logrotate with contrib's file on a HISTORY_FILE
// in a temporary directory: the file is renamed away and a new one made with
// the same mode, which ps-block then appends to.
func TestContribLogrotate(t *testing.T) {
	if _, err := exec.LookPath("logrotate"); err != nil {
		netlab.SkipOrFail(t, "no logrotate (Debian package logrotate): %v", err)
	}
	if os.Geteuid() != 0 {
		netlab.SkipOrFail(t, "logrotate's checks of owners want root")
	}
	dir := t.TempDir()
	b, err := os.ReadFile("../contrib/logrotate/portsentry")
	if err != nil {
		t.Fatal(err)
	}
	b = bytes.ReplaceAll(b, []byte("/var/lib/portsentry/"), []byte(dir+"/"))
	b = bytes.ReplaceAll(b, []byte("/var/log/"), []byte(dir+"/"))
	conf := filepath.Join(dir, "logrotate.conf")
	if err := os.WriteFile(conf, b, 0o644); err != nil {
		t.Fatal(err)
	}
	history := filepath.Join(dir, "portsentry.history")
	line := "1795539656 - 11/24/2026 17:00:56 Host: 198.18.0.1/198.18.0.1 Port: 199 TCP Blocked\n"
	if err := os.WriteFile(history, []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("logrotate", "-f", "-s", filepath.Join(dir, "state"), conf).CombinedOutput()
	if err != nil {
		t.Fatalf("logrotate: %v\n%s", err, out)
	}
	old, err := os.ReadFile(history + ".1")
	if err != nil || string(old) != line {
		t.Fatalf("rotated file: %v %q", err, old)
	}
	fi, err := os.Stat(history)
	if err != nil || fi.Size() != 0 || fi.Mode().Perm() != 0o600 {
		t.Fatalf("new HISTORY_FILE: %v %v", err, fi)
	}
}

// TestContribHostsDenyPatternFile checks the hosts.deny set-up the README
// gives for the systemd units: ps-block edits a pattern file it owns
// (KILL_HOSTS_DENY="$TARGET$" in /var/lib/portsentry/hosts.deny) and
// /etc/hosts.deny names that file once. TCP wrappers' own tcpdmatch must
// then deny the blocked hosts, IPv4 and IPv6, and no other.
func TestContribHostsDenyPatternFile(t *testing.T) {
	if _, err := exec.LookPath("tcpdmatch"); err != nil {
		netlab.SkipOrFail(t, "no tcpdmatch (Debian package tcpd): %v", err)
	}
	dir := t.TempDir()
	patterns := writeFile(t, dir, "hosts.deny.patterns", "")
	conf := writeFile(t, dir, "p.conf", fmt.Sprintf(`NFT_BLOCK="0"
KILL_HOSTS_DENY="$TARGET$"
HOSTS_DENY_FILE="%[2]s"
IGNORE_FILE="%[1]s/ignore"
BLOCKED_FILE="%[1]s/blocked"
HISTORY_FILE="%[1]s/history"
`, dir, patterns))
	writeFile(t, dir, "ignore", "")
	decisions := `{"v":1,"kind":"block","time":"2026-11-24T12:00:00Z","target":"198.18.7.1","mode":"atcp","port":21,"hits":1}
{"v":1,"kind":"block","time":"2026-11-24T12:00:01Z","target":"2001:db8:7::1","mode":"atcp","port":21,"hits":1}
`
	cmd := exec.Command(bin("ps-block"), "-c", conf)
	cmd.Stdin = strings.NewReader(decisions)
	out, err := cmd.CombinedOutput()
	if err != nil || strings.Count(string(out), `"action":"hosts.deny","ok":true`) != 2 {
		t.Fatalf("ps-block: %v\n%s", err, out)
	}
	// tcpdmatch -d reads hosts.allow and hosts.deny in its working directory.
	writeFile(t, dir, "hosts.allow", "")
	writeFile(t, dir, "hosts.deny", "ALL: "+patterns+"\n")
	for addr, want := range map[string]string{"198.18.7.1": "denied", "2001:db8:7::1": "denied", "198.18.7.2": "granted", "2001:db8:7::2": "granted"} {
		c := exec.Command("tcpdmatch", "-d", "sshd", addr)
		c.Dir = dir
		out, err := c.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "access:   "+want) {
			t.Errorf("tcpdmatch sshd %s: want %s: %v\n%s", addr, want, err, out)
		}
	}
}
