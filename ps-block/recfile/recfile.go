// Package recfile is the one way ps-block opens, appends to and rewrites
// the files it keeps its records in (BLOCKED_FILE.<mode>, its .until and
// other state files beside it, HISTORY_FILE) and hosts.deny. ps-block runs
// as root, so a file another user planted there, a FIFO (which would hang
// it while it holds its lock) or a symlink must be refused, not used: Open
// never follows a symlink, never blocks, and accepts only a regular file
// owned by ps-block's own user and writable by nobody else.
package recfile

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// DirMode is the mode of a record directory Dir creates.
const DirMode = 0o750

// Open opens path with flag (os.O_RDONLY, or os.O_WRONLY|os.O_APPEND, with
// os.O_CREATE to create it with mode 0600) and checks what it opened.
// A missing file without os.O_CREATE is an error that wraps fs.ErrNotExist.
func Open(path string, flag int) (*os.File, error) {
	return open(path, flag, true)
}

// OpenShared is Open for a file ps-block edits but does not own (hosts.deny,
// which TCP Wrappers and other tools share): any owner and mode, but still
// only a regular file, never a symlink, never blocking.
func OpenShared(path string, flag int) (*os.File, error) {
	return open(path, flag, false)
}

func open(path string, flag int, owned bool) (*os.File, error) {
	// O_NONBLOCK: opening a FIFO returns at once (and a FIFO opened for
	// writing with no reader fails) instead of waiting for a peer; it has
	// no effect on a regular file.
	f, err := os.OpenFile(path, flag|syscall.O_NOFOLLOW|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		switch {
		case errors.Is(err, syscall.ELOOP):
			return nil, fmt.Errorf("%s is a symlink: refusing to follow it", path)
		case errors.Is(err, syscall.ENXIO):
			return nil, fmt.Errorf("%s is not a regular file (a FIFO or socket): refusing it", path)
		}
		return nil, err
	}
	fi, err := f.Stat()
	switch {
	case err != nil:
	case owned:
		err = Check(path, fi)
	case !fi.Mode().IsRegular():
		err = fmt.Errorf("%s is not a regular file (%s): refusing it", path, fileType(fi.Mode()))
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// Check says why fi, the file at path, must not hold ps-block's records:
// not a regular file, owned by another user than ps-block's (or than the
// owner of its directory, who could replace it anyway: root reading the
// records of a ps-block that runs as its own user), or writable by group
// or others. nil: it may.
func Check(path string, fi fs.FileInfo) error {
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file (%s): refusing it", path, fileType(fi.Mode()))
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Geteuid() && !ownsDir(path, st.Uid) {
		return fmt.Errorf("%s is owned by uid %d, not by ps-block's user (uid %d) nor by its directory's owner: refusing it (chown it, or remove it if you did not put it there)", path, st.Uid, os.Geteuid())
	}
	if perm := fi.Mode().Perm(); perm&0o022 != 0 {
		return fmt.Errorf("%s is writable by group or others (mode %04o): refusing it (chmod go-w)", path, perm)
	}
	return nil
}

// ownsDir reports whether uid owns path's directory and nobody else may
// write in it.
func ownsDir(path string, uid uint32) bool {
	fi, err := os.Stat(filepath.Dir(path))
	if err != nil || fi.Mode().Perm()&0o022 != 0 {
		return false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && st.Uid == uid
}

func fileType(m fs.FileMode) string {
	switch {
	case m&fs.ModeNamedPipe != 0:
		return "a FIFO"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeDevice != 0:
		return "a device"
	case m.IsDir():
		return "a directory"
	}
	return m.Type().String()
}

// Read returns the whole file; a missing file is an error wrapping
// fs.ErrNotExist. Only for files bounded by what ps-block keeps in memory.
func Read(path string) ([]byte, os.FileInfo, error) {
	f, err := Open(path, os.O_RDONLY)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	buf := bytes.NewBuffer(make([]byte, 0, fi.Size()+512))
	if _, err := buf.ReadFrom(f); err != nil {
		return nil, nil, fmt.Errorf("read %s: %w", path, err)
	}
	return buf.Bytes(), fi, nil
}

// Append adds text to path in one write, creating it (mode 0600) if needed.
func Append(path string, text []byte) error {
	if len(text) == 0 {
		return nil
	}
	f, err := Open(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE)
	if err != nil {
		return err
	}
	if _, err := f.Write(text); err != nil {
		f.Close()
		return fmt.Errorf("append to %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", path, err)
	}
	return nil
}

// Writer writes a new version of a file beside it; Commit renames it over
// the file, so a crash leaves the old or the new file, never a torn one.
type Writer struct {
	*os.File
	path string
	done bool
}

// Create starts a new version of path, with mode perm (the old file's, to
// keep it).
func Create(path string, perm fs.FileMode) (*Writer, error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return nil, fmt.Errorf("rewrite %s: %w", path, err)
	}
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return nil, fmt.Errorf("rewrite %s: %w", path, err)
	}
	return &Writer{File: tmp, path: path}, nil
}

// Commit syncs the new version, renames it over the file and syncs the
// directory, so the new name survives a crash.
func (w *Writer) Commit() error {
	err := w.Sync()
	if cerr := w.File.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(w.Name(), w.path)
	}
	if err != nil {
		os.Remove(w.Name())
		w.done = true
		return fmt.Errorf("rewrite %s: %w", w.path, err)
	}
	w.done = true
	if d, err := os.Open(filepath.Dir(w.path)); err == nil {
		err = d.Sync()
		d.Close()
		if err != nil {
			return fmt.Errorf("rewrite %s: sync directory: %w", w.path, err)
		}
	}
	return nil
}

