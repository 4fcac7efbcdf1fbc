// Package ignore reads PortSentry's ignore file: addresses and CIDR networks,
// IPv4 and IPv6, that must never be reacted to.
//
// The parser fails closed: whatever it cannot read costs at most the one
// line it is on, never the lines after it. A line's first field is its
// entry, as in 1.2 (`10.1.2.3/32 gateway` takes 10.1.2.3/32, and so does
// `10.1.2.3/32gateway`); further fields that are addresses are taken too
// (an address is better protected twice than lost),
// other trailing text is ignored. A line longer than MaxLine is read up to
// MaxLine bytes and the rest skipped; "#" starts a comment.
package ignore

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"

	"github.com/portsentry/pipeline/shared/config"
)

// maxLines bounds what one file may load, so a runaway file cannot exhaust memory.
const maxLines = 1_000_000

// MaxLine is how much of one line is read; the rest of a longer line (a
// long comment) is skipped.
const MaxLine = 4096

// List is a parsed ignore file. The zero List ignores nothing.
type List struct {
	hosts map[netip.Addr]struct{}
	nets  []netip.Prefix
	order []netip.Prefix // every entry once, in file order
}

// Contains reports whether a is ignored.
func (l *List) Contains(a netip.Addr) bool {
	if l == nil {
		return false
	}
	a = a.Unmap()
	if _, ok := l.hosts[a]; ok {
		return true
	}
	for _, p := range l.nets {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// Len is the number of entries.
func (l *List) Len() int {
	if l == nil {
		return 0
	}
	return len(l.order)
}

// Prefixes lists the entries, a host as a /32 or /128, in file order.
func (l *List) Prefixes() []netip.Prefix {
	if l == nil {
		return nil
	}
	return l.order
}

func (l *List) add(p netip.Prefix) {
	if p.IsSingleIP() {
		if _, dup := l.hosts[p.Addr()]; dup {
			return
		}
		l.hosts[p.Addr()] = struct{}{}
	} else {
		for _, q := range l.nets {
			if q == p {
				return
			}
		}
		l.nets = append(l.nets, p)
	}
	l.order = append(l.order, p)
}

// Parse reads entries from r. A line that holds no address is reported in
// problems with its line number and skipped; the other lines still count.
// err is a failure to read r, or a file over maxLines lines.
func Parse(r io.Reader, name string) (l *List, problems []error, err error) {
	l = &List{hosts: map[netip.Addr]struct{}{}}
	br := bufio.NewReaderSize(r, MaxLine)
	for n := 1; ; n++ {
		line, cut, rerr := readLine(br)
		if rerr != nil && rerr != io.EOF {
			return l, problems, fmt.Errorf("ignore file %s line %d: %w", name, n, rerr)
		}
		if rerr == io.EOF && len(line) == 0 && !cut {
			return l, problems, nil
		}
		if n > maxLines {
			return l, problems, fmt.Errorf("ignore file %s: more than %d lines", name, maxLines)
		}
		if perr := parseLine(l, line, cut); perr != nil {
			problems = append(problems, fmt.Errorf("ignore file %s line %d: %w", name, n, perr))
		}
		if rerr == io.EOF {
			return l, problems, nil
		}
	}
}

// readLine returns the next line without its newline, at most MaxLine
// bytes of it; cut says that more was skipped.
func readLine(br *bufio.Reader) (line string, cut bool, err error) {
	b, err := br.ReadSlice('\n')
	if err == nil || err == io.EOF {
		return strings.TrimSuffix(string(b), "\n"), false, err
	}
	if err != bufio.ErrBufferFull {
		return "", false, err
	}
	line = string(b)
	for err == bufio.ErrBufferFull {
		_, err = br.ReadSlice('\n')
	}
	if err != nil && err != io.EOF {
		return "", false, err
	}
	return line, true, err
}

// parseLine adds the entries of one line to l.
func parseLine(l *List, line string, cut bool) error {
	if i := strings.IndexByte(line, '#'); i >= 0 {
		line, cut = line[:i], false
	}
	fields := strings.Fields(line)
	// A field running into the cut may be cut itself.
	if cut && len(fields) > 0 && !strings.HasSuffix(line, " ") && !strings.HasSuffix(line, "\t") {
		fields = fields[:len(fields)-1]
	}
	if len(fields) == 0 {
		if cut {
			return fmt.Errorf("longer than %d bytes with no address in its first %d", MaxLine, MaxLine)
		}
		return nil
	}
	var problem error
	if p, ok := leadingPrefix(fields[0]); ok {
		l.add(p)
	} else {
		_, problem = config.ParsePrefix(fields[0])
	}
	for _, f := range fields[1:] {
		if p, err := config.ParsePrefix(f); err == nil {
			l.add(p)
		}
	}
	return problem
}

// leadingPrefix parses s, or else the address characters s starts with, as
// 1.2 took them (`10.1.2.3/32host`, `fe80::1%eth0`). The cut is only ever
// where an address character meets another: `10.0.0.0/33` is refused, not
// read as 10.0.0.0/3.
func leadingPrefix(s string) (netip.Prefix, bool) {
	if p, err := config.ParsePrefix(s); err == nil {
		return p, true
	}
	if n := addressRun(s); n > 0 && n < len(s) {
		if p, err := config.ParsePrefix(s[:n]); err == nil {
			return p, true
		}
	}
	return netip.Prefix{}, false
}

// addressRun is the length of the leading run of characters an address or
// CIDR network is written with.
func addressRun(s string) int {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' || c == '.' || c == ':' || c == '/') {
			return i
		}
	}
	return len(s)
}

// Load reads the ignore file at path. A missing file is an error that
// wraps fs.ErrNotExist, so that the caller can say so loudly: hosts are
// then judged with nothing ignored.
func Load(path string) (*List, []error, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil, fmt.Errorf("ignore file %s does not exist: %w", path, err)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("ignore file: %w", err)
	}
	defer f.Close()
	return Parse(f, path)
}
