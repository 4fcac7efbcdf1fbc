// Package gate is the one door through which every act of ps-block passes:
// a new block, one released from the rate-limit queue, one restored at
// start, one the kernel fast path made, one from the fleet. The gate asks
// the guard (shared/guard, through keeper.Current) at the moment of acting
// and, when the guard admits the target, hands out a Pass.
//
// The Pass is what makes the rule structural. Every action that puts a
// block in place takes one: nft.Action.Add, hostsdeny.File.Add and
// command.Command.Argv (KILL_ROUTE, KILL_RUN_CMD). Its fields are
// unexported, so only Gate.Admit makes a valid one, and each action refuses
// the zero Pass. Code that wants to add a block without asking the guard
// does not compile, or fails at the action with ErrNoPass.
//
// How to use it (new code that makes or adopts a block):
//
//	p, err := g.Admit(addr, port, mode, gate.Kernel)
//	if err != nil {
//		// *gate.Refused: the guard said no. A block already in place
//		// (Restored, Kernel) must now be lifted; a new one is not made.
//	}
//	nftAction.Add(p, until)
//
// Within ps-block the blocker does this for you: feed a decision to
// blocker.Blocker.Act with its Origin (Decision, Fleet, Kernel); Restore
// uses Restored. Ask at the moment of acting, not when the decision
// arrives: the ignore file, the interfaces and the routes change meanwhile.
package gate

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/portsentry/pipeline/ps-block/macro"
	"github.com/portsentry/pipeline/shared/event"
)

// Origin says where an act comes from, for the log and for what a refusal
// means: a refused new block is not made, a refused block already in place
// (Restored, Kernel) is lifted.
type Origin uint8

// The origins of ps-block's acts.
const (
	Decision Origin = iota // a decision line ps-block read
	Released               // a decision the rate limit held back, carried out now
	Restored               // a block in BLOCKED_FILE, re-applied at start
	Kernel                 // an element the kernel fast path added by itself
	Fleet                  // a decision another host of the fleet made
)

var originNames = [...]string{"decision", "released from the rate-limit queue", "restored at start", "made by the kernel fast path", "from the fleet"}

func (o Origin) String() string {
	if int(o) < len(originNames) {
		return originNames[o]
	}
	return fmt.Sprintf("origin %d", o)
}

// InPlace reports whether a block of this origin already exists when the
// gate is asked, so that a refusal must lift it.
func (o Origin) InPlace() bool { return o == Restored || o == Kernel }

// Pass is the guard's admission of one target at the moment of acting,
// with the values checked by package macro. Only Admit makes a valid one.
type Pass struct {
	vars   macro.Vars
	origin Origin
	ok     bool
}

// Valid reports whether the Pass came from Admit; actions check it.
func (p Pass) Valid() bool { return p.ok }

// Addr is the admitted target.
func (p Pass) Addr() netip.Addr { return p.vars.Addr() }

// Vars are the admitted values for $TARGET$, $PORT$ and $MODE$.
func (p Pass) Vars() macro.Vars { return p.vars }

// Origin is where the act came from.
func (p Pass) Origin() Origin { return p.origin }

// ErrNoPass is what an action returns for a Pass that Admit did not make.
var ErrNoPass = errors.New("no pass from the gate: every block must be admitted by the guard at the moment of acting")

// Refused is Admit's error when the guard refuses the target.
type Refused struct {
	Addr   netip.Addr
	Why    string // the guard's words: "a loopback address", "in the ignore file"
	Origin Origin
}

func (r *Refused) Error() string { return fmt.Sprintf("%s is %s", r.Addr, r.Why) }

// Gate asks the guard. It holds no state of its own beyond the question, so
// it is safe for concurrent use when refuse is.
type Gate struct {
	refuse func(netip.Addr) string
}

// New returns a gate that asks refuse, which says why an address must never
// be blocked ("" when it may be); ps-block passes
// func(a) { return keeper.Current().Refuse(a) }. A nil refuse admits every
// valid address (tests of the actions only).
func New(refuse func(netip.Addr) string) *Gate {
	if refuse == nil {
		refuse = func(netip.Addr) string { return "" }
	}
	return &Gate{refuse: refuse}
}

// Admit asks the guard about addr now. It returns a Pass, or a *Refused
// error, or the error of package macro for values that cannot reach a
// command or a file.
func (g *Gate) Admit(addr netip.Addr, port uint16, mode event.Mode, o Origin) (Pass, error) {
	vars, err := macro.NewVars(addr, port, mode.String())
	if err != nil {
		return Pass{}, err
	}
	if why := g.refuse(vars.Addr()); why != "" {
		return Pass{}, &Refused{Addr: vars.Addr(), Why: why, Origin: o}
	}
	return Pass{vars: vars, origin: o, ok: true}, nil
}

// Refuse is the guard's answer for addr now, without a Pass: for a check
// before queueing, never in place of Admit before acting.
func (g *Gate) Refuse(addr netip.Addr) string { return g.refuse(addr.Unmap()) }
