// Package transport carries event lines between stages: from standard input
// or a Unix stream socket that several writers share (--listen), to standard
// output or one Unix socket (--connect). It knows lines, not events: framing,
// bounds and delivery are here; meaning is in package event.
package transport

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/portsentry/pipeline/shared/event"
)

// Handler receives the lines of a Source. Calls are never concurrent.
type Handler interface {
	// Line is one line without its newline, or err when the line was
	// refused by framing (too long, no newline at the end of input). data
	// is valid only during the call. origin names the writer, n is the
	// line's number from that writer.
	Line(origin string, n int, data []byte, err error)
	// Idle is called when no more input is waiting: the moment to flush.
	Idle()
}

// ErrTooLong and ErrTruncated are the framing errors given to Handler.Line.
var (
	ErrTooLong   = fmt.Errorf("line too long (more than %d bytes)", event.MaxLine)
	ErrTruncated = errors.New("last line has no newline: truncated, ignored")
)

// readBuffer is the reading buffer; lines longer than event.MaxLine are
// refused whatever their length, without ever holding more than this.
const readBuffer = 64 * 1024

// Read feeds h the lines of r until EOF or a read error.
func Read(r io.Reader, origin string, h Handler) error {
	return readLines(r, origin, h, nil)
}

// caller makes the calls to a Handler, under a lock when there is one. It
// is a value with methods, not closures, so that no line costs an
// allocation (a closure passed on escaped to the heap, 4 % of ps-judge's
// time under a flood).
type caller struct {
	h      Handler
	mu     sync.Locker // nil: no other source feeds h
	origin string
}

func (c *caller) line(n int, data []byte, err error) {
	if c.mu != nil {
		c.mu.Lock()
		defer c.mu.Unlock()
	}
	c.h.Line(c.origin, n, data, err)
}

func (c *caller) idle() {
	if c.mu != nil {
		c.mu.Lock()
		defer c.mu.Unlock()
	}
	c.h.Idle()
}

// readLines reads r; each call to h is made holding mu, if not nil.
func readLines(r io.Reader, origin string, h Handler, mu sync.Locker) error {
	c := caller{h: h, mu: mu, origin: origin}
	br := bufio.NewReaderSize(r, readBuffer)
	n := 0
	for {
		data, err := br.ReadSlice('\n')
		if err == nil || err == bufio.ErrBufferFull || len(data) > 0 {
			n++
		}
		switch {
		case err == nil:
			if len(data) > event.MaxLine {
				c.line(n, nil, ErrTooLong)
			} else {
				c.line(n, data[:len(data)-1], nil)
			}
		case err == bufio.ErrBufferFull:
			// Skip the rest of an over-long line, however long it is.
			for err == bufio.ErrBufferFull {
				_, err = br.ReadSlice('\n')
			}
			c.line(n, nil, ErrTooLong)
			if err != nil && err != io.EOF {
				return fmt.Errorf("%s: %w", origin, err)
			}
			if err == io.EOF {
				c.idle()
				return nil
			}
		case err == io.EOF:
			if len(data) > 0 {
				c.line(n, nil, ErrTruncated)
			}
			c.idle()
			return nil
		default:
			c.idle()
			return fmt.Errorf("%s: %w", origin, err)
		}
		if br.Buffered() == 0 {
			c.idle()
		}
	}
}
