// Package listening knows which TCP and UDP ports of this host have a socket
// listening (TCP state LISTEN) or bound (UDP, any state), as the kernel lists
// them through sock_diag or in /proc/net/{tcp,tcp6,udp,udp6}. The advanced modes watch the other
// ports, so the table is kept current while ps-sniff runs and checked again
// before a hit (the kernel's own socket lookup for the probe, or a new
// reading), so that a port bound a moment ago (an FTP data port) never
// reports a hit.
//
// A port counts whatever address the socket is bound to: like PortSentry
// 1.2's bind() test, a daemon on 127.0.0.1:631 takes port 631 out of the
// watch.
package listening

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/portsentry/pipeline/ps-sniff/probe"
	"golang.org/x/sys/unix"
)

// Ports is a set of port numbers.
type Ports [65536 / 64]uint64

// Has reports whether port is in the set.
func (s *Ports) Has(port uint16) bool { return s[port/64]&(1<<(port%64)) != 0 }

// Add puts port in the set.
func (s *Ports) Add(port uint16) { s[port/64] |= 1 << (port % 64) }

// List returns the ports in the set, in order.
func (s *Ports) List() []uint16 {
	var out []uint16
	for p := range 65536 {
		if s.Has(uint16(p)) {
			out = append(out, uint16(p))
		}
	}
	return out
}

// tcpListen is TCP_LISTEN in include/net/tcp_states.h, as /proc prints it.
const tcpListen = 0x0A

// ParseProc adds to into the local ports of a /proc/net/{tcp,tcp6,udp,udp6}
// table: TCP sockets in LISTEN state when tcp is set, else every UDP socket
// (bound, connected or not: the port is taken either way). Malformed lines
// are skipped; the first one is reported in the error, the others still
// count.
func ParseProc(data []byte, tcp bool, into *Ports) error {
	var bad error
	for n := 0; len(data) > 0; n++ {
		line := data
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			data = nil
		}
		if n == 0 || len(bytes.TrimSpace(line)) == 0 {
			continue // header
		}
		port, state, err := parseLine(line)
		if err != nil {
			if bad == nil {
				bad = fmt.Errorf("line %d: %w", n+1, err)
			}
			continue
		}
		if !tcp || state == tcpListen {
			into.Add(port)
		}
	}
	return bad
}

var errLine = errors.New("malformed socket line")

// parseLine reads "sl: local_address rem_address st ..." where local_address
// is 8 or 32 hex digits, a colon and 4 hex digits of port.
func parseLine(line []byte) (port uint16, state uint8, err error) {
	var f [4][]byte
	for i := range f {
		line = bytes.TrimLeft(line, " ")
		end := bytes.IndexByte(line, ' ')
		if end < 0 {
			if i < len(f)-1 {
				return 0, 0, errLine
			}
			end = len(line)
		}
		f[i], line = line[:end], line[end:]
	}
	sl, local, st := f[0], f[1], f[3]
	if len(sl) < 2 || sl[len(sl)-1] != ':' {
		return 0, 0, errLine
	}
	colon := bytes.IndexByte(local, ':')
	if (colon != 8 && colon != 32) || len(local) != colon+5 || !isHex(local[:colon]) {
		return 0, 0, errLine
	}
	p, ok := hexValue(local[colon+1:])
	s, ok2 := hexValue(st)
	if !ok || !ok2 || len(st) != 2 {
		return 0, 0, errLine
	}
	return uint16(p), uint8(s), nil
}

func isHex(b []byte) bool {
	for _, c := range b {
		if !('0' <= c && c <= '9' || 'A' <= c && c <= 'F' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

func hexValue(b []byte) (uint32, bool) {
	if len(b) == 0 || len(b) > 4 {
		return 0, false
	}
	var v uint32
	for _, c := range b {
		switch {
		case '0' <= c && c <= '9':
			v = v<<4 | uint32(c-'0')
		case 'A' <= c && c <= 'F':
			v = v<<4 | uint32(c-'A'+10)
		case 'a' <= c && c <= 'f':
			v = v<<4 | uint32(c-'a'+10)
		default:
			return 0, false
		}
	}
	return v, true
}

// Table is one reading of the kernel's socket tables.
type Table struct {
	TCP, UDP Ports
	// Read is when the reading started: a socket bound before then is in it.
	Read time.Time
}

// Source tells whether a port was listening when a packet arrived.
type Source interface {
	// Listening reports whether port had a socket at time at.
	Listening(proto probe.Proto, port uint16, at time.Time) bool
	// Taken reports whether probe p, received at time at, was for a port
	// with a socket: the hit check.
	Taken(p *probe.Probe, at time.Time) bool
}

// Static is a fixed table, as learnt from a capture file.
type Static Table

// Taken implements Source.
func (s *Static) Taken(p *probe.Probe, at time.Time) bool {
	return s.Listening(p.Proto, p.Dport, at)
}

// Listening implements Source.
func (s *Static) Listening(proto probe.Proto, port uint16, _ time.Time) bool {
	if proto == probe.ProtoTCP {
		return s.TCP.Has(port)
	}
	return s.UDP.Has(port)
}

// Watcher keeps a Table current by asking the kernel (sock_diag, else
// /proc) on an interval and, through Listening, on demand. It is safe for
// concurrent use.
type Watcher struct {
	diag     *diag // nil: read the /proc tables under dir
	dir      string
	tcp, udp bool
	cur      atomic.Pointer[Table]
	mu       sync.Mutex // serialises reads, which share buf
	buf      []byte
	// OnError is called (under the read lock) when a table cannot be read
	// or has malformed lines; the previous reading stays in use.
	OnError func(error)
}

// NewWatcher reads the tables under dir (normally /proc/net) for the
// protocols asked for, and returns a Watcher holding that first reading.
func NewWatcher(dir string, tcp, udp bool) (*Watcher, error) {
	w := &Watcher{dir: dir, tcp: tcp, udp: udp, buf: make([]byte, 0, 64<<10)}
	t, err := w.read()
	if err != nil {
		return nil, err
	}
	w.cur.Store(t)
	return w, nil
}

// NewKernelWatcher asks the kernel through sock_diag, and falls back to
// /proc/net where sock_diag is not available (a kernel without inet_diag).
// fallback says why it fell back, or "".
func NewKernelWatcher(tcp, udp bool) (w *Watcher, fallback string, err error) {
	d, err := newDiag()
	if err == nil {
		w = &Watcher{diag: d, tcp: tcp, udp: udp}
		var t *Table
		if t, err = w.read(); err == nil {
			w.cur.Store(t)
			return w, "", nil
		}
		unix.Close(d.fd)
	}
	w, err2 := NewWatcher("/proc/net", tcp, udp)
	return w, err.Error(), err2
}

// Table returns the latest reading; callers must not modify it.
func (w *Watcher) Table() *Table { return w.cur.Load() }

// Refresh reads the tables now.
func (w *Watcher) Refresh() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	t, err := w.read()
	if err != nil {
		return err
	}
	w.cur.Store(t)
	return nil
}

// Run refreshes the table every interval until ctx is done.
func (w *Watcher) Run(ctx context.Context, interval time.Duration) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			if err := w.Refresh(); err != nil && w.OnError != nil {
				w.OnError(err)
			}
		}
	}
}

