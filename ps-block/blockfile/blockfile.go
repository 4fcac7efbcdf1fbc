// Package blockfile writes and reads PortSentry 1.2's BLOCKED_FILE.<mode> and
// HISTORY_FILE lines:
//
//	EPOCH - MM/DD/YYYY HH:MM:SS Host: NAME/IP Port: N TCP|UDP Blocked
//
// byte for byte as 1.2 wrote them (local time), which fail2ban's stock
// portsentry filter matches. The blocked file is also ps-block's memory
// across restarts: Load reads it back and Remove drops a lifted host.
package blockfile

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"syscall"
	"time"
)

// Line is one blocked host.
type Line struct {
	Time  time.Time
	Name  string // resolved name; empty or unsafe: the address is written
	Addr  netip.Addr
	Port  uint16
	Proto string // "TCP" or "UDP"
}

// safeName is what a host name may hold to be written: a PTR answer is
// chosen by the attacker, and a space, slash or newline would forge a line.
var safeName = regexp.MustCompile(`^[A-Za-z0-9._-]{1,253}$`)

// String is the line without its newline.
func (l Line) String() string {
	name := l.Name
	if !safeName.MatchString(name) {
		name = l.Addr.String()
	}
	t := l.Time
	return fmt.Sprintf("%d - %02d/%02d/%04d %02d:%02d:%02d Host: %s/%s Port: %d %s Blocked",
		t.Unix(), t.Month(), t.Day(), t.Year(), t.Hour(), t.Minute(), t.Second(),
		name, l.Addr, l.Port, l.Proto)
}

var lineRE = regexp.MustCompile(`^(\d+) - \d\d/\d\d/\d{4} \d\d:\d\d:\d\d Host: ([^ /]*)/(\S+) Port: (\d+) (TCP|UDP) Blocked$`)

// Parse reads one line back; the time is the epoch field, in local time.
func Parse(s string) (Line, error) {
	m := lineRE.FindStringSubmatch(s)
	if m == nil {
		return Line{}, fmt.Errorf("not a blocked-file line")
	}
	epoch, err := strconv.ParseInt(m[1], 10, 64)
	if err != nil {
		return Line{}, fmt.Errorf("epoch %q: %w", m[1], err)
	}
	addr, err := netip.ParseAddr(m[3])
	if err != nil {
		return Line{}, fmt.Errorf("address %q: %w", m[3], err)
	}
	port, err := strconv.ParseUint(m[4], 10, 16)
	if err != nil {
		return Line{}, fmt.Errorf("port %q: %w", m[4], err)
	}
	return Line{Time: time.Unix(epoch, 0), Name: m[2], Addr: addr, Port: uint16(port), Proto: m[5]}, nil
}

// Append adds lines to path in one write, creating it (mode 0600) if needed.
// It never follows a symlink.
func Append(path string, lines []Line) error {
	if len(lines) == 0 {
		return nil
	}
	var buf bytes.Buffer
	for _, l := range lines {
		buf.WriteString(l.String())
		buf.WriteByte('\n')
	}
	return AppendText(path, buf.Bytes())
}

// AppendText appends text to path in one write, creating it (mode 0600) if
// needed, never following a symlink: the append-only files ps-block keeps.
func AppendText(path string, text []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("blockfile: %w", err)
	}
	if _, err := f.Write(text); err != nil {
		f.Close()
		return fmt.Errorf("blockfile: append to %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("blockfile: close %s: %w", path, err)
	}
	return nil
}

// BadLine is a line Load could not read.
type BadLine struct {
	N   int
	Err error
}

// Load reads path's lines. A missing file is empty; lines that do not parse
// are returned as BadLine for the caller to report, and skipped.
func Load(path string) ([]Line, []BadLine, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("blockfile: %w", err)
	}
	defer f.Close()
	var (
		lines []Line
		bad   []BadLine
		n     int
	)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		n++
		if len(sc.Bytes()) == 0 {
			continue
		}
		l, err := Parse(sc.Text())
		if err != nil {
			bad = append(bad, BadLine{N: n, Err: err})
			continue
		}
		lines = append(lines, l)
	}
	if err := sc.Err(); err != nil {
		return nil, nil, fmt.Errorf("blockfile: read %s: %w", path, err)
	}
	return lines, bad, nil
}

// Remove drops every line for the given hosts from path by an atomic
// rewrite, and returns how many it dropped. A missing file has none.
func Remove(path string, addrs ...netip.Addr) (int, error) {
	drop := make(map[netip.Addr]bool, len(addrs))
	for _, a := range addrs {
		drop[a.Unmap()] = true
	}
	b, err := readNoFollow(path)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	var out bytes.Buffer
	removed := 0
	for line := range bytes.Lines(b) {
		if l, err := Parse(string(bytes.TrimRight(line, "\n"))); err == nil && drop[l.Addr.Unmap()] {
			removed++
			continue
		}
		out.Write(line)
	}
	if removed == 0 {
		return 0, nil
	}
	if err := replace(path, out.Bytes()); err != nil {
		return 0, err
	}
	return removed, nil
}

func readNoFollow(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("blockfile: %w", err)
	}
	defer f.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(f); err != nil {
		return nil, fmt.Errorf("blockfile: read %s: %w", path, err)
	}
	return buf.Bytes(), nil
}

// replace writes content beside path and renames it over path, keeping the
// mode, so a crash leaves the old or the new file.
func replace(path string, content []byte) error {
	fi, err := os.Lstat(path)
	if err != nil {
		return fmt.Errorf("blockfile: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("blockfile: rewrite %s: %w", path, err)
	}
	defer os.Remove(tmp.Name()) // fails harmlessly once renamed
	_, werr := tmp.Write(content)
	if werr == nil {
		werr = tmp.Chmod(fi.Mode().Perm())
	}
	if werr == nil {
		werr = tmp.Sync()
	}
	if err := tmp.Close(); werr == nil {
		werr = err
	}
	if werr != nil {
		return fmt.Errorf("blockfile: rewrite %s: %w", path, werr)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("blockfile: rewrite %s: %w", path, err)
	}
	return nil
}
