package command

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/portsentry/pipeline/ps-block/macro"
)

// FuzzParse: any KILL_ROUTE / KILL_RUN_CMD string either is refused or
// gives a non-empty argv none of whose words holds a byte that needs a
// shell; and expanding it for a decision never changes the number of
// words, so a target can never add an argument.
func FuzzParse(f *testing.F) {
	f.Add(`/sbin/iptables -I INPUT -s $TARGET$ -j DROP`)
	f.Add(`/bin/echo "a b" 'c $TARGET$' \$PORT\$ $MODE$`)
	f.Add(`/bin/sh -c "echo $TARGET$ | mail root"`)
	f.Add(`echo $HOME; rm -rf /`)
	f.Add(`"unterminated`)
	f.Fuzz(func(t *testing.T, s string) {
		c, err := Parse("KILL_RUN_CMD", s)
		if err != nil {
			return
		}
		if len(c.argv) == 0 {
			t.Fatalf("Parse(%q) gave an empty argv", s)
		}
		v, err := macro.NewVars(netip.MustParseAddr("2001:db8::1"), 21, "atcp")
		if err != nil {
			t.Fatal(err)
		}
		argv := c.expand(v)
		if len(argv) != len(c.argv) {
			t.Fatalf("Argv changed the number of words: %q -> %q", c.argv, argv)
		}
		for i, a := range argv {
			if strings.Contains(a, macro.Target) && !strings.Contains(c.argv[i], macro.Target) {
				t.Fatalf("word %d gained a macro: %q", i, a)
			}
		}
	})
}