// Close abandons a version not committed; after Commit it does nothing.
func (w *Writer) Close() error {
	if w.done {
		return nil
	}
	w.done = true
	w.File.Close()
	return os.Remove(w.Name())
}

// Replace writes content as the new version of path, keeping its mode
// (0600 for a new file).
func Replace(path string, content []byte) error {
	perm := fs.FileMode(0o600)
	if fi, err := os.Lstat(path); err == nil {
		perm = fi.Mode().Perm()
	}
	w, err := Create(path, perm)
	if err != nil {
		return err
	}
	defer w.Close()
	if _, err := w.Write(content); err != nil {
		return fmt.Errorf("rewrite %s: %w", path, err)
	}
	return w.Commit()
}

// Dir makes sure the directory path's file goes in exists, creating it
// (and its missing parents) with DirMode; it reports whether it created
// it. A path that exists but is not a directory is an error.
func Dir(path string) (created bool, err error) {
	dir := filepath.Dir(path)
	fi, err := os.Stat(dir)
	if err == nil {
		if !fi.IsDir() {
			return false, fmt.Errorf("%s is not a directory", dir)
		}
		return false, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return false, err
	}
	if err := os.MkdirAll(dir, DirMode); err != nil {
		return false, fmt.Errorf("cannot create %s: %w", dir, err)
	}
	return true, nil
}

// CheckExisting opens path if it exists, to refuse a planted file at start
// rather than at the first block. A missing file is fine.
func CheckExisting(path string) error {
	f, err := Open(path, os.O_RDONLY)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	return f.Close()
}

// MaxLine bounds a record line; a longer one is skipped as bad, whole.
const MaxLine = 4096

// ErrTooLong is the error Lines gives for a line over MaxLine bytes.
var ErrTooLong = fmt.Errorf("line longer than %d bytes", MaxLine)

// Lines calls fn with each line of r (without its newline; a last line
// without one counts), numbered from 1, holding at most MaxLine bytes of it
// in memory. An overlong line is passed once as nil with ErrTooLong. The
// slice is valid only during the call. fn's error stops the scan.
func Lines(r io.Reader, fn func(n int, line []byte, err error) error) error {
	br := bufio.NewReaderSize(r, MaxLine+1)
	long := false
	for n := 1; ; {
		line, err := br.ReadSlice('\n')
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			long = true
			continue
		case err != nil && !errors.Is(err, io.EOF):
			return err
		}
		if long {
			if ferr := fn(n, nil, ErrTooLong); ferr != nil {
				return ferr
			}
			long = false
			n++
		} else if len(line) > 0 {
			if ferr := fn(n, bytes.TrimSuffix(line, []byte("\n")), nil); ferr != nil {
				return ferr
			}
			n++
		}
		if err != nil {
			return nil
		}
	}
}
