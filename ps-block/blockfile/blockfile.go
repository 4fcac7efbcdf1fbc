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
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"regexp"
	"strconv"
	"time"

	"github.com/portsentry/pipeline/ps-block/recfile"
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
func (l Line) String() string { return string(l.AppendTo(nil)) }

// AppendTo appends the line without its newline to b. It takes the date
// and clock once and formats without fmt: a fleet member writes one line
// per decision, ten thousand a second.
func (l Line) AppendTo(b []byte) []byte {
	t := l.Time
	year, month, day := t.Date()
	hour, minute, sec := t.Clock()
	b = strconv.AppendInt(b, t.Unix(), 10)
	b = append(b, " - "...)
	b = append2(b, int(month), '/')
	b = append2(b, day, '/')
	b = appendPad(b, year, 4, ' ')
	b = append2(b, hour, ':')
	b = append2(b, minute, ':')
	b = append2(b, sec, ' ')
	b = append(b, "Host: "...)
	if safeName.MatchString(l.Name) {
		b = append(b, l.Name...)
	} else {
		b = l.Addr.AppendTo(b)
	}
	b = append(b, '/')
	b = l.Addr.AppendTo(b)
	b = append(b, " Port: "...)
	b = strconv.AppendUint(b, uint64(l.Port), 10)
	b = append(b, ' ')
	b = append(b, l.Proto...)
	return append(b, " Blocked"...)
}

// append2 appends n in at least two digits, then sep.
func append2(b []byte, n int, sep byte) []byte { return appendPad(b, n, 2, sep) }

// appendPad appends n zero-padded to width digits (as %0Nd), then sep.
func appendPad(b []byte, n, width int, sep byte) []byte {
	if n < 0 {
		b = append(b, '-')
		n, width = -n, width-1
	}
	digits := 1
	for x := n; x >= 10; x /= 10 {
		digits++
	}
	for ; digits < width; digits++ {
		b = append(b, '0')
	}
	return append(strconv.AppendInt(b, int64(n), 10), sep)
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

// Append adds lines to path in one write, creating it (mode 0600) if needed,
// through recfile (never a symlink, a FIFO or another user's file).
func Append(path string, lines []Line) error {
	if len(lines) == 0 {
		return nil
	}
	var buf []byte
	for _, l := range lines {
		buf = append(l.AppendTo(buf), '\n')
	}
	if err := recfile.Append(path, buf); err != nil {
		return fmt.Errorf("blockfile: %w", err)
	}
	return nil
}

// Scan calls fn with each line of path that parses, in file order, and bad
// with the number and reason of each that does not, holding one line at a
// time in memory: a blocked file of a million lines is read in constant
// space. A missing file has no lines.
func Scan(path string, fn func(Line), bad func(n int, err error)) error {
	f, err := recfile.Open(path, os.O_RDONLY)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("blockfile: %w", err)
	}
	defer f.Close()
	err = recfile.Lines(f, func(n int, line []byte, err error) error {
		if err == nil && len(line) == 0 {
			return nil
		}
		var l Line
		if err == nil {
			l, err = Parse(string(line))
		}
		if err != nil {
			bad(n, err)
			return nil
		}
		fn(l)
		return nil
	})
	if err != nil {
		return fmt.Errorf("blockfile: read %s: %w", path, err)
	}
	return nil
}

// Keep rewrites path, line by line, with only the lines keep accepts, and
// returns how many it dropped. A line that does not parse is kept, unless
// it is longer than any record (recfile.MaxLine). The file is replaced
// atomically (a crash leaves the old or the new one), and only when a line
// goes. A missing file has none.
func Keep(path string, keep func(Line) bool) (int, error) {
	f, err := recfile.Open(path, os.O_RDONLY)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("blockfile: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, fmt.Errorf("blockfile: %w", err)
	}
	w, err := recfile.Create(path, fi.Mode().Perm())
	if err != nil {
		return 0, fmt.Errorf("blockfile: %w", err)
	}
	defer w.Close()
	bw := bufio.NewWriter(w)
	dropped := 0
	err = recfile.Lines(f, func(n int, line []byte, err error) error {
		if err != nil {
			dropped++
			return nil
		}
		if l, perr := Parse(string(line)); perr == nil && !keep(l) {
			dropped++
			return nil
		}
		bw.Write(line)
		return bw.WriteByte('\n')
	})
	if err != nil || dropped == 0 {
		return 0, err
	}
	if err = bw.Flush(); err == nil {
		err = w.Commit()
	}
	if err != nil {
		return 0, fmt.Errorf("blockfile: %w", err)
	}
	return dropped, nil
}

// Remove drops every line for the given hosts from path by an atomic
// rewrite, and returns how many it dropped. A missing file has none.
func Remove(path string, addrs ...netip.Addr) (int, error) {
	drop := make(map[netip.Addr]bool, len(addrs))
	for _, a := range addrs {
		drop[a.Unmap()] = true
	}
	return Keep(path, func(l Line) bool { return !drop[l.Addr.Unmap()] })
}
