package macro

import (
	"net/netip"
	"testing"
)

func TestNewVars(t *testing.T) {
	tests := []struct {
		addr    string
		mode    string
		wantErr bool
	}{
		{"198.18.0.1", "tcp", false},
		{"2001:db8::1", "audp", false},
		{"fe80::1%eth0", "tcp", true},
		{"198.18.0.1", "tcp; rm -rf /", true},
		{"198.18.0.1", "", true},
	}
	for _, tc := range tests {
		_, err := NewVars(netip.MustParseAddr(tc.addr), 1, tc.mode)
		if (err != nil) != tc.wantErr {
			t.Errorf("NewVars(%s, %q) err = %v, want error %v", tc.addr, tc.mode, err, tc.wantErr)
		}
	}
	if _, err := NewVars(netip.Addr{}, 1, "tcp"); err == nil {
		t.Error("zero address accepted")
	}
}

func TestExpand(t *testing.T) {
	v, err := NewVars(netip.MustParseAddr("::ffff:198.18.0.1"), 21, "stcp")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct{ in, want string }{
		{"/sbin/route add -host $TARGET$ reject", "/sbin/route add -host 198.18.0.1 reject"},
		{"echo $TARGET$ $PORT$ $MODE$ $TARGET$", "echo 198.18.0.1 21 stcp 198.18.0.1"},
		{"no macros", "no macros"},
		{"$OTHER$", "$OTHER$"},
	}
	for _, tc := range tests {
		if got := v.ExpandPlain(tc.in); got != tc.want {
			t.Errorf("ExpandPlain(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	if got := v.Expand("ALL: $TARGET$", "[x]"); got != "ALL: [x]" {
		t.Errorf("Expand with target text: %q", got)
	}
}
