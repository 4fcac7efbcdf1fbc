// Package ignore reads PortSentry's ignore file: addresses and CIDR networks,
// IPv4 and IPv6, one a line, that must never be reacted to.
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

// List is a parsed ignore file. The zero List ignores nothing.
type List struct {
	hosts map[netip.Addr]struct{}
	nets  []netip.Prefix
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
	return len(l.hosts) + len(l.nets)
}

// Parse reads entries from r. A malformed line is reported in problems with
// its line number and skipped; the other lines still count. A bare address
// means one host; "#" starts a comment.
func Parse(r io.Reader, name string) (l *List, problems []error, err error) {
	l = &List{hosts: map[netip.Addr]struct{}{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 4096)
	n := 0
	for sc.Scan() {
		n++
		if n > maxLines {
			return l, problems, fmt.Errorf("ignore file %s: more than %d lines", name, maxLines)
		}
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		p, perr := config.ParsePrefix(line)
		if perr != nil {
			problems = append(problems, fmt.Errorf("ignore file %s line %d: %w", name, n, perr))
			continue
		}
		if p.IsSingleIP() {
			l.hosts[p.Addr()] = struct{}{}
		} else {
			l.nets = append(l.nets, p)
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			err = errors.New("line too long")
		}
		return l, problems, fmt.Errorf("ignore file %s line %d: %w", name, n+1, err)
	}
	return l, problems, nil
}

// Load reads the ignore file at path. A missing file is an empty list and
// no error: 1.2 ran without one too.
func Load(path string) (*List, []error, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return &List{}, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("ignore file: %w", err)
	}
	defer f.Close()
	return Parse(f, path)
}
