// Package hostsdeny is the KILL_HOSTS_DENY action: it adds one line per host
// to a TCP Wrappers hosts.deny and removes it again, sharing the file with
// administrators, fail2ban and DenyHosts, who append to it without
// ps-block's lock:
//
//   - Lines are added by appending, one write per batch under the lock
//     (other ps-block processes are kept out by flock on a lock file beside
//     it), never by rewriting the file, so nothing another writer appends
//     meanwhile can be lost.
//   - Only a removal rewrites the file, atomically (a crash leaves the old or
//     the new file), keeping its owner and mode; a change made meanwhile is
//     detected and the rewrite done again, and bytes appended to the old file
//     after all are carried over to the new one.
//   - ps-block removes only the lines it added, remembered across restarts in
//     a record file of its own; a line already there (an administrator's
//     permanent ban) is never added again, never taken as ps-block's, and
//     stays when ps-block's block ends.
//
// The file is never followed through a symlink nor opened if it is not a
// regular file.
package hostsdeny

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/portsentry/pipeline/ps-block/gate"
	"github.com/portsentry/pipeline/ps-block/macro"
	"github.com/portsentry/pipeline/ps-block/recfile"
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

// RecordSuffix is added to BLOCKED_FILE to name the file where ps-block
// keeps the hosts.deny lines it added: "ADDRESS LINE" each.
const RecordSuffix = ".hosts.deny"

