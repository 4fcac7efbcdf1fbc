package tests

// Checks of what the project installs: the manual pages (rendered by groff
// and man with every warning on), `make install` and `make uninstall` into
// a staging directory, and the Debian package installed into a scratch root.

import (
	"bytes"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/portsentry/pipeline/shared/config"
	"github.com/portsentry/pipeline/shared/netlab"
)

var packagePrograms = []string{"ps-listen", "ps-sniff", "ps-judge", "ps-block"}

func packageNeed(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			netlab.SkipOrFail(t, "no %s (tests/install-deps.sh installs it): %v", tool, err)
		}
	}
}

// packageRender renders a manual page with groff and with man, every
// warning on, and fails on any warning; it returns man's text.
func packageRender(t *testing.T, page string) string {
	t.Helper()
	var text string
	for _, argv := range [][]string{
		{"groff", "-man", "-Tutf8", "-ww", "-z", page},
		{"man", "--warnings", "-l", page},
	} {
		for _, width := range []string{"80", "120"} {
			cmd := exec.Command(argv[0], argv[1:]...)
			cmd.Env = append(os.Environ(), "MANWIDTH="+width, "LC_ALL=C.UTF-8", "MANPAGER=cat", "PAGER=cat")
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Run(); err != nil || stderr.Len() > 0 {
				t.Errorf("%s (width %s): %v\n%s", strings.Join(argv, " "), width, err, stderr.Bytes())
			}
			if argv[0] == "man" && width == "80" {
				text = stdout.String()
			}
		}
	}
	return text
}

// TestPackageManPages renders each program's page from the program itself
// (its hidden --man flag, as `make man` does) and the hand-written
// portsentry.conf(5): no warning from groff or man, every visible flag on
// its program's page, the hidden one on none, and every configuration key
// the programs know documented.
func TestPackageManPages(t *testing.T) {
	packageNeed(t, "groff", "man")
	dir := t.TempDir()
	for _, p := range packagePrograms {
		out, err := exec.Command(bin(p), "--man").Output()
		if err != nil {
			t.Fatalf("%s --man: %v", p, err)
		}
		page := writeFile(t, dir, p+".8", string(out))
		text := packageRender(t, page)
		if !strings.Contains(text, p+"(8)") || !strings.Contains(text, "portsentry.conf(5)") {
			t.Errorf("%s.8: no title or no SEE ALSO:\n%s", p, text)
		}
		help, _ := exec.Command(bin(p), "--help").CombinedOutput()
		flags := regexp.MustCompile(`(?m)^\s+(--?[a-z][a-z0-9-]*)`).FindAllStringSubmatch(string(help), -1)
		if len(flags) < 4 {
			t.Fatalf("%s --help lists %d flags:\n%s", p, len(flags), help)
		}
		for _, f := range flags {
			name := strings.TrimLeft(f[1], "-")
			if !regexp.MustCompile(`-` + regexp.QuoteMeta(name) + `\b`).MatchString(text) {
				t.Errorf("%s.8 does not document %s", p, f[1])
			}
		}
		if strings.Contains(text, "--man") {
			t.Errorf("%s.8 shows the hidden --man flag", p)
		}
	}

	const conf = "../man/portsentry.conf.5"
	text := packageRender(t, conf)
	src, err := os.ReadFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range config.Keys() {
		if !regexp.MustCompile(`(?m)^\.B ` + k + `$`).Match(src) {
			t.Errorf("portsentry.conf.5 does not document %s (as a .B %s line)", k, k)
		}
	}
	if !strings.Contains(text, "nft delete table inet portsentry") {
		t.Errorf("portsentry.conf.5 does not say how to remove the nftables table")
	}
}

