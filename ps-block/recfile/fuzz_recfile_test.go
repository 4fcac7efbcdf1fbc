package recfile

import (
	"bytes"
	"strings"
	"testing"
)

// FuzzLines: any input is split into the lines it holds, none longer than
// MaxLine, and the lines given back (with the overlong ones) account for
// every newline.
func FuzzLines(f *testing.F) {
	f.Add([]byte("a\nb\n"))
	f.Add([]byte("no newline"))
	f.Add([]byte(strings.Repeat("x", MaxLine+1) + "\nend"))
	f.Add([]byte("\n\n\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		n, long := 0, 0
		err := Lines(bytes.NewReader(in), func(i int, line []byte, err error) error {
			n++
			if i != n {
				t.Fatalf("line numbered %d, want %d", i, n)
			}
			if err != nil {
				long++
				return nil
			}
			if len(line) > MaxLine || bytes.IndexByte(line, '\n') >= 0 {
				t.Fatalf("line %d: %d bytes, newline inside: %q", i, len(line), line)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		want := bytes.Count(in, []byte("\n"))
		if len(in) > 0 && in[len(in)-1] != '\n' {
			want++
		}
		if n != want {
			t.Fatalf("%d lines (%d overlong), want %d", n, long, want)
		}
	})
}