// File is one hosts.deny with an index of the hosts it names. It is not
// safe for concurrent use; other processes are kept out by the lock file.
type File struct {
	path    string
	record  string // where the lines ps-block added are remembered; "": not across restarts
	tmpl    *Template
	present map[netip.Addr]bool   // hosts with a line of this template, as of the last read
	ours    map[netip.Addr]string // hosts whose line ps-block added, with that line
	stamp   fileStamp             // identifies the version read, to skip a re-read
	pending []pendingLine
	queued  map[netip.Addr]bool
	// olds are the versions rewrites replaced, each kept open for
	// oldKeep: a writer that opened one just before the rename may still
	// append to it, and each edit carries that over.
	olds []oldVersion
	// Carried counts the bytes carried over from a replaced version (for
	// the log and tests).
	Carried int64
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

// New returns the action for path; record names the file that remembers
// the lines ps-block added ("" keeps them in memory only). Nothing is read
// until Load, Check or Flush.
func New(path, record string, tmpl *Template) *File {
	return &File{path: path, record: record, tmpl: tmpl, queued: map[netip.Addr]bool{}}
}

// Load reads the file and the record of ps-block's lines. A remembered line
// no longer in the file (an administrator removed it) is forgotten.
func (f *File) Load() error {
	if err := f.scan(); err != nil {
		return err
	}
	return f.loadRecord()
}

// Check says why the file cannot be edited, when ps-block starts rather
// than at the first attack: missing, not a regular file, read-only, on a
// read-only file system (a systemd unit's ProtectSystem), or in a directory
// where the new version cannot be written.
func (f *File) Check() error {
	fd, _, err := f.open(os.O_WRONLY | os.O_APPEND)
	if err != nil {
		return err
	}
	fd.Close()
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
	return f.present[addr] || f.queued[addr]
}

// Ours reports whether ps-block added the host's line (or queued it).
func (f *File) Ours(addr netip.Addr) bool {
	addr = addr.Unmap()
	_, ok := f.ours[addr]
	return ok || f.queued[addr]
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

// Line is the line the template makes for the admitted host, for the log.
func (f *File) Line(p gate.Pass) string { return f.tmpl.Render(p.Vars()) }

// Pending is the number of queued lines.
func (f *File) Pending() int { return len(f.pending) }

// Flush appends the queued lines in one write under the lock and returns
// the hosts it added; a host another writer gave a line meanwhile is left
// out (and is not ps-block's). On error no line was added and the queue is
// dropped: the caller reports each as failed.
func (f *File) Flush() ([]netip.Addr, error) {
	pending := f.pending
	f.pending, f.queued = nil, map[netip.Addr]bool{}
	if len(pending) == 0 {
		return nil, nil
	}
	unlock, err := f.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	if err := f.scan(); err != nil {
		return nil, err
	}
	var (
		buf, rec bytes.Buffer
		added    []netip.Addr
		lines    []pendingLine
	)
	for _, p := range pending {
		if f.present[p.addr] {
			continue
		}
		f.present[p.addr] = true // a host twice in one batch gets one line
		buf.WriteString(p.line)
		buf.WriteByte('\n')
		added = append(added, p.addr)
		lines = append(lines, p)
	}
	if len(added) == 0 {
		return nil, nil
	}
	if err := f.append(buf.Bytes()); err != nil {
		for _, a := range added {
			delete(f.present, a)
		}
		return nil, err
	}
	if f.ours == nil {
		f.ours = map[netip.Addr]string{}
	}
	for _, p := range lines {
		f.ours[p.addr] = p.line
		rec.WriteString(p.addr.String() + " " + p.line + "\n")
	}
	if f.record != "" {
		if err := recfile.Append(f.record, rec.Bytes()); err != nil {
			return added, fmt.Errorf("hostsdeny: lines added, but not remembered (they will not be removed after a restart): %w", err)
		}
	}
	return added, nil
}

// append writes text at the end of the file in one write, after a newline
// if the file lacks its last one.
func (f *File) append(text []byte) error {
	fd, fi, err := f.open(os.O_RDWR | os.O_APPEND)
	if err != nil {
		return err
	}
	defer fd.Close()
	if size := fi.Size(); size > 0 {
		last := make([]byte, 1)
		if _, err := fd.ReadAt(last, size-1); err != nil {
			return fmt.Errorf("hostsdeny: read %s: %w", f.path, err)
		}
		if last[0] != '\n' {
			text = append([]byte{'\n'}, text...)
		}
	}
	if _, err := fd.Write(text); err != nil {
		return fmt.Errorf("hostsdeny: append to %s: %w", f.path, err)
	}
	if err := fd.Sync(); err != nil {
		return fmt.Errorf("hostsdeny: sync %s: %w", f.path, err)
	}
	// Unchanged by anyone else since the scan: the index is still right,
	// and the next scan need not read the file again.
	if after, err := fd.Stat(); err == nil && stampOf(fi) == f.stamp && after.Size() == fi.Size()+int64(len(text)) {
		f.stamp = stampOf(after)
	}
	return nil
}

// Remove deletes, in one rewrite, the line ps-block added for each of the
// given hosts, and returns how many lines it removed. A host whose line
// ps-block did not add keeps it: NotOurs lists those.
func (f *File) Remove(addrs ...netip.Addr) (int, error) {
	drop := map[string]int{} // line -> how many to drop
	var forget []netip.Addr
	for _, a := range addrs {
		a = a.Unmap()
		if line, ok := f.ours[a]; ok {
			drop[strings.TrimSpace(line)]++
			forget = append(forget, a)
		}
	}
	unlock, err := f.lock()
	if err != nil {
		return 0, err
	}
	defer unlock()
	if len(drop) == 0 {
		// Still read the file: its errors are the caller's to report.
		return 0, f.scan()
	}
	removed, err := f.rewrite(drop)
	if err != nil {
		return 0, err
	}
	for _, a := range forget {
		delete(f.ours, a)
	}
	if err := f.saveRecord(); err != nil {
		return removed, err
	}
	return removed, nil
}

// NotOurs lists the hosts among addrs that have a line ps-block did not add.
func (f *File) NotOurs(addrs ...netip.Addr) []netip.Addr {
	var out []netip.Addr
	for _, a := range addrs {
		a = a.Unmap()
		if _, ok := f.ours[a]; !ok && f.present[a] {
			out = append(out, a)
		}
	}
	return out
}

// maxRetries bounds the rewrites started again because another writer
// changed the file meanwhile.
const maxRetries = 8

// rewrite replaces the file with a copy that lacks the lines in drop (each
// as many times as counted, the first ones), and returns how many went.
// If the file was replaced or changed in place while the copy was made, the
// copy is made again; what was appended is carried over.
func (f *File) rewrite(drop map[string]int) (int, error) {
	for try := 0; try < maxRetries; try++ {
		fd, before, err := f.open(os.O_RDONLY)
		if err != nil {
			return 0, err
		}
		removed, done, err := f.rewriteFrom(fd, before, drop)
		if err != nil || done {
			if !done {
				fd.Close()
			}
			return removed, err
		}
		fd.Close()
	}
	return 0, fmt.Errorf("hostsdeny: %s changed during each of %d rewrites; lines not removed, will retry at the next change", f.path, maxRetries)
}

// rewriteFrom makes the new version from fd and renames it over the file
// unless the file changed meanwhile (done false). On success fd is kept as
// one of f.olds, so that bytes appended to it late are carried over.
func (f *File) rewriteFrom(fd *os.File, before fs.FileInfo, drop map[string]int) (removed int, done bool, err error) {
	w, err := recfile.Create(f.path, before.Mode().Perm())
	if err != nil {
		return 0, false, fmt.Errorf("hostsdeny: %w", err)
	}
	defer w.Close()
	if st, ok := before.Sys().(*syscall.Stat_t); ok {
		if err := w.Chown(int(st.Uid), int(st.Gid)); err != nil {
			return 0, false, fmt.Errorf("hostsdeny: keep owner of %s: %w", f.path, err)
		}
	}
	left := make(map[string]int, len(drop))
	for k, v := range drop {
		left[k] = v
	}
	present := map[netip.Addr]bool{}
	bw := bufio.NewWriter(w)
	// Not recfile.Lines: a foreign line of any length is copied whole.
	br := bufio.NewReader(io.NewSectionReader(fd, 0, before.Size()))
	for {
		line, rerr := br.ReadBytes('\n')
		if len(line) > 0 {
			text := bytes.TrimRight(line, "\r\n")
			if n := left[string(bytes.TrimSpace(text))]; n > 0 {
				left[string(bytes.TrimSpace(text))] = n - 1
				removed++
			} else {
				bw.Write(line)
				if a, ok := f.tmpl.host(text); ok {
					present[a] = true
				}
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return 0, false, fmt.Errorf("hostsdeny: read %s: %w", f.path, rerr)
		}
	}
	if err := bw.Flush(); err != nil {
		return 0, false, fmt.Errorf("hostsdeny: write %s: %w", w.Name(), err)
	}
	// Replaced or cut short meanwhile: start again from what is there now.
	// Grown only (a writer appended, as they do): the new version goes in,
	// and what was appended after the copy was read is carried over at once.
	now, err := fd.Stat()
	if err != nil {
		return 0, false, fmt.Errorf("hostsdeny: %w", err)
	}
	cur, err := os.Lstat(f.path)
	if err != nil || !os.SameFile(cur, before) || now.Size() < before.Size() ||
		(now.Size() == before.Size() && !now.ModTime().Equal(before.ModTime())) {
		return 0, false, nil
	}
	if err := w.Commit(); err != nil {
		return 0, false, fmt.Errorf("hostsdeny: %w", err)
	}
	f.retire(fd, before.Size())
	f.present, f.stamp = present, fileStamp{} // the new file's stamp is read at the next scan
	return removed, true, nil
}

// oldVersion is a replaced version of the file, still open.
type oldVersion struct {
	fd    *os.File
	size  int64 // what of it was read, or carried over since
	until time.Time
}

// oldKeep is how long a replaced version is watched for late appends: far
// longer than any writer holds the file open between its open and its write.
const oldKeep = 5 * time.Second

// retire keeps fd, the version just replaced, open for oldKeep: a writer
// that opened it just before the rename may append to it later, and each
// edit under the lock carries that over.
func (f *File) retire(fd *os.File, size int64) {
	f.olds = append(f.olds, oldVersion{fd: fd, size: size, until: time.Now().Add(oldKeep)})
	f.carryOver()
}

// carryOver appends to the file what was appended to each replaced version
// after it was read, and lets go of those watched long enough. Called under
// the lock.
func (f *File) carryOver() {
	now := time.Now()
	kept := f.olds[:0]
	for _, o := range f.olds {
		if fi, err := o.fd.Stat(); err == nil && fi.Size() > o.size {
			late := make([]byte, fi.Size()-o.size)
			if _, err := o.fd.ReadAt(late, o.size); err == nil && f.append(late) == nil {
				f.Carried += int64(len(late))
				o.size = fi.Size()
				f.stamp = fileStamp{} // foreign lines came in: index them again
			}
		}
		if now.Before(o.until) {
			kept = append(kept, o)
		} else {
			o.fd.Close()
		}
	}
	clear(f.olds[len(kept):])
	f.olds = kept
}

// lock takes the lock file beside the file; the returned function releases
// it (and first carries over what a late writer appended to the version the
// last rewrite replaced).
func (f *File) lock() (func(), error) {
	lock, err := recfile.Open(f.path+".lock", os.O_RDWR|os.O_CREATE)
	if err != nil {
		return nil, fmt.Errorf("hostsdeny: lock %s: %w", f.path, err)
	}
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		lock.Close()
		return nil, fmt.Errorf("hostsdeny: lock %s: %w", f.path, err)
	}
	f.carryOver()
	// Closing the descriptor releases the lock.
	return func() { lock.Close() }, nil
}

// open opens the file, refusing a missing file, a symlink, anything but a
// regular file, and a file that is read-only.
func (f *File) open(flag int) (*os.File, fs.FileInfo, error) {
	fd, err := recfile.OpenShared(f.path, flag)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, fmt.Errorf("hostsdeny: %s does not exist (create it to enable KILL_HOSTS_DENY)", f.path)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("hostsdeny: %w", err)
	}
	fi, err := fd.Stat()
	if err == nil && fi.Mode().Perm()&0o222 == 0 {
		err = fmt.Errorf("hostsdeny: %s is read-only (mode %04o); not editing it", f.path, fi.Mode().Perm())
	}
	if err != nil {
		fd.Close()
		return nil, nil, err
	}
	return fd, fi, nil
}

// scan reads the file unless it is unchanged since the last read, indexing
// the hosts this template's lines name, a line at a time.
func (f *File) scan() error {
	fd, fi, err := f.open(os.O_RDONLY)
	if err != nil {
		return err
	}
	defer fd.Close()
	if st := stampOf(fi); f.present != nil && st == f.stamp {
		return nil
	}
	present := map[netip.Addr]bool{}
	err = recfile.Lines(io.NewSectionReader(fd, 0, fi.Size()), func(_ int, line []byte, err error) error {
		if err == nil {
			if a, ok := f.tmpl.host(line); ok {
				present[a] = true
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("hostsdeny: read %s: %w", f.path, err)
	}
	f.present, f.stamp = present, stampOf(fi)
	return nil
}

// loadRecord reads the lines ps-block added; those no longer in the file
// are forgotten, and the record rewritten without them.
func (f *File) loadRecord() error {
	f.ours = map[netip.Addr]string{}
	if f.record == "" {
		return nil
	}
	fd, err := recfile.Open(f.record, os.O_RDONLY)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("hostsdeny: %w", err)
	}
	defer fd.Close()
	stale := 0
	err = recfile.Lines(fd, func(n int, line []byte, err error) error {
		addrText, text, ok := bytes.Cut(line, []byte(" "))
		a, perr := netip.ParseAddr(string(addrText))
		if err != nil || !ok || perr != nil {
			stale++ // unreadable: dropped at the rewrite below
			return nil
		}
		if !f.present[a.Unmap()] {
			stale++
			return nil
		}
		f.ours[a.Unmap()] = string(text)
		return nil
	})
	if err != nil {
		return fmt.Errorf("hostsdeny: read %s: %w", f.record, err)
	}
	if stale > 0 {
		return f.saveRecord()
	}
	return nil
}

// saveRecord rewrites the record with the lines ps-block has in the file.
func (f *File) saveRecord() error {
	if f.record == "" {
		return nil
	}
	var buf bytes.Buffer
	for a, line := range f.ours {
		buf.WriteString(a.String() + " " + line + "\n")
	}
	if err := recfile.Replace(f.record, buf.Bytes()); err != nil {
		return fmt.Errorf("hostsdeny: %w", err)
	}
	return nil
}

func stampOf(fi fs.FileInfo) fileStamp {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileStamp{size: fi.Size(), mtimNs: fi.ModTime().UnixNano()}
	}
	return fileStamp{dev: st.Dev, ino: st.Ino, size: st.Size, mtimNs: fi.ModTime().UnixNano()}
}
