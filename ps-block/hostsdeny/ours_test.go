package hostsdeny

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func lines(t *testing.T, p string) []string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

// An administrator's (or fail2ban's) permanent ban of a host is never taken
// as ps-block's: not added again, and still there when ps-block's block of
// the host ends, also after a restart; ps-block removes only what it added.
func TestRemovesOnlyItsOwn(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "hosts.deny")
	rec := filepath.Join(dir, "portsentry.blocked"+RecordSuffix)
	if err := os.WriteFile(p, []byte("# admin\nALL: 203.0.113.50\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tm := mustTemplate(t, "ALL: $TARGET$")
	admin, mine := netip.MustParseAddr("203.0.113.50"), netip.MustParseAddr("198.18.0.1")
	f := New(p, rec, tm)
	if err := f.Load(); err != nil {
		t.Fatal(err)
	}
	if f.Add(pass(t, admin.String())) {
		t.Error("queued a line the file already has")
	}
	if got := f.NotOurs(admin, mine); !slices.Equal(got, []netip.Addr{admin}) {
		t.Errorf("NotOurs = %v", got)
	}
	f.Add(pass(t, mine.String()))
	if _, err := f.Flush(); err != nil {
		t.Fatal(err)
	}
	// An administrator then bans ps-block's host for good, by hand.
	af, _ := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	af.WriteString("ALL: 198.18.0.1\n")
	af.Close()

	// ps-block restarts: it knows its line from the record.
	f2 := New(p, rec, tm)
	if err := f2.Load(); err != nil {
		t.Fatal(err)
	}
	if !f2.Ours(mine) || f2.Ours(admin) {
		t.Errorf("after a restart: ours(%s)=%v ours(%s)=%v", mine, f2.Ours(mine), admin, f2.Ours(admin))
	}
	n, err := f2.Remove(admin, mine)
	if err != nil || n != 1 {
		t.Fatalf("Remove = %d, %v; want 1", n, err)
	}
	if got, want := lines(t, p), []string{"# admin", "ALL: 203.0.113.50", "ALL: 198.18.0.1"}; !slices.Equal(got, want) {
		t.Errorf("hosts.deny %q, want %q", got, want)
	}
	// Nothing is ps-block's any more: a second lift removes nothing.
	if n, err := f2.Remove(admin, mine); err != nil || n != 0 {
		t.Errorf("second Remove = %d, %v", n, err)
	}
	if b, _ := os.ReadFile(rec); len(b) != 0 {
		t.Errorf("record still holds %q", b)
	}
}

// Other writers (fail2ban, DenyHosts, an administrator's echo >>) append to
// hosts.deny without ps-block's lock. While ps-block adds and removes 2,000
// blocks, an appender writes 300 lines: every one of them must be kept.
// Before, ps-block rewrote the file to add, and kept about 250 of 300.
func TestConcurrentAppender(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "hosts.deny")
	if err := os.WriteFile(p, []byte("# hosts.deny\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	f := New(p, filepath.Join(dir, "rec"), mustTemplate(t, "ALL: $TARGET$"))
	if err := f.Load(); err != nil {
		t.Fatal(err)
	}
	const foreign = 300
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Go(func() {
		for i := range foreign {
			af, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Error(err)
				return
			}
			fmt.Fprintf(af, "sshd: 203.0.113.%d # fail2ban %d\n", i%250, i)
			af.Close()
			select {
			case <-stop:
			case <-time.After(200 * time.Microsecond):
			}
		}
	})
	var addrs []netip.Addr
	for i := range 2000 {
		a := netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)})
		addrs = append(addrs, a)
		f.Add(pass(t, a.String()))
		if i%20 == 19 {
			if _, err := f.Flush(); err != nil {
				t.Fatal(err)
			}
			// Lift the previous batch: a rewrite while the appender writes.
			if i >= 39 {
				if _, err := f.Remove(addrs[i-39 : i-19]...); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	wg.Wait()
	close(stop)
	if _, err := f.Remove(addrs...); err != nil {
		t.Fatal(err)
	}
	got := lines(t, p)
	kept := 0
	for _, l := range got {
		if strings.Contains(l, "# fail2ban ") {
			kept++
		} else if l != "# hosts.deny" {
			t.Errorf("line left: %q", l)
		}
	}
	if kept != foreign {
		t.Errorf("%d of the other writer's %d lines kept", kept, foreign)
	}
	t.Logf("%d bytes carried over from a replaced version", f.Carried)
}
