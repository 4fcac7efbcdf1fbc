package macro

import (
	"net/netip"
	"strings"
	"testing"
)

// FuzzExpand: whatever the template and the decision's values, a value
// NewVars accepts never brings a byte a shell or hosts.deny would act on
// (blank, newline, quote, metacharacter) into the expansion: every such
// byte of the result was already in the template.
func FuzzExpand(f *testing.F) {
	f.Add("/sbin/route add -host $TARGET$ reject", "198.18.0.1", uint16(21), "atcp")
	f.Add("ALL: $TARGET$ # $PORT$ $MODE$", "2001:db8::1", uint16(0), "sudp")
	f.Add("$TARGET$$PORT$$MODE$$", "::ffff:198.18.0.1", uint16(65535), "tcp")
	f.Add("x", "fe80::1%eth0", uint16(1), "atcp;id")
	f.Fuzz(func(t *testing.T, tmpl, addr string, port uint16, mode string) {
		a, err := netip.ParseAddr(addr)
		if err != nil {
			return
		}
		v, err := NewVars(a, port, mode)
		if err != nil {
			return
		}
		if v.Addr().Zone() != "" || v.Addr().Is4In6() {
			t.Fatalf("NewVars kept %v", v.Addr())
		}
		out := v.ExpandPlain(tmpl)
		const unsafe = " \t\r\n'\"`$;|&<>(){}*?[]~\\#\x00"
		for _, c := range unsafe {
			if strings.Count(out, string(c)) > strings.Count(tmpl, string(c)) {
				t.Fatalf("expanding %q with %v/%d/%q added %q: %q", tmpl, a, port, mode, c, out)
			}
		}
	})
}
