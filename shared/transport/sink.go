package transport

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ErrDownstreamClosed is returned by a stdout Sink when the reader of the
// pipe has gone: the next stage died or was stopped.
var ErrDownstreamClosed = errors.New("standard output closed: the next stage has exited")

// maxPending bounds what a --connect Sink holds while its peer is away.
const maxPending = 4 << 20

// resendWindow is how much of what was last sent a --connect Sink sends
// again after reconnecting. Lines a killed peer had received but not yet
// acted on are in it; the readers take a repeat as a no-op (ps-judge counts
// a port once, ps-block never blocks a host twice), so at-least-once is safe.
const resendWindow = 1 << 20

// Sink writes event lines downstream. Write buffers; Flush sends what is
// buffered. Stages call Flush whenever their input is idle, so a line
// leaves the moment nothing else is waiting behind it.
type Sink struct {
	mu        sync.Mutex
	w         *bufio.Writer
	path      string // --connect socket, "" for stdout
	conn      net.Conn
	pending   []byte // --connect: lines not yet sent
	recent    []byte // --connect: the last lines sent, up to resendWindow
	lost      bool   // --connect: the connection failed; resend recent on the next
	dropped   int
	logf      func(format string, args ...any)
	backoff   time.Time
	stop      chan struct{} // ends the retry loop of a --connect Sink
	failures  int           // connection attempts failed in a row
	closer    io.Closer     // NewWriteCloser: closed after the last flush
	lostLines int           // --connect: lines dropped for want of room, in all
	closed    bool
	closeErr  error
}

// CloseWait is how long Close of a --connect Sink waits for a peer to take
// the lines still waiting (it may be restarting) before it gives up on them.
const CloseWait = 5 * time.Second

// Stdout returns a Sink on standard output. A write to a pipe whose reader
// has exited then fails with ErrDownstreamClosed instead of killing the
// process with SIGPIPE.
func Stdout() *Sink {
	signal.Ignore(syscall.SIGPIPE)
	return &Sink{w: bufio.NewWriterSize(os.Stdout, 64*1024)}
}

// NewWriter returns a Sink on any writer, for tests and tools.
func NewWriter(w io.Writer) *Sink { return &Sink{w: bufio.NewWriterSize(w, 64*1024)} }

// NewWriteCloser returns a Sink on w that closes w when it is closed: a
// NATS publisher (package fleet) sends what waits before it returns.
func NewWriteCloser(w io.WriteCloser) *Sink {
	return &Sink{w: bufio.NewWriterSize(w, 64*1024), closer: w}
}

// Connect returns a Sink on the Unix stream socket at path. It connects at
// once if it can, else on the first flush, and reconnects after failures,
// keeping up to 4 MiB of lines meanwhile (what overflows is dropped, counted
// and reported) and sending the last 1 MiB sent again to the new peer.
func Connect(path string, logf func(format string, args ...any)) *Sink {
	signal.Ignore(syscall.SIGPIPE)
	s := &Sink{path: path, logf: logf, stop: make(chan struct{})}
	// Dial now: a sensor about to drop its privileges connects while it
	// still may. Failing is fine; the first flush tries again.
	if c, err := net.Dial("unix", path); err == nil {
		s.attach(c)
	}
	// Lines held while the peer was away must not wait for the next input.
	stop := s.stop // Close clears s.stop
	go func() {
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				if s.Pending() {
					_ = s.Flush() // a --connect Flush never fails; it retries
				}
			}
		}
	}()
	return s
}

// Write adds one line (newline included) to the buffer.
func (s *Sink) Write(line []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.path == "" {
		_, err := s.w.Write(line)
		return s.wrap(err)
	}
	if len(s.pending)+len(line) > maxPending {
		s.dropped++
		s.lostLines++
		return nil
	}
	s.pending = append(s.pending, line...)
	return nil
}

// Flush sends what is buffered. For a --connect Sink a failure to reach
// the peer is not an error: the lines wait for the next Flush.
func (s *Sink) Flush() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.path == "" {
		return s.wrap(s.w.Flush())
	}
	return s.flushConn()
}

func (s *Sink) wrap(err error) error {
	if errors.Is(err, syscall.EPIPE) {
		return ErrDownstreamClosed
	}
	if err != nil {
		return fmt.Errorf("writing output: %w", err)
	}
	return nil
}

