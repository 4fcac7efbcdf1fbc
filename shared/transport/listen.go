package transport

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Defaults of Options: a listening socket serves MaxWriters writers at
// once, at most MaxPerPeer of them with one user id; a line begun must end
// within LineTimeout; a writer that has sent no whole line for IdleGrace
// may be closed to make room for a new one.
const (
	MaxWriters  = 64
	MaxPerPeer  = 16
	LineTimeout = 10 * time.Second
	IdleGrace   = 5 * time.Second
)

// Peer is a writer's credentials as the kernel recorded them when it
// connected (SO_PEERCRED): they cannot be forged by what it writes.
type Peer struct {
	PID      int32
	UID, GID uint32
}

func (p Peer) String() string { return fmt.Sprintf("uid %d, pid %d", p.UID, p.PID) }

// Options bound and filter a listening socket's writers; the zero value
// gives the defaults above.
type Options struct {
	// Mode is the socket file's mode; 0: 0660 (owner and group may write).
	Mode os.FileMode
	// Admit refuses a writer by its credentials, with the reason; nil:
	// the socket file's mode alone decides who may connect.
	Admit func(Peer) error
	// Lock serialises the Handler's calls with other sources feeding the
	// same Handler; nil: the Listener's own lock.
	Lock        sync.Locker
	MaxWriters  int
	MaxPerPeer  int
	LineTimeout time.Duration
	IdleGrace   time.Duration
}

func (o *Options) defaults() {
	if o.Mode == 0 {
		o.Mode = 0o660
	}
	if o.Lock == nil {
		o.Lock = &sync.Mutex{}
	}
	if o.MaxWriters <= 0 {
		o.MaxWriters = MaxWriters
	}
	if o.MaxPerPeer <= 0 {
		o.MaxPerPeer = MaxPerPeer
	}
	if o.LineTimeout <= 0 {
		o.LineTimeout = LineTimeout
	}
	if o.IdleGrace <= 0 {
		o.IdleGrace = IdleGrace
	}
}

// Listener serves a Unix stream socket on which several writers send lines.
//
// Writers are bounded so that none can lock the others out: a line begun
// must end within LineTimeout (one byte and silence ties up a slot for
// that long, not for ever); one user id holds at most MaxPerPeer
// connections; and when the socket is full, or a user at its share, a new
// writer takes the place of the one that has sent no whole line for the
// longest time, if that is at least IdleGrace. A writer that keeps
// sending lines is never closed for another.
type Listener struct {
	ln   *net.UnixListener
	path string
	o    Options
	logf func(format string, args ...any)

	mu      sync.Mutex // guards writers and perUID
	writers map[*writer]struct{}
	perUID  map[uint32]int
}

// writer is one connection. lastLine is read by the accepting goroutine
// while the reading one writes it, hence the Listener's lock around both.
type writer struct {
	c        *net.UnixConn
	peer     Peer
	origin   string
	since    time.Time // connected, or sent its last whole line
	evicted  string    // why the listener closed it, "" while open
	midLine  bool      // the bytes read so far end inside a line
	lineFrom time.Time // when that line began
}

// Listen creates the socket at path with the default Options and serves it
// until Close. A stale socket file left by a dead process is replaced; a
// live one is an error, so two instances never share a path. logf reports
// connections and refusals.
func Listen(path string, h Handler, logf func(format string, args ...any)) (*Listener, error) {
	return ListenWith(path, h, logf, Options{})
}

// ListenWith is Listen with options.
func ListenWith(path string, h Handler, logf func(format string, args ...any), o Options) (*Listener, error) {
	o.defaults()
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != os.ModeSocket {
			return nil, fmt.Errorf("listen %s: exists and is not a socket", path)
		}
		if c, err := net.Dial("unix", path); err == nil {
			c.Close()
			return nil, fmt.Errorf("listen %s: another process is serving it", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("listen %s: removing stale socket: %w", path, err)
		}
	}
	old := syscall.Umask(int(^o.Mode & 0o777))
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	l := &Listener{ln: ln, path: path, o: o, logf: logf, writers: map[*writer]struct{}{}, perUID: map[uint32]int{}}
	go l.accept(h)
	return l, nil
}

