package ignore

import (
	"errors"
	"io/fs"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func TestLoad(t *testing.T) {
	l, problems, err := Load("testdata/portsentry.ignore")
	if err != nil {
		t.Fatal(err)
	}
	wantProblems := []string{"line 8: \"not-an-address\"", "line 9: \"10.0.0.0/33\""}
	if len(problems) != len(wantProblems) {
		t.Fatalf("problems = %v", problems)
	}
	for i, w := range wantProblems {
		if !strings.Contains(problems[i].Error(), w) {
			t.Errorf("problem %d = %v, want %q", i, problems[i], w)
		}
	}
	tests := map[string]bool{
		"127.0.0.1": true, "127.0.0.2": false, "0.0.0.0": true, "198.18.5.7": true, "198.18.5.8": false,
		"192.168.44.1": true, "2001:db8:1:ffff::1": true, "2001:db8:2::1": false, "198.19.1.1": true,
		"::ffff:198.18.5.7": true, "2001:db8::99": true, "fe80::1": true, "10.0.0.1": false,
	}
	for s, want := range tests {
		if got := l.Contains(netip.MustParseAddr(s)); got != want {
			t.Errorf("Contains(%s) = %v, want %v", s, got, want)
		}
	}
	if l.Len() != 8 {
		t.Errorf("Len = %d, want 8", l.Len())
	}
}

func TestMissingFileIsAnError(t *testing.T) {
	l, _, err := Load("/nonexistent/ignore")
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "/nonexistent/ignore does not exist") {
		t.Fatalf("Load missing = %v, %v; want an error saying so", l, err)
	}
}

// TestFailsClosed: nothing on one line may cost an entry on another, and
// 1.2's lines with trailing text give their address.
func TestFailsClosed(t *testing.T) {
	long := strings.Repeat("x", 10000)
	tests := []struct {
		name, text string
		want       []string // ignored
		notWant    []string
		problems   []string
	}{
		{"long comment", "198.18.0.1\n# " + long + "\n198.18.0.2\n", []string{"198.18.0.1", "198.18.0.2"}, nil, nil},
		{"long comment at the end, no newline", "198.18.0.1\n#" + long, []string{"198.18.0.1"}, nil, nil},
		{"address then a long comment", "198.18.0.3 # " + long + "\n198.18.0.4\n", []string{"198.18.0.3", "198.18.0.4"}, nil, nil},
		{"address then long text", "198.18.0.3 " + long + "\n198.18.0.4\n", []string{"198.18.0.3", "198.18.0.4"}, nil, nil},
		{"long garbage", long + "\n198.18.0.4\n", []string{"198.18.0.4"}, nil, []string{"line 1: longer than 4096 bytes"}},
		{"address cut at the limit", strings.Repeat(" ", 4090) + "198.18.0.55" + long + "\n198.18.0.4\n",
			[]string{"198.18.0.4"}, []string{"198.18.0.5"}, []string{"line 1: longer than 4096 bytes"}},
		{"1.2 trailing text", "10.1.2.3/32 host\n10.1.3.0/24\tnet of the office\n", []string{"10.1.2.3", "10.1.3.77"}, []string{"10.1.2.4"}, nil},
		{"1.2 glued text", "10.1.2.3/32host\n10.1.4.4#c\nfe80::1%eth0\n", []string{"10.1.2.3", "10.1.4.4", "fe80::1"}, nil, nil},
		{"several addresses", "10.1.2.3 10.1.2.4 and 2001:db8::7\n", []string{"10.1.2.3", "10.1.2.4", "2001:db8::7"}, nil, nil},
		{"bad first field", "gateway 10.1.2.5\n10.0.0.0/33\n10.0.0.0/244\n", []string{"10.1.2.5"}, []string{"10.0.0.1", "10.1.0.0", "32.0.0.1"},
			[]string{"line 1: \"gateway\"", "line 2: \"10.0.0.0/33\"", "line 3: \"10.0.0.0/244\""}},
		{"CRLF", "10.1.2.6\r\n10.1.2.7\r\n", []string{"10.1.2.6", "10.1.2.7"}, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, problems, err := Parse(strings.NewReader(tt.text), "f")
			if err != nil {
				t.Fatal(err)
			}
			for _, a := range tt.want {
				if !l.Contains(netip.MustParseAddr(a)) {
					t.Errorf("%s not ignored", a)
				}
			}
			for _, a := range tt.notWant {
				if l.Contains(netip.MustParseAddr(a)) {
					t.Errorf("%s ignored", a)
				}
			}
			if len(problems) != len(tt.problems) {
				t.Fatalf("problems = %v, want %d", problems, len(tt.problems))
			}
			for i, w := range tt.problems {
				if !strings.Contains(problems[i].Error(), w) {
					t.Errorf("problem %d = %v, want %q", i, problems[i], w)
				}
			}
		})
	}
}

func TestPrefixes(t *testing.T) {
	l, _, err := Parse(strings.NewReader("10.1.2.3\n10.1.0.0/16\n10.1.2.3/32\n2001:db8::/32\n"), "f")
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.Prefix{netip.MustParsePrefix("10.1.2.3/32"), netip.MustParsePrefix("10.1.0.0/16"), netip.MustParsePrefix("2001:db8::/32")}
	if got := l.Prefixes(); !slices.Equal(got, want) || l.Len() != 3 {
		t.Errorf("Prefixes = %v (Len %d), want %v", got, l.Len(), want)
	}
}

// FuzzParse: no input panics, every prefix is masked and zoneless, and
// nothing before a line can lose that line's address.
func FuzzParse(f *testing.F) {
	f.Add("198.18.0.0/15\n2001:db8::/32\n# c\n1.2.3.4 # x\n")
	f.Add("# " + strings.Repeat("y", 5000))
	f.Add(strings.Repeat("1", 4095) + "\r")
	f.Fuzz(func(t *testing.T, text string) {
		l, _, err := Parse(strings.NewReader(text+"\n198.18.7.7\n"), "fuzz")
		if err != nil {
			t.Fatal(err)
		}
		if !l.Contains(netip.MustParseAddr("198.18.7.7")) {
			t.Fatalf("the line after %q was lost", text)
		}
		for _, p := range l.Prefixes() {
			if p != p.Masked() || p.Addr().Zone() != "" || !l.Contains(p.Addr()) {
				t.Fatalf("bad prefix %v", p)
			}
		}
	})
}
