package event

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"testing"
	"time"
	"unicode/utf8"
)

// FuzzDecode checks that no input panics the decoder, that whatever it
// accepts is valid and survives a round trip, and that the fast path and the
// encoding/json path agree on every line.
func FuzzDecode(f *testing.F) {
	for _, name := range []string{"testdata/invalid.txt", "testdata/valid.txt"} {
		file, err := os.Open(name)
		if err != nil {
			f.Fatal(err)
		}
		sc := bufio.NewScanner(file)
		for sc.Scan() {
			f.Add(sc.Bytes())
		}
		file.Close()
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		e, err := Decode(line)
		var slow fields
		slowErr := scanGeneric(line, &slow)
		var fast fields
		ok, fastErr := scanFlat(line, &fast)
		// Decode refuses invalid UTF-8 and NUL before either path runs, and
		// encoding/json would repair such strings, so compare only the rest.
		if ok && fastErr == nil && utf8.Valid(line) && bytes.IndexByte(line, 0) < 0 {
			// The fast path accepted: the general parser must accept the same
			// line and produce the same event.
			if slowErr != nil {
				t.Fatalf("fast path accepted what encoding/json rejects: %q", line)
			}
			var a, b Event
			errA, errB := fast.validate(&a), slow.validate(&b)
			if (errA == nil) != (errB == nil) || errA == nil && a != b {
				t.Fatalf("paths disagree on %q: %v %+v / %v %+v", line, errA, a, errB, b)
			}
		}
		if err != nil {
			return
		}
		// Only a result may lack a mode and a target (it reports a line
		// that could not be read).
		partial := e.Kind == KindResult
		if e.Kind == KindNone || e.Mode == ModeNone && !partial || e.Time.IsZero() {
			t.Fatalf("accepted incomplete event %+v from %q", e, line)
		}
		a := e.Addr()
		if (!a.IsValid() && !partial) || a.Zone() != "" || a.Is4In6() {
			t.Fatalf("accepted bad address %v from %q", a, line)
		}
		again, err := Decode(Encode(&e))
		if err != nil {
			t.Fatalf("re-decoding %q: %v", Encode(&e), err)
		}
		if again != e {
			t.Fatalf("round trip changed %+v into %+v", e, again)
		}
	})
}

// FuzzTime checks the fast time path against the standard parser: whatever
// the fast path accepts, time.Time.UnmarshalText accepts as the same instant.
func FuzzTime(f *testing.F) {
	for _, s := range []string{"2026-11-24T14:29:45.057153Z", "2026-02-29T00:00:00Z", "2024-02-29T23:59:59.999999999Z", "2026-11-24T14:29:45Z", "2026-13-01T00:00:00Z", "0000-01-01T00:00:00.1Z"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		fast, ok := parseUTC([]byte(s))
		if !ok {
			return
		}
		var std time.Time
		if err := std.UnmarshalText([]byte(s)); err != nil {
			t.Fatalf("fast path accepted %q, the standard parser says %v", s, err)
		}
		if !fast.Equal(std) {
			t.Fatalf("%q: fast %v, standard %v", s, fast, std)
		}
	})
}

// FuzzAppendTime checks the digit-by-digit time writer against the
// standard library's RFC3339Nano, alone and through a clock that wrote
// a time in the same second, or in another, just before.
func FuzzAppendTime(f *testing.F) {
	for _, v := range []int64{0, 1, 1_000_000_000, 1_764_000_000_123_456_789, 7_258_118_399_999_999_999, -1} {
		f.Add(v/1e9, v%1e9)
	}
	f.Add(int64(253402300799), int64(999999999))
	f.Add(int64(951782400), int64(0)) // 2000-02-29
	f.Fuzz(func(t *testing.T, sec, ns int64) {
		tm := time.Unix(sec, ns)
		got, want := string(new(clock).appendTime(nil, tm)), tm.UTC().Format(time.RFC3339Nano)
		if got != want {
			t.Fatalf("%d.%09d: %s, want %s", sec, ns, got, want)
		}
		for _, before := range []time.Time{tm.Truncate(time.Second), tm.Add(-time.Second), tm.Add(time.Second)} {
			var c clock
			c.appendTime(nil, before)
			if got := string(c.appendTime(nil, tm)); got != want {
				t.Fatalf("%d.%09d after %v: %s, want %s", sec, ns, before, got, want)
			}
		}
	})
}

// TestParseUTCEveryDay compares the fast path with time.Date for every
// day from year 0 to 2500 and of the last years, and days 29-31 of every
// month (which must be refused where the month has no such day).
func TestParseUTCEveryDay(t *testing.T) {
	check := func(y, m, d int) {
		s := fmt.Sprintf("%04d-%02d-%02dT23:59:58.5Z", y, m, d)
		got, ok := parseUTC([]byte(s))
		want := time.Date(y, time.Month(m), d, 23, 59, 58, 500_000_000, time.UTC)
		if valid := want.Day() == d; ok != valid || ok && !got.Equal(want) {
			t.Fatalf("%s: %v %v, want %v (valid %v)", s, got, ok, want, valid)
		}
	}
	for y := 0; y <= 9999; y++ {
		if y > 2500 && y < 9990 {
			continue
		}
		for m := 1; m <= 12; m++ {
			for d := 1; d <= 31; d++ {
				check(y, m, d)
			}
		}
	}
}

// FuzzFlatString checks the eight-bytes-at-a-time string scan against the
// plain one, byte by byte.
func FuzzFlatString(f *testing.F) {
	for _, s := range []string{`"abc"`, `"0123456789abcdef\"`, `"0123456\u0001"`, `"ab\\"cd"`, `"ÿÿÿÿÿÿÿÿÿ"x`, `"12345678"`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) == 0 || b[0] != '"' {
			return
		}
		s, next, ok := flatString(b, 0)
		wantOK, wantNext := false, 0
		for j := 1; j < len(b); j++ {
			if stringStop[b[j]] {
				wantOK, wantNext = b[j] == '"', j+1
				break
			}
		}
		if ok != wantOK || ok && (next != wantNext || string(s) != string(b[1:wantNext-1])) {
			t.Fatalf("%q: %q %d %v, want %d %v", b, s, next, ok, wantNext, wantOK)
		}
	})
}

// TestCivilFromDaysEveryDay: every day from 1970 to 9999.
func TestCivilFromDaysEveryDay(t *testing.T) {
	for days := int64(0); days < maxUnix/86400; days++ {
		y, m, d := civilFromDays(days)
		wy, wm, wd := time.Unix(days*86400, 0).UTC().Date()
		if y != wy || m != int(wm) || d != wd {
			t.Fatalf("day %d: %d-%d-%d, want %d-%d-%d", days, y, m, d, wy, wm, wd)
		}
	}
}
