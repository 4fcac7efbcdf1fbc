package transport

import (
	"bytes"
	"testing"

	"github.com/portsentry/pipeline/shared/event"
)

// fuzzHandler records what the framing hands a stage.
type fuzzHandler struct {
	t     *testing.T
	lines int
	next  int
}

func (h *fuzzHandler) Line(origin string, n int, data []byte, err error) {
	h.next++
	if n != h.next {
		h.t.Fatalf("line numbered %d, want %d", n, h.next)
	}
	if err == nil && (len(data) > event.MaxLine || bytes.IndexByte(data, '\n') >= 0) {
		h.t.Fatalf("line %d handed over with %d bytes or a newline", n, len(data))
	}
	if err != nil && data != nil {
		h.t.Fatalf("line %d refused (%v) but data given", n, err)
	}
	h.lines++
}

func (h *fuzzHandler) Idle() {}

// FuzzRead: any byte stream is cut into numbered lines, each at most
// event.MaxLine bytes without its newline or refused, one call per line,
// and the count matches the stream's newlines (plus an unterminated tail).
func FuzzRead(f *testing.F) {
	f.Add([]byte("{\"v\":1}\n\n"), 1)
	f.Add([]byte("no newline"), 1)
	f.Add([]byte("a\nb\nc"), 3)
	f.Add([]byte("x"), 70000)
	f.Fuzz(func(t *testing.T, data []byte, repeat int) {
		if repeat < 1 || repeat > 200000 || len(data)*repeat > 4<<20 {
			return
		}
		in := bytes.Repeat(data, repeat)
		h := &fuzzHandler{t: t}
		if err := Read(bytes.NewReader(in), "fuzz", h); err != nil {
			t.Fatal(err)
		}
		want := bytes.Count(in, []byte("\n"))
		if len(in) > 0 && in[len(in)-1] != '\n' {
			want++
		}
		if h.lines != want {
			t.Fatalf("%d lines handed over, want %d", h.lines, want)
		}
	})
}
