package guard

import (
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/portsentry/pipeline/shared/logtest"
)

// replace writes a file as an editor does: a new file renamed over the old.
func replace(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path+".new", []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".new", path); err != nil {
		t.Fatal(err)
	}
}

// waitRefused polls until the Keeper's Set refuses (or allows) a.
func waitRefused(t *testing.T, k *Keeper, a string, want bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for (k.Current().Refuse(netip.MustParseAddr(a)) != "") != want {
		if time.Now().After(deadline) {
			t.Fatalf("after 5 s, %s refused = %v, want %v", a, !want, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestKeeperFollowsSymlinks: an ignore file and a resolv.conf that are
// symlinks into other directories are reloaded when their targets change
// (as /etc/resolv.conf -> /run/systemd/resolve/stub-resolv.conf does), and
// when a link is pointed elsewhere.
func TestKeeperFollowsSymlinks(t *testing.T) {
	dir := t.TempDir()
	etc, run, other := filepath.Join(dir, "etc"), filepath.Join(dir, "run"), filepath.Join(dir, "other")
	for _, d := range []string{etc, run, other} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	replace(t, filepath.Join(run, "ignore"), "198.18.50.1\n")
	replace(t, filepath.Join(run, "stub-resolv.conf"), "nameserver 198.18.60.1\n")
	// The ignore file is a relative link, the resolv.conf an absolute one.
	if err := os.Symlink("../run/ignore", filepath.Join(etc, "ignore")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(run, "stub-resolv.conf"), filepath.Join(etc, "resolv.conf")); err != nil {
		t.Fatal(err)
	}
	rec := &logtest.Book{}
	later := filepath.Join(dir, "later") // made after the start, as systemd-resolved's directory may be
	k := newKeeper(filepath.Join(etc, "ignore"), []string{filepath.Join(etc, "resolv.conf"), filepath.Join(later, "resolv.conf")}, nil, rec.Logf)
	stop := make(chan struct{})
	defer close(stop)
	go k.Watch(stop)
	waitRefused(t, k, "198.18.50.1", true)
	waitRefused(t, k, "198.18.60.1", true)
	time.Sleep(200 * time.Millisecond) // the watch is set up

	replace(t, filepath.Join(run, "ignore"), "198.18.50.2\n")
	waitRefused(t, k, "198.18.50.2", true)
	waitRefused(t, k, "198.18.50.1", false)
	replace(t, filepath.Join(run, "stub-resolv.conf"), "nameserver 198.18.60.2\n")
	waitRefused(t, k, "198.18.60.2", true)
	waitRefused(t, k, "198.18.60.1", false)

	// The link now points into a third directory: its changes count too.
	replace(t, filepath.Join(other, "ignore"), "198.18.50.3\n")
	if err := os.Symlink(filepath.Join(other, "ignore"), filepath.Join(etc, "ignore.new")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(etc, "ignore.new"), filepath.Join(etc, "ignore")); err != nil {
		t.Fatal(err)
	}
	waitRefused(t, k, "198.18.50.3", true)
	time.Sleep(200 * time.Millisecond)
	replace(t, filepath.Join(other, "ignore"), "198.18.50.4\n")
	waitRefused(t, k, "198.18.50.4", true)

	// A directory that appears later is watched from the next reload on.
	if err := os.Mkdir(later, 0o755); err != nil {
		t.Fatal(err)
	}
	replace(t, filepath.Join(later, "resolv.conf"), "nameserver 198.18.60.9\n")
	replace(t, filepath.Join(other, "ignore"), "198.18.50.5\n")
	waitRefused(t, k, "198.18.60.9", true)
	time.Sleep(200 * time.Millisecond)
	replace(t, filepath.Join(later, "resolv.conf"), "nameserver 198.18.60.10\n")
	waitRefused(t, k, "198.18.60.10", true)
}

// TestKeeperMissingIgnoreFile: a missing ignore file is said at start, at
// each reload and, while it lasts, at most once a minute when asked; a file
// that vanishes keeps what it held.
func TestKeeperMissingIgnoreFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "portsentry.ignore")
	rec := &logtest.Book{}
	k := newKeeper(path, nil, nil, rec.Logf)
	const warning = "WARNING: the ignore file " // + path + " does not exist"
	if n := rec.Count(warning + path + " does not exist"); n != 1 {
		t.Fatalf("%d warnings at start, want 1: %q", n, rec.Lines())
	}
	now := time.Now()
	k.Remind(now)
	k.Remind(now.Add(30 * time.Second))
	if n := rec.Count(warning); n != 1 {
		t.Errorf("%d warnings within a minute, want 1", n)
	}
	k.Remind(now.Add(61 * time.Second))
	k.Remind(now.Add(62 * time.Second))
	if n := rec.Count(warning); n != 2 {
		t.Errorf("%d warnings after a minute, want 2", n)
	}
	k.Reload("SIGHUP")
	if n := rec.Count(warning); n != 3 {
		t.Errorf("%d warnings after a reload, want 3", n)
	}

	replace(t, path, "198.18.70.1\n")
	k.Reload("file changed")
	k.Remind(now.Add(time.Hour))
	if n := rec.Count(warning); n != 3 || k.Current().Refuse(netip.MustParseAddr("198.18.70.1")) == "" {
		t.Errorf("%d warnings with the file there, want 3; 198.18.70.1 refused: %q", n, k.Current().Refuse(netip.MustParseAddr("198.18.70.1")))
	}

	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	k.Reload("file changed")
	if n := rec.Count(warning); n != 4 {
		t.Errorf("%d warnings once the file vanished, want 4", n)
	}
	if k.Current().Refuse(netip.MustParseAddr("198.18.70.1")) == "" || rec.Count("keeping the previous ignore list (1 entries)") != 1 {
		t.Errorf("a vanished ignore file must keep its entries: %q", rec.Lines())
	}
}
