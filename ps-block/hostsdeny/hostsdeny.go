// Package hostsdeny is the KILL_HOSTS_DENY action: it adds one line per host
// to a TCP Wrappers hosts.deny and removes it again. The file is replaced
// atomically (a crash leaves the old or the new file), keeps its owner and
// mode, is never followed through a symlink, and writers from other
// ps-block processes are locked out with flock on a lock file beside it.
// Adds are queued and written by Flush in one rewrite, so a flood of blocks
// costs one write per batch rather than one per line.
package hostsdeny

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"

	"github.com/portsentry/pipeline/ps-block/gate"
	"github.com/portsentry/pipeline/ps-block/macro"
	"golang.org/x/sys/unix"
)

// DefaultPath is where TCP Wrappers reads its deny list.
const DefaultPath = "/etc/hosts.deny"

// Template is a compiled KILL_HOSTS_DENY line.
type Template struct {
	text  string
	match *regexp.Regexp // finds the target in a line this template made
}

// NewTemplate compiles a KILL_HOSTS_DENY value, which must hold $TARGET$.
func NewTemplate(text string) (*Template, error) {
	if !strings.Contains(text, macro.Target) {
		return nil, fmt.Errorf("hostsdeny: template %q lacks %s", text, macro.Target)
	}
	if strings.ContainsAny(text, "\r\n") {
		return nil, fmt.Errorf("hostsdeny: template %q spans lines", text)
	}
	var re strings.Builder
	re.WriteString(`^\s*`)
	rest := strings.TrimSpace(text)
	for rest != "" {
		i := strings.Index(rest, "$")
		if i < 0 {
			re.WriteString(regexp.QuoteMeta(rest))
			break
		}
		re.WriteString(regexp.QuoteMeta(rest[:i]))
		rest = rest[i:]
		switch {
		case strings.HasPrefix(rest, macro.Target):
			re.WriteString(`(\[[0-9A-Fa-f:.]+\]|[0-9A-Fa-f:.]+)`)
			rest = rest[len(macro.Target):]
		case strings.HasPrefix(rest, macro.Port):
			re.WriteString(`[0-9]+`)
			rest = rest[len(macro.Port):]
		case strings.HasPrefix(rest, macro.Mode):
			re.WriteString(`[a-z]+`)
			rest = rest[len(macro.Mode):]
		default:
			re.WriteString(`\$`)
			rest = rest[1:]
		}
	}
	re.WriteString(`\s*$`)
	m, err := regexp.Compile(re.String())
	if err != nil {
		return nil, fmt.Errorf("hostsdeny: template %q: %w", text, err)
	}
	return &Template{text: text, match: m}, nil
}

// Render is the line for v; TCP Wrappers wants IPv6 addresses in brackets.
func (t *Template) Render(v macro.Vars) string {
	target := v.Addr().String()
	if v.Addr().Is6() {
		target = "[" + target + "]"
	}
	return v.Expand(t.text, target)
}

