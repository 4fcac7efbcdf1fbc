package tests

// Checks of what the project installs: the manual pages (rendered by groff
// and man with every warning on), `make install` and `make uninstall` into
// a staging directory, and the Debian package installed into a scratch root.

import (
	"bytes"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
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
	return packageWalk(t, root, false)
}

// packageWalk lists what is under root (directories too with dirs), but
// dpkg's database, relative, with modes.
func packageWalk(t *testing.T, root string, dirs bool) map[string]fs.FileMode {
	t.Helper()
	files := map[string]fs.FileMode{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || path == root {
			return err
		}
		if path == filepath.Join(root, "var/lib/dpkg") {
			return fs.SkipDir
		}
		if d.IsDir() && !dirs {
			return nil
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
// directory and so on are relative to it) and /etc; the manual pages' names
// end in manSuffix (".gz" in the package).
func packageInstalled(prefix, manSuffix string) []string {
	var want []string
	for _, p := range packagePrograms {
		want = append(want, prefix+"/sbin/"+p, prefix+"/share/man/man8/"+p+".8"+manSuffix, prefix+"/lib/systemd/system/"+p+".service")
	}
	want = append(want,
		prefix+"/share/man/man5/portsentry.conf.5"+manSuffix,
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
			got := slices.Sorted(maps.Keys(files))
			if want := packageInstalled(prefix, ""); !slices.Equal(got, want) {
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

// packageUsers are the users and groups the package creates (those of
// contrib/systemd/portsentry.sysusers).
var packageUsers = map[string][]string{
	"passwd": {"portsentry-block", "portsentry-judge", "portsentry-sensor"},
	"group":  {"portsentry-block", "portsentry-judge", "portsentry-sensor", "portsentry-hits", "portsentry-decisions"},
}

// packageID is the numeric id of name in root's /etc/passwd or /etc/group.
func packageID(t *testing.T, root, db, name string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "etc", db))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Split(l, ":")
		if len(f) > 3 && f[0] == name {
			id, err := strconv.Atoi(f[2])
			if err != nil {
				t.Fatalf("%s: %q", db, l)
			}
			return id
		}
	}
	t.Fatalf("no %s in %s's %s", name, root, db)
	return -1
}

// TestPackageDeb builds the Debian package with `make deb` and installs it
// with dpkg into a scratch root (dpkg --root, the maintainer scripts run
// with DPKG_ROOT, as for any foreign root): the files, the conffiles, the
// users and directories the postinst creates, systemd-analyze verify on the
// installed units running the installed programs, an administrator's
// configuration kept on reinstall, enable links removed with the package,
// and after dpkg -r only the configuration and the state, after dpkg -P
// nothing but the user database.
func TestPackageDeb(t *testing.T) {
	packageNeed(t, "make", "git", "dpkg", "dpkg-deb", "dpkg-query", "systemd-sysusers", "systemd-tmpfiles", "systemd-analyze", "systemctl")
	if os.Geteuid() != 0 {
		netlab.SkipOrFail(t, "installing a package, even into a scratch root, sets owners: root needed")
	}
	packageMake(t, "deb")
	debs, _ := filepath.Glob("../bin/portsentry_*.deb")
	if len(debs) != 1 {
		t.Fatalf("make deb made %v", debs)
	}
	deb := debs[0]

	root := t.TempDir()
	for _, d := range []string{"var/lib/dpkg/info", "var/lib/dpkg/updates", "etc/systemd/system", "run"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, filepath.Join(root, "var/lib/dpkg"), "status", "")
	before := packageWalk(t, root, true)
	dpkg := func(args ...string) string {
		t.Helper()
		// systemd is a dependency the scratch root lacks: the host's runs
		// the scripts.
		cmd := exec.Command("dpkg", append([]string{"--root=" + root, "--force-script-chrootless", "--force-depends", "--force-confold"}, args...)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("dpkg %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	dpkg("-i", deb)

	// The files: exactly those of make install with PREFIX=/usr.
	var got []string
	for f := range packageFiles(t, root) {
		if strings.HasPrefix(f, "/usr/") || strings.HasPrefix(f, "/etc/portsentry/") || strings.HasPrefix(f, "/etc/logrotate.d/") {
			got = append(got, f)
		}
	}
	slices.Sort(got)
	if want := packageInstalled("/usr", ".gz"); !slices.Equal(got, want) {
		t.Errorf("installed files:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	packageCheckUnits(t, root, "/usr")
	conffiles, err := exec.Command("dpkg-query", "--root="+root, "-W", "-f=${Conffiles}", "portsentry").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{"/etc/portsentry/portsentry.conf", "/etc/portsentry/portsentry.ignore", "/etc/logrotate.d/portsentry"} {
		if !strings.Contains(string(conffiles), " "+c+" ") {
			t.Errorf("%s is not a conffile: %q", c, conffiles)
		}
	}

	// The users, and the directories with the units' owners and modes.
	for db, names := range packageUsers {
		for _, n := range names {
			packageID(t, root, db, n)
		}
	}
	block, decisions := packageID(t, root, "passwd", "portsentry-block"), packageID(t, root, "group", "portsentry-decisions")
	for _, d := range []struct {
		path string
		mode fs.FileMode
	}{{"var/lib/portsentry", 0o755}, {"run/portsentry", 0o771 | fs.ModeSticky}} {
		fi, err := os.Stat(filepath.Join(root, d.path))
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		if fi.Mode()&(fs.ModePerm|fs.ModeSticky) != d.mode || int(st.Uid) != block || int(st.Gid) != decisions {
			t.Errorf("/%s: %v %d:%d, want %v %d:%d", d.path, fi.Mode(), st.Uid, st.Gid, d.mode, block, decisions)
		}
	}

	contribVerify(t, filepath.Join(root, "usr/lib/systemd/system"), "/usr/sbin/", filepath.Join(root, "usr/sbin")+"/")
	out, err := exec.Command(filepath.Join(root, "usr/sbin/ps-block"), "--version").Output()
	if err != nil || !strings.HasPrefix(string(out), "ps-block ") {
		t.Errorf("installed ps-block --version: %v %q", err, out)
	}

	// An administrator's configuration survives a reinstall.
	conf := filepath.Join(root, "etc/portsentry/portsentry.conf")
	mine := "SCAN_TRIGGER=\"3\"\n"
	if err := os.WriteFile(conf, []byte(mine), 0o644); err != nil {
		t.Fatal(err)
	}
	dpkg("-i", deb)
	if b, _ := os.ReadFile(conf); string(b) != mine {
		t.Errorf("reinstalling replaced the administrator's configuration: %q", b)
	}

	// Enabled units are disabled with the package; dpkg -r leaves the
	// configuration and the state only.
	if out, err := exec.Command("systemctl", "--root="+root, "enable", "portsentry.target", "ps-sniff.service").CombinedOutput(); err != nil {
		t.Fatalf("systemctl enable: %v\n%s", err, out)
	}
	if _, err := os.Lstat(filepath.Join(root, "etc/systemd/system/portsentry.target.wants/ps-sniff.service")); err != nil {
		t.Fatalf("systemctl enable made no link: %v", err)
	}
	dpkg("-r", "portsentry")
	userDB := []string{"/etc/passwd", "/etc/group", "/etc/shadow", "/etc/gshadow", "/etc/.pwd.lock", "/etc"}
	var stray []string
	for f := range packageWalk(t, root, true) {
		_, known := before[f]
		if !known && !slices.Contains(userDB, f) && !strings.HasPrefix(f, "/etc/portsentry") && !strings.HasPrefix(f, "/etc/logrotate.d") &&
			!strings.HasPrefix(f, "/var/lib/portsentry") && !strings.HasPrefix(f, "/run") {
			stray = append(stray, f)
		}
	}
	if len(stray) > 0 {
		t.Errorf("after dpkg -r: %v", stray)
	}
	if _, err := os.Stat(conf); err != nil {
		t.Errorf("dpkg -r removed the configuration: %v", err)
	}

	dpkg("-P", "portsentry")
	stray = nil
	for f := range packageWalk(t, root, true) {
		if _, known := before[f]; !known && !slices.Contains(userDB, f) {
			stray = append(stray, f)
		}
	}
	slices.Sort(stray)
	if len(stray) > 0 {
		t.Errorf("after dpkg -P: %v", stray)
	}
}