// Listening implements Source. When the latest reading started before at,
// it reads the tables again first: a port bound between the last reading and
// the packet must not make a hit.
func (w *Watcher) Listening(proto probe.Proto, port uint16, at time.Time) bool {
	t := w.cur.Load()
	if t.Read.Before(at) {
		w.mu.Lock()
		if t = w.cur.Load(); t.Read.Before(at) {
			if nt, err := w.read(); err == nil {
				w.cur.Store(nt)
				t = nt
			} else if w.OnError != nil {
				w.OnError(err)
			}
		}
		w.mu.Unlock()
	}
	return (*Static)(t).Listening(proto, port, at)
}

// Taken implements Source. A probe for a port the latest reading has free,
// received after that reading, is checked with one lookup of the socket
// the kernel delivered it to, not a new reading of every table: this is
// the check between a scanner's first probe and its hit line. A socket
// bound since then to another address only (not the probe's) is not seen
// until the next reading; for the probe's address the port was closed.
//
// A probe that waited in the socket's queue longer than lookupMaxAge means
// ps-sniff is behind (a flood): then one new reading, which covers every
// probe queued before it, costs less than a lookup for each.
func (w *Watcher) Taken(p *probe.Probe, at time.Time) bool {
	t := w.cur.Load()
	if w.diag != nil && t.Read.Before(at) && !(*Static)(t).Listening(p.Proto, p.Dport, at) && time.Since(at) < lookupMaxAge {
		w.mu.Lock()
		taken, err := w.diag.owner(p)
		w.mu.Unlock()
		if err == nil {
			return taken
		}
		if w.OnError != nil {
			w.OnError(err)
		}
	}
	return w.Listening(p.Proto, p.Dport, at)
}

// lookupMaxAge is how long a probe may have waited to be read and still be
// checked with its own lookup: about what one reading of the tables costs.
const lookupMaxAge = 500 * time.Microsecond

// read reads the tables; w.mu is held or w is not shared yet.
func (w *Watcher) read() (*Table, error) {
	t := &Table{Read: time.Now()}
	if w.diag != nil {
		if err := w.diag.read(t, w.tcp, w.udp); err != nil {
			return nil, fmt.Errorf("listening ports: %w", err)
		}
		return t, nil
	}
	var files []string
	if w.tcp {
		files = append(files, "tcp", "tcp6")
	}
	if w.udp {
		files = append(files, "udp", "udp6")
	}
	for _, name := range files {
		into := &t.UDP
		if name[0] == 't' {
			into = &t.TCP
		}
		if err := w.readFile(name, into); err != nil {
			return nil, err
		}
	}
	return t, nil
}

func (w *Watcher) readFile(name string, into *Ports) error {
	path := filepath.Join(w.dir, name)
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) && name[len(name)-1] == '6' {
		return nil // IPv6 disabled
	}
	if err != nil {
		return fmt.Errorf("listening ports: %w", err)
	}
	defer f.Close()
	// One reused buffer: /proc files must be read in one go per open, and
	// reading them every second must not churn the heap.
	w.buf = w.buf[:0]
	for {
		if len(w.buf) == cap(w.buf) {
			w.buf = append(w.buf, 0)[:len(w.buf)]
		}
		n, err := f.Read(w.buf[len(w.buf):cap(w.buf)])
		w.buf = w.buf[:len(w.buf)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("listening ports: read %s: %w", path, err)
		}
	}
	if err := ParseProc(w.buf, name[0] == 't', into); err != nil {
		err = fmt.Errorf("listening ports: %s: %w", path, err)
		if w.OnError != nil {
			w.OnError(err)
		}
	}
	return nil
}
