package blockfile

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// TestLastSecond: the lines of the last second, whole, however many lines
// of other seconds come before and however far back that second reaches
// (up to the limit).
func TestLastSecond(t *testing.T) {
	t0 := time.Unix(1764000000, 0)
	line := func(sec, i int) Line {
		return Line{Time: t0.Add(time.Duration(sec) * time.Second), Addr: netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}), Port: 21, Proto: "TCP"}
	}
	for _, tc := range []struct {
		name        string
		before, end int   // lines of earlier seconds, lines of the last
		limit       int64 // bytes read at most
		want        int   // lines returned; -1: not ok
	}{
		{"empty", 0, 0, 1 << 20, -1},
		{"one", 0, 1, 1 << 20, 1},
		{"only the last second", 0, 5, 1 << 20, 5},
		{"after others", 3, 4, 1 << 20, 4},
		{"beyond the first window", 5000, 2000, 1 << 20, 2000},
		{"beyond the limit", 10, 2000, 64 << 10, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "history")
			var lines []Line
			for i := range tc.before {
				lines = append(lines, line(i/7, i))
			}
			for i := range tc.end {
				lines = append(lines, line(1000, 10000+i))
			}
			if err := os.WriteFile(path, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := Append(path, lines); err != nil {
				t.Fatal(err)
			}
			got, ok, err := LastSecond(path, tc.limit)
			if err != nil {
				t.Fatal(err)
			}
			if tc.want < 0 {
				if ok {
					t.Fatalf("ok with %d lines, want not ok", len(got))
				}
				return
			}
			if !ok || len(got) != tc.want {
				t.Fatalf("ok %v, %d lines, want %d", ok, len(got), tc.want)
			}
			var want, have []string
			for _, l := range lines[len(lines)-tc.want:] {
				want = append(want, l.String())
			}
			for _, l := range got {
				have = append(have, l.String())
			}
			slices.Sort(want)
			slices.Sort(have)
			if !slices.Equal(have, want) {
				t.Fatalf("lines differ: %d of %d", len(have), len(want))
			}
		})
	}
	if _, ok, err := LastSecond(filepath.Join(t.TempDir(), "none"), 1<<20); ok || err != nil {
		t.Fatalf("missing file: ok %v, %v", ok, fmt.Sprint(err))
	}
}
