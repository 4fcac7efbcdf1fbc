package recfile

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestOpenRefuses: each thing that must not hold ps-block's records is
// refused with a message saying what it is, and a FIFO does not hang the
// open (the test would time out before the fix).
func TestOpenRefuses(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good")
	if err := os.WriteFile(good, []byte("x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(good, link); err != nil {
		t.Fatal(err)
	}
	shared := filepath.Join(dir, "shared")
	if err := os.WriteFile(shared, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	os.Chmod(shared, 0o620)
	foreign := filepath.Join(dir, "foreign")
	if err := os.WriteFile(foreign, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	canChown := os.Chown(foreign, 65534, 65534) == nil
	tests := []struct {
		name, path string
		flag       int
		want       string // "" for success
	}{
		{"regular", good, os.O_RDONLY, ""},
		{"regular append", good, os.O_WRONLY | os.O_APPEND, ""},
		{"FIFO read", fifo, os.O_RDONLY, "not a regular file (a FIFO)"},
		{"FIFO append", fifo, os.O_WRONLY | os.O_APPEND | os.O_CREATE, "not a regular file"},
		{"symlink", link, os.O_RDONLY, "is a symlink"},
		{"group-writable", shared, os.O_RDONLY, "writable by group or others (mode 0620)"},
		{"directory", dir, os.O_RDONLY, "not a regular file (a directory)"},
		{"missing", filepath.Join(dir, "none"), os.O_RDONLY, "no such file"},
	}
	if canChown {
		tests = append(tests, struct {
			name, path string
			flag       int
			want       string
		}{"another user's", foreign, os.O_WRONLY | os.O_APPEND, "owned by uid 65534"})
	} else {
		t.Log("not root: the other user's file is not tested")
	}
	if canChown {
		// ps-block running as its own user keeps its records in a directory
		// of its own; root (an administrator's ps-block list) may read them.
		own := filepath.Join(dir, "own")
		if err := os.Mkdir(own, 0o755); err != nil {
			t.Fatal(err)
		}
		kept := filepath.Join(own, "blocked.tcp")
		if err := os.WriteFile(kept, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		os.Chown(own, 65534, 65534)
		os.Chown(kept, 65534, 65534)
		tests = append(tests, struct {
			name, path string
			flag       int
			want       string
		}{"its directory owner's", kept, os.O_RDONLY, ""})
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			done := make(chan error, 1)
			go func() {
				f, err := Open(tc.path, tc.flag)
				if err == nil {
					f.Close()
				}
				done <- err
			}()
			var err error
			select {
			case err = <-done:
			case <-time.After(5 * time.Second):
				t.Fatalf("Open(%s) hangs", tc.path)
			}
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("Open: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("Open: %v, want an error with %q", err, tc.want)
			}
		})
	}
	if _, err := Open(filepath.Join(dir, "none"), os.O_RDONLY); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a missing file: %v, want fs.ErrNotExist", err)
	}
}

func TestLines(t *testing.T) {
	long := strings.Repeat("x", MaxLine+10)
	in := "a\n\n" + long + "\nb\n" + long + "\nc"
	type got struct {
		n    int
		line string
		err  error
	}
	var all []got
	err := Lines(strings.NewReader(in), func(n int, line []byte, err error) error {
		all = append(all, got{n, string(line), err})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []got{{1, "a", nil}, {2, "", nil}, {3, "", ErrTooLong}, {4, "b", nil}, {5, "", ErrTooLong}, {6, "c", nil}}
	if len(all) != len(want) {
		t.Fatalf("got %v, want %v", all, want)
	}
	for i := range want {
		if all[i] != want[i] {
			t.Errorf("line %d: %v, want %v", i, all[i], want[i])
		}
	}
}

func TestReplaceKeepsMode(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	if err := Replace(p, []byte("one\n")); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("new file: %v %v", fi, err)
	}
	os.Chmod(p, 0o640)
	if err := Replace(p, []byte("two\n")); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(p)
	fi, _ := os.Stat(p)
	if string(b) != "two\n" || fi.Mode().Perm() != 0o640 {
		t.Errorf("after Replace: %q %v", b, fi.Mode())
	}
	ents, _ := os.ReadDir(filepath.Dir(p))
	if len(ents) != 1 {
		t.Errorf("left behind: %v", ents)
	}
}

func TestDir(t *testing.T) {
	base := t.TempDir()
	p := filepath.Join(base, "var", "lib", "portsentry", "portsentry.blocked")
	created, err := Dir(p)
	if err != nil || !created {
		t.Fatalf("Dir = %v, %v", created, err)
	}
	fi, err := os.Stat(filepath.Dir(p))
	if err != nil || fi.Mode().Perm()&^DirMode != 0 {
		t.Errorf("created %v %v, want at most %04o", fi.Mode(), err, DirMode)
	}
	if created, err := Dir(p); err != nil || created {
		t.Errorf("second Dir = %v, %v", created, err)
	}
	file := filepath.Join(base, "file")
	os.WriteFile(file, nil, 0o600)
	if _, err := Dir(filepath.Join(file, "x")); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("Dir under a file: %v", err)
	}
}
