package blocker

import (
	"testing"
	"time"
)

// FuzzParseEnd: an until-file line either parses into a line that prints
// back to one that parses the same, or is an error; never a panic.
func FuzzParseEnd(f *testing.F) {
	f.Add([]byte("198.18.0.1 atcp 2026-11-24T14:00:00Z"))
	f.Add([]byte("2001:db8::1 sudp never run"))
	f.Add([]byte("198.18.0.1 tcp lifted"))
	f.Add([]byte("198.18.0.1 tcp never block"))
	f.Add([]byte("x y z w v"))
	f.Add([]byte("198.18.0.1 atcp never hits=3 host=fw-1"))
	f.Add([]byte("2001:db8::1 sudp 2026-11-24T14:00:00Z run host=a hits=65535"))
	f.Fuzz(func(t *testing.T, in []byte) {
		l, err := parseEnd(in)
		if err != nil {
			return
		}
		again, err := parseEnd([]byte(l.String()))
		if err != nil {
			t.Fatalf("%q printed as %q, which does not parse: %v", in, l.String(), err)
		}
		if again.k != l.k || again.gone != l.gone || (!l.gone && (again.kind != l.kind || again.hits != l.hits || again.host != l.host || !again.until.Equal(l.until.Truncate(time.Nanosecond)))) {
			t.Fatalf("%q: %+v printed and read back as %+v", in, l, again)
		}
	})
}
