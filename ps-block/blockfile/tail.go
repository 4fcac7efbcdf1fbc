package blockfile

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"time"

	"github.com/portsentry/pipeline/ps-block/recfile"
)

// LastSecond returns the lines of path stamped with the second of its last
// line, reading from the end at most limit bytes. ok is false when the
// file has no line that parses, or when that second reaches further back
// than limit. A missing file has no lines.
func LastSecond(path string, limit int64) (lines []Line, ok bool, err error) {
	f, err := recfile.Open(path, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("blockfile: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, false, fmt.Errorf("blockfile: %w", err)
	}
	size := st.Size()
	for window := min(int64(64<<10), size); window <= limit; window = min(2*window, size) {
		off := size - window
		buf := make([]byte, window)
		if _, err := f.ReadAt(buf, off); err != nil && !errors.Is(err, io.EOF) {
			return nil, false, fmt.Errorf("blockfile: read %s: %w", path, err)
		}
		texts := bytes.Split(bytes.TrimRight(buf, "\n"), []byte("\n"))
		if off > 0 {
			texts = texts[1:] // the first may be cut
		}
		lines = nil
		var last time.Time
		for i := len(texts) - 1; i >= 0; i-- {
			l, err := Parse(string(texts[i]))
			if err != nil {
				continue
			}
			if lines == nil {
				last = l.Time
			} else if !l.Time.Equal(last) {
				return lines, true, nil // an earlier second: the last is whole
			}
			lines = append(lines, l)
		}
		if off == 0 {
			return lines, lines != nil, nil
		}
	}
	return nil, false, nil
}
