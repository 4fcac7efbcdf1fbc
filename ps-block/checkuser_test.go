package main

import (
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"testing"

	"github.com/portsentry/pipeline/shared/config"
)

// TestUserChecks asks the kernel, as user nobody, about record files in a
// directory nobody may write in, then in one it may not; and in one that
// does not exist yet under each.
func TestUserChecks(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to take another user's identity")
	}
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Skip(err)
	}
	top := t.TempDir()
	for d := top; d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil { // the test's own directories, for nobody to reach
			t.Fatal(err)
		}
	}
	open := filepath.Join(top, "open")
	if err := os.Mkdir(open, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o777); err != nil { // past the umask
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, dir string
		want      string // "" no error
	}{
		{"writable", open, ""},
		{"missing under writable", filepath.Join(open, "new", "dir"), ""},
		{"root's", top, "user nobody cannot write in " + top},
		{"missing under root's", filepath.Join(top, "new"), "user nobody cannot write in " + top},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := &config.Config{BlockedFile: filepath.Join(tc.dir, "blocked"), HistoryFile: filepath.Join(tc.dir, "history")}
			errs := userChecks(cfg, nobody)
			switch {
			case tc.want == "" && len(errs) > 0:
				t.Errorf("errors: %v", errs)
			case tc.want != "" && (len(errs) != 1 || !strings.Contains(errs[0].Error(), tc.want)):
				t.Errorf("errors %v, want one with %q", errs, tc.want)
			}
		})
	}
	// This goroutine's thread is still root's.
	if os.Geteuid() != 0 {
		t.Error("the process lost root")
	}
}

// TestUnitUser: the User= of the first unit file that exists, the shipped
// unit's included.
func TestUnitUser(t *testing.T) {
	dir := t.TempDir()
	bare := filepath.Join(dir, "bare.service")
	if err := os.WriteFile(bare, []byte("[Service]\nExecStart=/bin/true\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	shipped := "../contrib/systemd/ps-block.service"
	for _, tc := range []struct {
		files []string
		want  string
	}{
		{[]string{filepath.Join(dir, "none"), shipped}, "portsentry-block"},
		{[]string{bare, shipped}, ""},
		{[]string{filepath.Join(dir, "none")}, ""},
	} {
		if got := unitUser(tc.files); got != tc.want {
			t.Errorf("unitUser(%q) = %q, want %q", tc.files, got, tc.want)
		}
	}
}
