package gate

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/portsentry/pipeline/shared/event"
)

func TestAdmit(t *testing.T) {
	refuse := func(a netip.Addr) string {
		if a == netip.MustParseAddr("198.18.0.53") {
			return "a name server of this host"
		}
		return ""
	}
	tests := []struct {
		name    string
		addr    netip.Addr
		origin  Origin
		refused string // the guard's reason, or "" when admitted
		err     bool   // an error that is not a refusal
	}{
		{"admitted", netip.MustParseAddr("198.18.0.1"), Decision, "", false},
		{"IPv4-mapped taken as IPv4", netip.MustParseAddr("::ffff:198.18.0.1"), Released, "", false},
		{"refused, new", netip.MustParseAddr("198.18.0.53"), Decision, "a name server of this host", false},
		{"refused, mapped", netip.MustParseAddr("::ffff:198.18.0.53"), Restored, "a name server of this host", false},
		{"refused from the kernel", netip.MustParseAddr("198.18.0.53"), Kernel, "a name server of this host", false},
		{"zone never reaches a command", netip.MustParseAddr("fe80::1%eth0"), Fleet, "", true},
		{"invalid", netip.Addr{}, Decision, "", true},
	}
	g := New(refuse)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := g.Admit(tc.addr, 21, event.ModeATCP, tc.origin)
			var r *Refused
			switch {
			case tc.refused != "":
				if !errors.As(err, &r) || r.Why != tc.refused || r.Origin != tc.origin || p.Valid() {
					t.Fatalf("Admit = %+v, %v; want refused: %s", p, err, tc.refused)
				}
			case tc.err:
				if err == nil || errors.As(err, &r) || p.Valid() {
					t.Fatalf("Admit = %+v, %v; want an error that is not a refusal", p, err)
				}
			default:
				if err != nil || !p.Valid() || p.Addr() != tc.addr.Unmap() || p.Origin() != tc.origin {
					t.Fatalf("Admit = %+v, %v; want a pass for %s", p, err, tc.addr.Unmap())
				}
			}
		})
	}
	if (Pass{}).Valid() {
		t.Error("the zero Pass is valid")
	}
}

// TestAskedEachTime: the gate keeps no answer; a change of the guard shows
// at the next act.
func TestAskedEachTime(t *testing.T) {
	why := ""
	g := New(func(netip.Addr) string { return why })
	a := netip.MustParseAddr("198.18.0.1")
	if _, err := g.Admit(a, 21, event.ModeTCP, Decision); err != nil {
		t.Fatal(err)
	}
	why = "in the ignore file"
	if _, err := g.Admit(a, 21, event.ModeTCP, Released); err == nil {
		t.Fatal("admitted after the guard changed its answer")
	}
}