// packageFiles lists the files and symbolic links under root, relative,
// with their modes.
func packageFiles(t *testing.T, root string) map[string]fs.FileMode {
	t.Helper()
	files := map[string]fs.FileMode{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		files["/"+rel] = fi.Mode()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func packageMake(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command("make", append([]string{"-C", ".."}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("make %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// packageInstalled is what `make install` puts under PREFIX (sbin, units'
// directory and so on are relative to it) and /etc.
func packageInstalled(prefix string) []string {
	var want []string
	for _, p := range packagePrograms {
		want = append(want, prefix+"/sbin/"+p, prefix+"/share/man/man8/"+p+".8", prefix+"/lib/systemd/system/"+p+".service")
	}
	want = append(want,
		prefix+"/share/man/man5/portsentry.conf.5",
		prefix+"/lib/systemd/system/portsentry.target",
		prefix+"/lib/sysusers.d/portsentry.conf",
		prefix+"/lib/tmpfiles.d/portsentry.conf",
		"/etc/logrotate.d/portsentry",
		"/etc/portsentry/portsentry.conf",
		"/etc/portsentry/portsentry.ignore",
	)
	for _, d := range []string{"README.md", "SECURITY.md", "portsentry.conf", "portsentry.ignore",
		"examples/ps-quiet-hours.sh", "examples/nats/nats-server.conf",
		"examples/systemd/fleet/judge/ps-judge.service.d/fleet.conf",
		"examples/systemd/fleet/ps-block.service.d/fleet.conf",
		"examples/systemd/fleet/sensor/ps-listen.service.d/fleet.conf",
		"examples/systemd/fleet/sensor/ps-sniff.service.d/fleet.conf"} {
		want = append(want, prefix+"/share/doc/portsentry/"+d)
	}
	slices.Sort(want)
	return want
}

// packageCheckUnits checks that the installed units start the installed
// programs, and name no /usr/local path when installed elsewhere.
func packageCheckUnits(t *testing.T, root, prefix string) {
	t.Helper()
	for _, p := range packagePrograms {
		unit := filepath.Join(root, prefix, "lib/systemd/system", p+".service")
		b, err := os.ReadFile(unit)
		if err != nil {
			t.Fatal(err)
		}
		m := regexp.MustCompile(`(?m)^ExecStart=(\S+)`).FindSubmatch(b)
		if m == nil || string(m[1]) != prefix+"/sbin/"+p {
			t.Errorf("%s: ExecStart runs %q, want %s/sbin/%s", unit, m, prefix, p)
		}
		if prefix != "/usr/local" && bytes.Contains(b, []byte("/usr/local")) {
			t.Errorf("%s still names /usr/local", unit)
		}
	}
}

// TestPackageMakeInstall runs `make install` into a staging directory with
// two PREFIXes: exactly the expected files with the expected modes, units
// that start the installed programs, an administrator's configuration kept
// on a second install, and `make uninstall` leaving only the configuration.
func TestPackageMakeInstall(t *testing.T) {
	packageNeed(t, "make", "git")
	for _, prefix := range []string{"/usr/local", "/usr"} {
		t.Run(strings.TrimPrefix(prefix, "/"), func(t *testing.T) {
			root := t.TempDir()
			packageMake(t, "install", "DESTDIR="+root, "PREFIX="+prefix)
			files := packageFiles(t, root)
			got := slices.Sorted(func(yield func(string) bool) {
				for f := range files {
					if !yield(f) {
						return
					}
				}
			})
			if want := packageInstalled(prefix); !slices.Equal(got, want) {
				t.Fatalf("installed files:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
			for f, mode := range files {
				want := fs.FileMode(0o644)
				if strings.Contains(f, "/sbin/") || strings.HasSuffix(f, ".sh") {
					want = 0o755
				}
				if mode != want {
					t.Errorf("%s: mode %v, want %v", f, mode, want)
				}
			}
			packageCheckUnits(t, root, prefix)
			out, err := exec.Command(filepath.Join(root, prefix, "sbin/ps-judge"), "--version").Output()
			if err != nil || !strings.HasPrefix(string(out), "ps-judge ") {
				t.Errorf("installed ps-judge --version: %v %q", err, out)
			}

			conf := filepath.Join(root, "etc/portsentry/portsentry.conf")
			mine := "SCAN_TRIGGER=\"3\"\n"
			if err := os.WriteFile(conf, []byte(mine), 0o640); err != nil {
				t.Fatal(err)
			}
			out2 := packageMake(t, "install", "DESTDIR="+root, "PREFIX="+prefix)
			if b, _ := os.ReadFile(conf); string(b) != mine || !strings.Contains(out2, "kept the existing") {
				t.Errorf("a second install replaced the administrator's configuration: %q\n%s", b, out2)
			}

			packageMake(t, "uninstall", "DESTDIR="+root, "PREFIX="+prefix)
			left := packageFiles(t, root)
			if len(left) != 2 || left["/etc/portsentry/portsentry.conf"] == 0 || left["/etc/portsentry/portsentry.ignore"] == 0 {
				t.Errorf("after uninstall: %v, want only the configuration", left)
			}
		})
	}
}
