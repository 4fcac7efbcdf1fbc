package hostsdeny

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/portsentry/pipeline/ps-block/macro"
)

// FuzzTemplate: any KILL_HOSTS_DENY value is refused or compiles; a line
// it renders is one line, and reading that line back names the very host
// it was rendered for (so Has and Remove find it, and never another's).
func FuzzTemplate(f *testing.F) {
	f.Add("ALL: $TARGET$", "198.18.0.1")
	f.Add("sshd, in.ftpd : $TARGET$ : DENY # $PORT$ $MODE$", "2001:db8::1")
	f.Add("$TARGET$$TARGET$", "198.18.0.1")
	f.Add("ALL: $TARGET$ 198.18.0.9", "198.18.0.1")
	f.Fuzz(func(t *testing.T, text, addr string) {
		tm, err := NewTemplate(text)
		if err != nil {
			return
		}
		a, err := netip.ParseAddr(addr)
		if err != nil {
			return
		}
		v, err := macro.NewVars(a, 21, "atcp")
		if err != nil {
			return
		}
		line := tm.Render(v)
		if strings.ContainsAny(line, "\r\n") {
			t.Fatalf("template %q rendered a line break: %q", text, line)
		}
		got, ok := tm.host([]byte(line))
		if ok && got != v.Addr() {
			t.Fatalf("template %q: line %q read back as %v, rendered for %v", text, line, got, v.Addr())
		}
	})
}

// FuzzHost: reading an arbitrary existing hosts.deny line never panics,
// and a host it finds is a valid address without a zone.
func FuzzHost(f *testing.F) {
	f.Add("ALL: 198.18.0.1")
	f.Add("ALL: [2001:db8::1]")
	f.Add("ALL: [::ffff:198.18.0.1]")
	f.Add("ALL: 1.2.3.4.5")
	tm, err := NewTemplate("ALL: $TARGET$")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, line string) {
		if a, ok := tm.host([]byte(line)); ok && (!a.IsValid() || a.Zone() != "" || a.Is4In6()) {
			t.Fatalf("line %q read as %v", line, a)
		}
	})
}
