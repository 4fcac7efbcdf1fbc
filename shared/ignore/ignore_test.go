package ignore

import (
	"net/netip"
	"strings"
	"testing"
)

func TestLoad(t *testing.T) {
	l, problems, err := Load("testdata/portsentry.ignore")
	if err != nil {
		t.Fatal(err)
	}
	wantProblems := []string{"line 8: \"not-an-address\"", "line 9: \"10.0.0.0/33\"", "line 10: \"fe80::1%eth0\""}
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
		"::ffff:198.18.5.7": true, "2001:db8::99": true,
	}
	for s, want := range tests {
		if got := l.Contains(netip.MustParseAddr(s)); got != want {
			t.Errorf("Contains(%s) = %v, want %v", s, got, want)
		}
	}
	if l.Len() != 7 {
		t.Errorf("Len = %d, want 7", l.Len())
	}
}

func TestMissingFileIsEmpty(t *testing.T) {
	l, _, err := Load("/nonexistent/ignore")
	if err != nil || l.Contains(netip.MustParseAddr("198.18.0.1")) {
		t.Fatalf("Load missing = %v, %v", l, err)
	}
}

func TestLongLine(t *testing.T) {
	_, _, err := Parse(strings.NewReader("198.18.0.1\n"+strings.Repeat("x", 10000)+"\n"), "f")
	if err == nil || !strings.Contains(err.Error(), "line 2: line too long") {
		t.Fatalf("err = %v", err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add("198.18.0.0/15\n2001:db8::/32\n# c\n1.2.3.4 # x\n")
	f.Fuzz(func(t *testing.T, text string) {
		l, _, _ := Parse(strings.NewReader(text), "fuzz")
		for _, p := range l.nets {
			if p != p.Masked() || p.Addr().Zone() != "" {
				t.Fatalf("unmasked or zoned prefix %v", p)
			}
		}
	})
}