func (s *Sink) flushConn() error {
	if s.dropped > 0 {
		s.logf("%s unreachable: %d lines dropped, more than %d bytes were waiting", s.path, s.dropped, maxPending)
		s.dropped = 0
	}
	if len(s.pending) == 0 && !s.lost {
		return nil
	}
	if s.conn == nil {
		if time.Now().Before(s.backoff) {
			return nil
		}
		c, err := net.Dial("unix", s.path)
		if err != nil {
			// Said once, then once a minute: the peer may be away long.
			if s.failures%120 == 0 {
				s.logf("connect %s: %v%s (retrying every 0.5 s; %d bytes waiting)", s.path, err, DirHint(s.path), len(s.pending))
			}
			s.failures++
			s.backoff = time.Now().Add(500 * time.Millisecond)
			return nil
		}
		s.failures = 0
		s.attach(c)
		if s.lost && len(s.recent) > 0 {
			s.logf("%s: sending the last %d bytes again, which the previous peer may not have acted on", s.path, len(s.recent))
			s.pending = append(s.recent, s.pending...)
			s.recent = nil
		}
		s.lost = false
	}
	n, err := s.conn.Write(s.pending)
	// Only whole lines count as sent; a line cut by a failure is sent again
	// whole, so the reader sees at worst a duplicate after a reconnect.
	sent := n
	if err != nil {
		for sent > 0 && s.pending[sent-1] != '\n' {
			sent--
		}
	}
	s.remember(s.pending[:sent])
	s.pending = s.pending[:copy(s.pending, s.pending[sent:])]
	if err != nil {
		s.logf("write %s: %v (reconnecting)", s.path, err)
		s.detach(s.conn)
	}
	return nil
}

// attach makes c the connection, and watches it: the peer never writes, so
// a read returns only when the peer has gone. An idle writer must notice
// that too, since the lines the peer had not yet acted on are to be sent
// again to its successor. Called with s.mu held or before s is shared.
func (s *Sink) attach(c net.Conn) {
	s.conn = c
	s.logf("connected to %s", s.path)
	go func() {
		var b [1]byte
		_, err := c.Read(b[:])
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.conn == c {
			s.logf("%s: the reader has gone (%v); reconnecting", s.path, err)
			s.detach(c)
		}
	}()
}

// detach drops a failed connection; the retry loop reconnects.
func (s *Sink) detach(c net.Conn) {
	c.Close()
	s.conn = nil
	s.lost = true
}

// remember keeps the tail of what was sent, whole lines only.
func (s *Sink) remember(sent []byte) {
	s.recent = append(s.recent, sent...)
	if over := len(s.recent) - resendWindow; over > 0 {
		cut := bytes.IndexByte(s.recent[over:], '\n') + over + 1
		if cut <= over { // no line end after the cut: keep nothing
			cut = len(s.recent)
		}
		s.recent = s.recent[:copy(s.recent, s.recent[cut:])]
	}
}

// Pending reports whether lines wait for a peer, or a lost peer's
// successor is still to be given the lines it may have missed.
func (s *Sink) Pending() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.pending) > 0 || s.lost
}

// Close flushes and closes. A --connect Sink first waits up to CloseWait
// for a peer to take what waits; lines it could not deliver, or dropped
// for want of room, make its error. Closing again returns the same error.
func (s *Sink) Close() error {
	s.mu.Lock()
	if s.closed {
		err := s.closeErr
		s.mu.Unlock()
		return err
	}
	s.closed = true
	s.mu.Unlock()
	err := s.Flush()
	if s.path != "" {
		err = s.drain(CloseWait)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	defer func() { s.closeErr = err }()
	if s.conn != nil {
		s.conn.Close()
		s.conn = nil
	}
	if s.stop != nil {
		close(s.stop)
		s.stop = nil
	}
	if s.closer != nil {
		if cerr := s.closer.Close(); err == nil {
			err = cerr
		}
		s.closer = nil
	}
	return err
}

// drain sends what waits until nothing does or wait has passed, and says
// what was never delivered.
func (s *Sink) drain(wait time.Duration) error {
	deadline := time.Now().Add(wait)
	for {
		s.mu.Lock()
		_ = s.flushConn() // never fails: it retries
		waiting, lost := s.pending, s.lostLines
		s.mu.Unlock()
		if len(waiting) == 0 || time.Now().After(deadline) {
			var undelivered []string
			if n := bytes.Count(waiting, []byte{'\n'}); n > 0 {
				undelivered = append(undelivered, fmt.Sprintf("%d line(s) never taken by a reader in %v", n, wait))
			}
			if lost > 0 {
				undelivered = append(undelivered, fmt.Sprintf("%d line(s) dropped while it was unreachable (more than %d bytes waiting)", lost, maxPending))
			}
			if len(undelivered) == 0 {
				return nil
			}
			return fmt.Errorf("%s: undelivered: %s", s.path, strings.Join(undelivered, "; "))
		}
		time.Sleep(50 * time.Millisecond)
	}
}
