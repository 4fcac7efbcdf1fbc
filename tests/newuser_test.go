package tests

// What a new user meets first: make demo's report under Debian's awk, make
// with Debian's Go, a Debian 1.2 configuration under the shipped unit.

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/portsentry/pipeline/shared/netlab"
)

// TestDemoReport runs the report of make demo (tests/demo-report.sh) on
// the scans of a real demo run, saved in testdata/demo, with awk being
// mawk, the awk of a fresh Debian: its table and what the scanner learnt
// must be what testdata/demo/report.golden says (the first IPv4 scan with
// the pipeline ends in nmap's host timeout, the case that printed an empty
// table under mawk before).
func TestDemoReport(t *testing.T) {
	mawk, err := exec.LookPath("mawk")
	if err != nil {
		netlab.SkipOrFail(t, "no mawk (apt-get install mawk): %v", err)
	}
	// A directory whose awk is mawk, before everything else on PATH.
	awkDir := t.TempDir()
	if err := os.Symlink(mawk, filepath.Join(awkDir, "awk")); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sh", "demo-report.sh", "testdata/demo")
	cmd.Env = append(os.Environ(), "PATH="+awkDir+string(os.PathListSeparator)+os.Getenv("PATH"))
	got, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("demo-report.sh: %v\n%s", err, got)
	}
	want, err := os.ReadFile("testdata/demo/report.golden")
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Errorf("demo-report.sh under mawk:\n%s\nwant (testdata/demo/report.golden):\n%s", got, want)
	}
}

// TestDebianHostsDenyReadOnlyEtc: Debian's 1.2 configuration edits
// /etc/hosts.deny, which the shipped ps-block unit makes read-only
// (ProtectSystem=strict); the README's migration section says ps-block then
// refuses to start, naming the key. A read-only bind mount of /etc, in a
// mount namespace of its own, stands in for the unit's.
func TestDebianHostsDenyReadOnlyEtc(t *testing.T) {
	if os.Getuid() != 0 {
		netlab.SkipOrFail(t, "needs root for a mount namespace")
	}
	if _, err := exec.LookPath("unshare"); err != nil {
		netlab.SkipOrFail(t, "no unshare: %v", err)
	}
	dir := t.TempDir()
	conf := filepath.Join(dir, "portsentry.conf")
	text := "BLOCKED_FILE=\"" + dir + "/portsentry.blocked\"\nHISTORY_FILE=\"" + dir + "/portsentry.history\"\n" +
		"IGNORE_FILE=\"" + dir + "/ignore\"\nKILL_HOSTS_DENY=\"ALL: $TARGET$ : DENY\"\n"
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "ignore"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("unshare", "-m", "sh", "-c", `mount --bind /etc /etc && mount -o remount,bind,ro /etc && exec "$0" -c "$1" --dry-run </dev/null`, bin("ps-block"), conf)
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("ps-block started with /etc read-only:\n%s", out)
	}
	want := "line 4: KILL_HOSTS_DENY: hostsdeny: open /etc/hosts.deny: read-only file system"
	if !strings.Contains(string(out), want) {
		t.Errorf("no %q in:\n%s", want, out)
	}
}

// TestMakeOldGo: make with Debian 12's Go (1.19, which cannot read go.mod)
// says what is wrong and where the README says how to get Go, instead of
// Go 1.19's error about go.mod. A script answering `go env GOVERSION` as
// that Go stands in for it.
func TestMakeOldGo(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		netlab.SkipOrFail(t, "no make: %v", err)
	}
	fake := filepath.Join(t.TempDir(), "go")
	script := "#!/bin/sh\n[ \"$1 $2\" = \"env GOVERSION\" ] && echo go1.19.8 && exit 0\necho \"fake go: $*\" >&2; exit 1\n"
	if err := os.WriteFile(fake, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("make", "-s", "-C", "..", "bin/ps-judge", "GO="+fake)
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("make with Go 1.19 succeeded:\n%s", out)
	}
	want := "make: Go 1.19.8 is too old: this project needs Go 1.26 (go.mod), which Go 1.21 or later fetches by itself; README.md, Quick start, says how to get it"
	if !strings.Contains(string(out), want) || strings.Contains(string(out), "fake go:") {
		t.Errorf("make's output:\n%s\nwant %q and no build attempted", out, want)
	}
}