// host is the address a line made by this template names, if it is one.
func (t *Template) host(line []byte) (netip.Addr, bool) {
	m := t.match.FindSubmatch(line)
	if m == nil {
		return netip.Addr{}, false
	}
	a, err := netip.ParseAddr(strings.Trim(string(m[1]), "[]"))
	if err != nil {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}

// File is one hosts.deny with an index of the hosts it names. It is not
// safe for concurrent use; other processes are kept out by the lock file.
type File struct {
	path    string
	tmpl    *Template
	hosts   map[netip.Addr]bool // hosts with a line, as of the last read or write
	pending []pendingLine
	queued  map[netip.Addr]bool
	content []byte    // the file as last read or written
	stamp   fileStamp // identifies that version, to skip a re-read
}

type pendingLine struct {
	addr netip.Addr
	line string
}

type fileStamp struct {
	dev, ino uint64
	size     int64
	mtimNs   int64
}

// New returns the action for path; nothing is read until Load or Flush, so
// a missing or unusable file is reported per action rather than at start.
func New(path string, tmpl *Template) *File {
	return &File{path: path, tmpl: tmpl, queued: map[netip.Addr]bool{}}
}

// Load reads the file and indexes the hosts that this template's lines name.
// The file must exist and be a writable regular file, not a symlink.
func (f *File) Load() error {
	_, err := f.read()
	return err
}

// Check says why the file cannot be edited, when ps-block starts rather
// than at the first attack: missing, not a regular file, read-only, on a
// read-only file system (a systemd unit's ProtectSystem), or in a directory
// where the new version cannot be written.
func (f *File) Check() error {
	if _, err := f.read(); err != nil {
		return err
	}
	w, err := os.OpenFile(f.path, os.O_WRONLY|os.O_APPEND|syscall.O_NOFOLLOW|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("hostsdeny: %s cannot be written: %w", f.path, err)
	}
	w.Close()
	if dir := filepath.Dir(f.path); unix.Access(dir, unix.W_OK) != nil {
		return fmt.Errorf("hostsdeny: cannot write in %s, where the new version of %s goes", dir, f.path)
	}
	return nil
}

// Path is the file's name.
func (f *File) Path() string { return f.path }

// Has reports whether a line for addr is in the file or queued.
func (f *File) Has(addr netip.Addr) bool {
	addr = addr.Unmap()
	return f.hosts[addr] || f.queued[addr]
}

// Hosts lists the hosts the file named when last read or written.
func (f *File) Hosts() []netip.Addr {
	out := make([]netip.Addr, 0, len(f.hosts))
	for a := range f.hosts {
		out = append(out, a)
	}
	return out
}

// Add queues the line for the admitted host unless it already has one; it
// reports whether it queued. Only the gate's Pass adds a line: a Pass the
// gate did not make is never queued.
func (f *File) Add(p gate.Pass) bool {
	v := p.Vars()
	if !p.Valid() || f.Has(v.Addr()) {
		return false
	}
	f.queued[v.Addr()] = true
	f.pending = append(f.pending, pendingLine{addr: v.Addr(), line: f.tmpl.Render(v)})
	return true
}

// Pending is the number of queued lines.
func (f *File) Pending() int { return len(f.pending) }

// Flush writes the queued lines in one atomic rewrite and returns the hosts
// it added (a host another writer added meanwhile is left out). On error no
// line was added and the queue is dropped: the caller reports each as failed.
func (f *File) Flush() ([]netip.Addr, error) {
	pending := f.pending
	f.pending, f.queued = nil, map[netip.Addr]bool{}
	if len(pending) == 0 {
		return nil, nil
	}
	var added []netip.Addr
	err := f.locked(func(cur []byte) ([]byte, error) {
		var buf bytes.Buffer
		buf.Grow(len(cur) + len(pending)*(len(f.tmpl.text)+32))
		buf.Write(cur)
		if len(cur) > 0 && cur[len(cur)-1] != '\n' {
			buf.WriteByte('\n')
		}
		for _, p := range pending {
			if f.hosts[p.addr] {
				continue
			}
			buf.WriteString(p.line)
			buf.WriteByte('\n')
			added = append(added, p.addr)
		}
		if len(added) == 0 {
			return nil, nil
		}
		return buf.Bytes(), nil
	})
	if err != nil {
		return nil, err
	}
	for _, a := range added {
		f.hosts[a] = true
	}
	return added, nil
}

// Remove deletes every line this template made for the given hosts, in one
// rewrite, and returns the number of lines removed.
func (f *File) Remove(addrs ...netip.Addr) (int, error) {
	drop := make(map[netip.Addr]bool, len(addrs))
	for _, a := range addrs {
		drop[a.Unmap()] = true
	}
	removed := 0
	err := f.locked(func(cur []byte) ([]byte, error) {
		var buf bytes.Buffer
		buf.Grow(len(cur))
		for rest := cur; len(rest) > 0; {
			line := rest
			if i := bytes.IndexByte(rest, '\n'); i >= 0 {
				line, rest = rest[:i+1], rest[i+1:]
			} else {
				rest = nil
			}
			if a, ok := f.tmpl.host(bytes.TrimRight(line, "\n")); ok && drop[a] {
				removed++
				continue
			}
			buf.Write(line)
		}
		if removed == 0 {
			return nil, nil
		}
		return buf.Bytes(), nil
	})
	if err != nil {
		return 0, err
	}
	for a := range drop {
		delete(f.hosts, a)
	}
	return removed, nil
}

// locked takes the lock, reads the current file and, if edit returns new
// content, replaces the file with it.
func (f *File) locked(edit func(cur []byte) ([]byte, error)) error {
	lock, err := os.OpenFile(f.path+".lock", os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("hostsdeny: lock %s: %w", f.path, err)
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		return fmt.Errorf("hostsdeny: lock %s: %w", f.path, err)
	}
	// Closing the descriptor releases the lock.
	fi, err := f.read()
	if err != nil {
		return err
	}
	next, err := edit(f.content)
	if err != nil || next == nil {
		return err
	}
	if err := f.replace(next, fi); err != nil {
		return err
	}
	return nil
}

// read loads the file unless it is unchanged since the last read or write,
// re-indexing its hosts. It refuses a missing file, a symlink, anything but
// a regular file, and a file that is read-only.
func (f *File) read() (fs.FileInfo, error) {
	fi, err := os.Lstat(f.path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("hostsdeny: %s does not exist (create it to enable KILL_HOSTS_DENY)", f.path)
		}
		return nil, fmt.Errorf("hostsdeny: %w", err)
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		return nil, fmt.Errorf("hostsdeny: %s is a symlink; refusing to follow it", f.path)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("hostsdeny: %s is not a regular file (%s)", f.path, fi.Mode().Type())
	}
	if fi.Mode().Perm()&0o222 == 0 {
		return nil, fmt.Errorf("hostsdeny: %s is read-only (mode %04o); not editing it", f.path, fi.Mode().Perm())
	}
	if st := stampOf(fi); f.hosts != nil && st == f.stamp {
		return fi, nil
	}
	// O_NOFOLLOW closes the window between Lstat and open.
	fd, err := os.OpenFile(f.path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) {
			return nil, fmt.Errorf("hostsdeny: %s is a symlink; refusing to follow it", f.path)
		}
		return nil, fmt.Errorf("hostsdeny: %w", err)
	}
	defer fd.Close()
	ofi, err := fd.Stat()
	if err != nil {
		return nil, fmt.Errorf("hostsdeny: %w", err)
	}
	content := make([]byte, 0, ofi.Size()+512)
	buf := bytes.NewBuffer(content)
	if _, err := buf.ReadFrom(fd); err != nil {
		return nil, fmt.Errorf("hostsdeny: read %s: %w", f.path, err)
	}
	f.content = buf.Bytes()
	f.stamp = stampOf(ofi)
	f.hosts = map[netip.Addr]bool{}
	for line := range bytes.Lines(f.content) {
		if a, ok := f.tmpl.host(bytes.TrimRight(line, "\n")); ok {
			f.hosts[a] = true
		}
	}
	return ofi, nil
}

