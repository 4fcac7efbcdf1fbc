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
	return readLines(r, origin, h, func(f func()) { f() })
}

// readLines reads r; locked runs a call to h under the source's lock.
func readLines(r io.Reader, origin string, h Handler, locked func(func())) error {
	br := bufio.NewReaderSize(r, readBuffer)
	n := 0
	for {
		data, err := br.ReadSlice('\n')
		if err == nil || err == bufio.ErrBufferFull || len(data) > 0 {
			n++
		}
		switch {
		case err == nil:
			line := data[:len(data)-1]
			if len(data) > event.MaxLine {
				locked(func() { h.Line(origin, n, nil, ErrTooLong) })
			} else {
				locked(func() { h.Line(origin, n, line, nil) })
			}
		case err == bufio.ErrBufferFull:
			// Skip the rest of an over-long line, however long it is.
			for err == bufio.ErrBufferFull {
				_, err = br.ReadSlice('\n')
			}
			locked(func() { h.Line(origin, n, nil, ErrTooLong) })
			if err != nil && err != io.EOF {
				return fmt.Errorf("%s: %w", origin, err)
			}
			if err == io.EOF {
				locked(h.Idle)
				return nil
			}
		case err == io.EOF:
			if len(data) > 0 {
				locked(func() { h.Line(origin, n, nil, ErrTruncated) })
			}
			locked(h.Idle)
			return nil
		default:
			locked(h.Idle)
			return fmt.Errorf("%s: %w", origin, err)
		}
		if br.Buffered() == 0 {
			locked(h.Idle)
		}
	}
}
