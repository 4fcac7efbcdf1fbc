package hostsdeny

import (
	"bytes"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/portsentry/pipeline/ps-block/gate"
	"github.com/portsentry/pipeline/ps-block/macro"
	"github.com/portsentry/pipeline/shared/event"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func vars(t testing.TB, addr string) macro.Vars {
	t.Helper()
	v, err := macro.NewVars(netip.MustParseAddr(addr), 21, "tcp")
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// pass is the gate's admission of addr, which Add requires.
func pass(t testing.TB, addr string) gate.Pass {
	t.Helper()
	p, err := gate.New(nil).Admit(netip.MustParseAddr(addr), 21, event.ModeTCP, gate.Decision)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestAddNeedsPass: a Pass the gate did not make never reaches the file.
func TestAddNeedsPass(t *testing.T) {
	f := New(filepath.Join(t.TempDir(), "hosts.deny"), "", mustTemplate(t, "ALL: $TARGET$"))
	if f.Add(gate.Pass{}) || f.Pending() != 0 {
		t.Fatal("Add queued a line without the gate's Pass")
	}
}

func mustTemplate(t testing.TB, s string) *Template {
	t.Helper()
	tm, err := NewTemplate(s)
	if err != nil {
		t.Fatal(err)
	}
	return tm
}

// copyFixture puts a testdata file into a fresh directory as hosts.deny.
func copyFixture(t testing.TB, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "hosts.deny")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func golden(t *testing.T, path, name string) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	gp := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(gp, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(gp)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from %s:\n%s", path, gp, got)
	}
}

func TestNewTemplate(t *testing.T) {
	tests := []struct {
		tmpl    string
		wantErr bool
	}{
		{"ALL: $TARGET$", false},
		{"ALL: $TARGET$ : DENY", false},
		{"ALL: $TARGET$ # $MODE$ $PORT$ $X", false},
		{"ALL: 1.2.3.4", true},
		{"ALL: $TARGET$\nALL: x", true},
	}
	for _, tc := range tests {
		_, err := NewTemplate(tc.tmpl)
		if (err != nil) != tc.wantErr {
			t.Errorf("NewTemplate(%q) err = %v, want error %v", tc.tmpl, err, tc.wantErr)
		}
	}
}

func TestTemplateHost(t *testing.T) {
	tests := []struct {
		tmpl, line string
		want       string // "" : not a line of this template
	}{
		{"ALL: $TARGET$", "ALL: 198.18.0.1", "198.18.0.1"},
		{"ALL: $TARGET$", "  ALL: [2001:db8::1]  ", "2001:db8::1"},
		{"ALL: $TARGET$", "ALL: PARANOID", ""},
		{"ALL: $TARGET$", "sshd: 198.18.0.1", ""},
		{"ALL: $TARGET$", "ALL: 198.18.0.1 : DENY", ""},
		{"ALL: $TARGET$ : DENY", "ALL: 198.18.0.1 : DENY", "198.18.0.1"},
		{"ALL: $TARGET$ # $MODE$ $PORT$", "ALL: 198.18.0.1 # atcp 21", "198.18.0.1"},
		{"ALL: $TARGET$", "ALL: 999.1.1.1", ""},
	}
	for _, tc := range tests {
		a, ok := mustTemplate(t, tc.tmpl).host([]byte(tc.line))
		got := ""
		if ok {
			got = a.String()
		}
		if got != tc.want {
			t.Errorf("template %q line %q: host %q, want %q", tc.tmpl, tc.line, got, tc.want)
		}
	}
}

func TestRender(t *testing.T) {
	tm := mustTemplate(t, "ALL: $TARGET$ # $MODE$/$PORT$")
	for addr, want := range map[string]string{
		"198.18.0.1":        "ALL: 198.18.0.1 # tcp/21",
		"::ffff:198.18.0.1": "ALL: 198.18.0.1 # tcp/21",
		"2001:db8::1":       "ALL: [2001:db8::1] # tcp/21",
	} {
		if got := tm.Render(vars(t, addr)); got != want {
			t.Errorf("Render(%s) = %q, want %q", addr, got, want)
		}
	}
}

func TestAddFlushRemoveGolden(t *testing.T) {
	p := copyFixture(t, "before.deny")
	if err := os.Chmod(p, 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(p, 4242, 4343); err != nil && os.Geteuid() == 0 {
		t.Fatal(err)
	}
	f := New(p, "", mustTemplate(t, "ALL: $TARGET$"))
	if err := f.Load(); err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{"198.18.0.1", "2001:db8::1", "198.18.0.2"} {
		if !f.Has(netip.MustParseAddr(h)) {
			t.Errorf("index lacks %s", h)
		}
	}
	if f.Has(netip.MustParseAddr("203.0.113.9")) {
		t.Error("a line of another template was indexed")
	}
	queued := 0
	for _, h := range []string{"198.18.0.1", "198.18.0.7", "2001:db8::7", "198.18.0.7", "::ffff:198.18.0.8"} {
		if f.Add(pass(t, h)) {
			queued++
		}
	}
	if queued != 3 || f.Pending() != 3 {
		t.Errorf("queued %d (pending %d), want 3", queued, f.Pending())
	}
	added, err := f.Flush()
	if err != nil {
		t.Fatal(err)
	}
	if len(added) != 3 {
		t.Errorf("added %v", added)
	}
	golden(t, p, "after_add.deny")

	// 198.18.0.1's line was there before: not ps-block's to remove.
	n, err := f.Remove(netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("2001:db8::7"), netip.MustParseAddr("198.18.0.99"))
	if err != nil || n != 1 {
		t.Fatalf("Remove = %d, %v; want 1, nil", n, err)
	}
	golden(t, p, "after_remove.deny")

	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o640 {
		t.Errorf("mode %04o, want 0640", fi.Mode().Perm())
	}
	if st := fi.Sys().(*syscall.Stat_t); os.Geteuid() == 0 && (st.Uid != 4242 || st.Gid != 4343) {
		t.Errorf("owner %d:%d, want 4242:4343", st.Uid, st.Gid)
	}
	left, _ := filepath.Glob(filepath.Join(filepath.Dir(p), ".hosts.deny.tmp*"))
	if len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

func TestNoTrailingNewline(t *testing.T) {
	p := copyFixture(t, "nonewline.deny")
	f := New(p, "", mustTemplate(t, "ALL: $TARGET$"))
	f.Add(pass(t, "198.18.0.4"))
	if _, err := f.Flush(); err != nil {
		t.Fatal(err)
	}
	golden(t, p, "nonewline_after.deny")
}

func TestRefusals(t *testing.T) {
	tm := mustTemplate(t, "ALL: $TARGET$")
	tests := []struct {
		name  string
		setup func(t *testing.T, p string)
		want  string
	}{
		{"missing", func(t *testing.T, p string) {}, "does not exist"},
		{"symlink", func(t *testing.T, p string) {
			target := filepath.Join(filepath.Dir(p), "real")
			if err := os.WriteFile(target, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(target, p); err != nil {
				t.Fatal(err)
			}
		}, "symlink"},
		{"read-only", func(t *testing.T, p string) {
			if err := os.WriteFile(p, nil, 0o444); err != nil {
				t.Fatal(err)
			}
		}, "read-only"},
		{"directory", func(t *testing.T, p string) {
			if err := os.Mkdir(p, 0o755); err != nil {
				t.Fatal(err)
			}
		}, "not a regular file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "hosts.deny")
			tc.setup(t, p)
			f := New(p, "", tm)
			if err := f.Load(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Load: %v, want %q", err, tc.want)
			}
			f.Add(pass(t, "198.18.0.1"))
			if _, err := f.Flush(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Flush: %v, want %q", err, tc.want)
			}
			if _, err := f.Remove(netip.MustParseAddr("198.18.0.1")); err == nil {
				t.Error("Remove succeeded")
			}
			if f.Pending() != 0 {
				t.Error("failed batch still queued")
			}
			if fi, err := os.Lstat(p); err == nil && fi.Mode()&os.ModeSymlink != 0 {
				if b, _ := os.ReadFile(filepath.Join(filepath.Dir(p), "real")); len(b) != 0 {
					t.Errorf("wrote through the symlink: %q", b)
				}
			}
		})
	}
}

// Two writers (as two ps-block processes would be) on one file: the lock and
// the re-read under it keep every line and never write one twice.
func TestConcurrentWriters(t *testing.T) {
	p := filepath.Join(t.TempDir(), "hosts.deny")
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	tm := mustTemplate(t, "ALL: $TARGET$")
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f := New(p, "", tm)
			for i := range 50 {
				// Both writers add the shared host 198.18.9.9 too.
				f.Add(pass(t, fmt.Sprintf("198.18.%d.%d", w, i)))
				f.Add(pass(t, "198.18.9.9"))
				if _, err := f.Flush(); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 101 {
		t.Errorf("%d lines, want 101", len(lines))
	}
	slices.Sort(lines)
	if len(slices.Compact(lines)) != len(lines) {
		t.Error("a host appears twice")
	}
}

func BenchmarkAdd10k(b *testing.B) {
	tm := mustTemplate(b, "ALL: $TARGET$")
	vs := make([]gate.Pass, 10_000)
	for i := range vs {
		vs[i] = pass(b, netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}).String())
	}
	for b.Loop() {
		b.StopTimer()
		p := copyFixture(b, "before.deny")
		f := New(p, "", tm)
		b.StartTimer()
		// Batches of 100, as a flood read from a pipe arrives.
		for i, v := range vs {
			f.Add(v)
			if i%100 == 99 {
				if _, err := f.Flush(); err != nil {
					b.Fatal(err)
				}
			}
		}
		if _, err := f.Flush(); err != nil {
			b.Fatal(err)
		}
	}
}
