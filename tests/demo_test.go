package tests

import (
	"os"
	"os/exec"
	"path/filepath"
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