// replace writes content to a temporary file in the same directory, gives it
// the old file's owner and mode, syncs it, renames it over the old file and
// syncs the directory, so the new name survives a crash.
func (f *File) replace(content []byte, old fs.FileInfo) error {
	dir := filepath.Dir(f.path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(f.path)+".tmp*")
	if err != nil {
		return fmt.Errorf("hostsdeny: cannot write in %s: %w", dir, err)
	}
	done := false
	defer func() {
		if !done {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if st, ok := old.Sys().(*syscall.Stat_t); ok {
		if err := tmp.Chown(int(st.Uid), int(st.Gid)); err != nil {
			return fmt.Errorf("hostsdeny: keep owner of %s: %w", f.path, err)
		}
	}
	if err := tmp.Chmod(old.Mode().Perm()); err != nil {
		return fmt.Errorf("hostsdeny: keep mode of %s: %w", f.path, err)
	}
	if _, err := tmp.Write(content); err != nil {
		return fmt.Errorf("hostsdeny: write %s: %w", tmp.Name(), err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("hostsdeny: sync %s: %w", tmp.Name(), err)
	}
	fi, err := tmp.Stat()
	if err != nil {
		return fmt.Errorf("hostsdeny: stat %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("hostsdeny: close %s: %w", tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), f.path); err != nil {
		return fmt.Errorf("hostsdeny: replace %s: %w", f.path, err)
	}
	done = true
	if d, err := os.Open(dir); err == nil {
		err = d.Sync()
		d.Close()
		if err != nil {
			return fmt.Errorf("hostsdeny: sync directory %s: %w", dir, err)
		}
	}
	f.content, f.stamp = content, stampOf(fi)
	return nil
}

func stampOf(fi fs.FileInfo) fileStamp {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileStamp{size: fi.Size(), mtimNs: fi.ModTime().UnixNano()}
	}
	return fileStamp{dev: st.Dev, ino: st.Ino, size: st.Size, mtimNs: fi.ModTime().UnixNano()}
}