func (l *Listener) accept(h Handler) {
	for id := 1; ; id++ {
		c, err := l.ln.AcceptUnix()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				l.logf("listen %s: %v", l.path, err)
			}
			return
		}
		peer, err := peerOf(c)
		if err != nil {
			l.logf("listen %s: writer %d refused: %v", l.path, id, err)
			c.Close()
			continue
		}
		origin := fmt.Sprintf("%s writer %d (%s)", l.path, id, peer)
		if l.o.Admit != nil {
			if err := l.o.Admit(peer); err != nil {
				l.logf("%s refused: %v", origin, err)
				c.Close()
				continue
			}
		}
		w := &writer{c: c, peer: peer, origin: origin, since: time.Now()}
		if why := l.admit(w); why != "" {
			l.logf("%s refused: %s", origin, why)
			c.Close()
			continue
		}
		go l.serve(w, h)
	}
}

// admit makes room for w, closing a writer idle for at least IdleGrace if
// the socket or w's user is full, and says why not when it cannot.
func (l *Listener) admit(w *writer) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	var full string
	var ofPeer bool
	switch {
	case l.perUID[w.peer.UID] >= l.o.MaxPerPeer:
		full, ofPeer = fmt.Sprintf("uid %d already has %d writers (the most one user may hold)", w.peer.UID, l.o.MaxPerPeer), true
	case len(l.writers) >= l.o.MaxWriters:
		full = fmt.Sprintf("%d writers already connected", l.o.MaxWriters)
	}
	if full != "" {
		var victim *writer
		for v := range l.writers {
			if (!ofPeer || v.peer.UID == w.peer.UID) && now.Sub(v.since) >= l.o.IdleGrace && (victim == nil || v.since.Before(victim.since)) {
				victim = v
			}
		}
		if victim == nil {
			return full + ", none idle for " + l.o.IdleGrace.String()
		}
		victim.evicted = fmt.Sprintf("closed to make room for %s: %s, and it had sent no whole line for %s", w.origin, full, now.Sub(victim.since).Round(time.Millisecond))
		l.drop(victim)
		victim.c.Close()
	}
	l.writers[w] = struct{}{}
	l.perUID[w.peer.UID]++
	return ""
}

// drop forgets w; the caller holds l.mu.
func (l *Listener) drop(w *writer) {
	if _, ok := l.writers[w]; !ok {
		return
	}
	delete(l.writers, w)
	if l.perUID[w.peer.UID]--; l.perUID[w.peer.UID] <= 0 {
		delete(l.perUID, w.peer.UID)
	}
}

func (l *Listener) serve(w *writer, h Handler) {
	defer w.c.Close()
	err := readLines(&timedReader{l: l, w: w}, w.origin, h, l.o.Lock)
	l.mu.Lock()
	evicted := w.evicted
	l.drop(w)
	l.mu.Unlock()
	switch {
	case evicted != "":
		l.logf("%s %s", w.origin, evicted)
	case err != nil:
		l.logf("%v", err)
	}
}

// timedReader reads a writer's connection with LineTimeout on a begun line
// and notes when it last sent a whole line.
type timedReader struct {
	l *Listener
	w *writer
}

// errLineTimeout is a line begun and not finished within LineTimeout.
var errLineTimeout = errors.New("half-written line")

func (r *timedReader) Read(p []byte) (int, error) {
	l, w := r.l, r.w
	l.mu.Lock()
	deadline := time.Time{} // between lines a writer may be silent
	if w.midLine {
		deadline = w.lineFrom.Add(l.o.LineTimeout)
	}
	l.mu.Unlock()
	if err := w.c.SetReadDeadline(deadline); err != nil {
		return 0, err
	}
	n, err := w.c.Read(p)
	if n > 0 {
		now := time.Now()
		l.mu.Lock()
		if nl := bytes.LastIndexByte(p[:n], '\n'); nl >= 0 {
			w.since = now
			w.midLine = nl < n-1
			w.lineFrom = now
		} else if !w.midLine {
			w.midLine, w.lineFrom = true, now
		}
		l.mu.Unlock()
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		err = fmt.Errorf("%w: a line begun %s ago was not finished; closed, the partial line dropped", errLineTimeout, l.o.LineTimeout)
	}
	return n, err
}

// Close stops accepting and removes the socket file. Connected writers are
// served until they close.
func (l *Listener) Close() error { return l.ln.Close() }

// peerOf reads the writer's credentials from the kernel.
func peerOf(c *net.UnixConn) (Peer, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return Peer{}, fmt.Errorf("credentials: %w", err)
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return Peer{}, fmt.Errorf("credentials: %w", err)
	}
	if cerr != nil {
		return Peer{}, fmt.Errorf("credentials (SO_PEERCRED): %w", cerr)
	}
	return Peer{PID: cred.Pid, UID: cred.Uid, GID: cred.Gid}, nil
}
