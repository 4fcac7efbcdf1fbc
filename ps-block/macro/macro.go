// Package macro substitutes PortSentry 1.2's $TARGET$, $PORT$ and $MODE$ in
// action templates. Only values this package has checked itself are ever
// substituted: an IP address printed by net/netip, a port printed by
// strconv, a mode from the fixed list. So nothing a remote host sends can
// put a shell metacharacter, a space or a newline into a command or a file.
package macro

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// The macros 1.2 knows.
const (
	Target = "$TARGET$"
	Port   = "$PORT$"
	Mode   = "$MODE$"
)

// Modes are the sensor modes a $MODE$ may become.
var Modes = []string{"tcp", "udp", "stcp", "sudp", "atcp", "audp"}

// Vars are the values for one decision, checked by NewVars.
type Vars struct {
	addr netip.Addr
	port uint16
	mode string
}

// NewVars checks the values: the address must be valid and without a zone
// (IPv4-mapped IPv6 becomes IPv4), the mode one of Modes.
func NewVars(addr netip.Addr, port uint16, mode string) (Vars, error) {
	if !addr.IsValid() {
		return Vars{}, fmt.Errorf("macro: invalid target address")
	}
	if addr.Zone() != "" {
		return Vars{}, fmt.Errorf("macro: target %s has a zone", addr)
	}
	ok := false
	for _, m := range Modes {
		ok = ok || m == mode
	}
	if !ok {
		return Vars{}, fmt.Errorf("macro: unknown mode %q", mode)
	}
	return Vars{addr: addr.Unmap(), port: port, mode: mode}, nil
}

// Addr is the checked target.
func (v Vars) Addr() netip.Addr { return v.addr }

// Expand replaces the macros in s; target is how the address is written
// (plain for commands, bracketed IPv6 for hosts.deny).
func (v Vars) Expand(s, target string) string {
	if !strings.Contains(s, "$") {
		return s
	}
	return strings.NewReplacer(Target, target, Port, strconv.Itoa(int(v.port)), Mode, v.mode).Replace(s)
}

// ExpandPlain is Expand with the address in netip's text form.
func (v Vars) ExpandPlain(s string) string { return v.Expand(s, v.addr.String()) }
