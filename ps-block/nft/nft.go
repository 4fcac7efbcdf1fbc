// Package nft is ps-block's native nftables action: a table of its own (family
// inet) with one IPv4 and one IPv6 set whose elements carry per-element
// timeouts, and a base chain on the input hook (forward optional) that drops
// any source found in them. It talks netlink through github.com/google/nftables
// and never runs the nft binary.
package nft

import (
	"errors"
	"fmt"
	"net/netip"
	"syscall"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/portsentry/pipeline/ps-block/gate"
	"golang.org/x/sys/unix"
)

// Conn is the part of *nftables.Conn the action uses, so tests can use a
// Conn with a test dial or a fake.
type Conn interface {
	AddTable(*nftables.Table) *nftables.Table
	AddSet(*nftables.Set, []nftables.SetElement) error
	AddChain(*nftables.Chain) *nftables.Chain
	FlushChain(*nftables.Chain)
	AddRule(*nftables.Rule) *nftables.Rule
	SetAddElements(*nftables.Set, []nftables.SetElement) error
	SetDeleteElements(*nftables.Set, []nftables.SetElement) error
	GetSetElements(*nftables.Set) ([]nftables.SetElement, error)
	Flush() error
}

// Default names, as the SPEC's example config documents them.
const (
	DefaultTable = "portsentry"
	Set4         = "portsentry4"
	Set6         = "portsentry6"
	inputChain   = "input"
	forwardChain = "forward"
)

// Batch sizes. A NEWSETELEM message's element list is one netlink attribute,
// whose length is 16 bits: an IPv6 element with a timeout takes 40 bytes, so
// 1024 of them (40 KiB) fit, while 2048 would overflow the length and the
// kernel would silently take only part. One transaction carries at most
// maxBatchElems (about 1 MiB), which fits the send buffer Open asks for.
const (
	maxMsgElems   = 1024
	maxBatchElems = 24576
)

// Config names the table and says whether forwarded traffic is dropped too.
type Config struct {
	Table   string // default DefaultTable
	Forward bool
}

// Element is one blocked address as the kernel holds it.
type Element struct {
	Addr    netip.Addr
	Expires time.Duration // life left; 0: permanent
}

// Action adds, lists and deletes blocked addresses. Adds are buffered and
// sent in one batch by Flush. It is not safe for concurrent use.
type Action struct {
	conn    Conn
	now     func() time.Time
	table   *nftables.Table
	set4    *nftables.Set
	set6    *nftables.Set
	forward bool
	pend4   []nftables.SetElement
	pend6   []nftables.SetElement
}

// New returns an Action on conn; now is the clock that turns `until` into a
// timeout.
func New(conn Conn, cfg Config, now func() time.Time) *Action {
	name := cfg.Table
	if name == "" {
		name = DefaultTable
	}
	t := &nftables.Table{Name: name, Family: nftables.TableFamilyINet}
	return &Action{
		conn:    conn,
		now:     now,
		table:   t,
		forward: cfg.Forward,
		set4: &nftables.Set{Table: t, Name: Set4, KeyType: nftables.TypeIPAddr,
			HasTimeout: true, KeyByteOrder: binaryutil.BigEndian},
		set6: &nftables.Set{Table: t, Name: Set6, KeyType: nftables.TypeIP6Addr,
			HasTimeout: true, KeyByteOrder: binaryutil.BigEndian},
	}
}

// Table is the name of the action's table.
func (a *Action) Table() string { return a.table.Name }

// SetFor names the set an address goes into.
func (a *Action) SetFor(addr netip.Addr) string {
	if addr.Unmap().Is4() {
		return Set4
	}
	return Set6
}

// Ensure creates the table, sets, chains and rules in one transaction. It is
// idempotent: existing table and sets are kept with their elements (NEWTABLE
// and NEWSET without NLM_F_EXCL accept what exists), and the chains are
// flushed and refilled in the same transaction so a restart never doubles a
// rule nor opens a window without one.
func (a *Action) Ensure() error {
	a.conn.AddTable(a.table)
	if err := a.conn.AddSet(a.set4, nil); err != nil {
		return fmt.Errorf("nft: prepare set %s: %w", Set4, err)
	}
	if err := a.conn.AddSet(a.set6, nil); err != nil {
		return fmt.Errorf("nft: prepare set %s: %w", Set6, err)
	}
	a.addChain(inputChain, nftables.ChainHookInput)
	if a.forward {
		a.addChain(forwardChain, nftables.ChainHookForward)
	}
	if err := a.conn.Flush(); err != nil {
		return fmt.Errorf("nft: create table inet %s: %w", a.table.Name, err)
	}
	return nil
}

func (a *Action) addChain(name string, hook *nftables.ChainHook) {
	accept := nftables.ChainPolicyAccept
	c := a.conn.AddChain(&nftables.Chain{
		Name:     name,
		Table:    a.table,
		Type:     nftables.ChainTypeFilter,
		Hooknum:  hook,
		Priority: nftables.ChainPriorityRef(*nftables.ChainPriorityFilter - 1),
		Policy:   &accept,
	})
	a.conn.FlushChain(c)
	a.conn.AddRule(&nftables.Rule{Table: a.table, Chain: c, Exprs: dropFrom(unix.NFPROTO_IPV4, 12, 4, a.set4)})
	a.conn.AddRule(&nftables.Rule{Table: a.table, Chain: c, Exprs: dropFrom(unix.NFPROTO_IPV6, 8, 16, a.set6)})
}

// dropFrom is `meta nfproto P <ip|ip6> saddr @set counter drop`: the source
// address lies at off/size in the network header.
func dropFrom(proto byte, off, size uint32, set *nftables.Set) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: size},
		&expr.Lookup{SourceRegister: 1, SetName: set.Name, SetID: set.ID},
		&expr.Counter{},
		&expr.Verdict{Kind: expr.VerdictDrop},
	}
}

// ErrEnded is returned by Add for a block whose end already passed: adding
// it without a timeout would make it permanent.
var ErrEnded = errors.New("block already ended")

// Add buffers the admitted address for the next Flush, with a timeout up to
// until (zero until: permanent). Only the gate's Pass opens the set: a block
// the guard did not admit at the moment of acting cannot be added.
// IPv4-mapped IPv6 addresses go into the IPv4 set, where the kernel sees
// such packets.
func (a *Action) Add(p gate.Pass, until time.Time) error {
	if !p.Valid() {
		return fmt.Errorf("nft: %w", gate.ErrNoPass)
	}
	addr := p.Addr()
	var timeout time.Duration
	if !until.IsZero() {
		timeout = until.Sub(a.now())
		if timeout <= 0 {
			return fmt.Errorf("nft: %s until %s: %w", addr, until.UTC().Format(time.RFC3339), ErrEnded)
		}
		// The kernel counts milliseconds; round up so a short block is
		// never sent as 0, which means permanent.
		timeout = (timeout + time.Millisecond - 1).Truncate(time.Millisecond)
	}
	addr = addr.Unmap()
	el := nftables.SetElement{Key: addr.AsSlice(), Timeout: timeout}
	if addr.Is4() {
		a.pend4 = append(a.pend4, el)
	} else {
		a.pend6 = append(a.pend6, el)
	}
	return nil
}

// Pending is the number of buffered adds.
func (a *Action) Pending() int { return len(a.pend4) + len(a.pend6) }

// Flush sends the buffered adds. They go in as few transactions as the socket
// buffer allows (one for up to maxBatchElems); an error means the failing
// transaction's elements were not added, as nftables applies a transaction
// whole or not at all. The buffer is emptied either way.
func (a *Action) Flush() error {
	defer func() { a.pend4, a.pend6 = a.pend4[:0], a.pend6[:0] }()
	n := 0
	queue := func(set *nftables.Set, els []nftables.SetElement) error {
		for len(els) > 0 {
			k := min(len(els), maxMsgElems, maxBatchElems-n)
			if err := a.conn.SetAddElements(set, els[:k]); err != nil {
				return fmt.Errorf("nft: add to set %s: %w", set.Name, err)
			}
			els, n = els[k:], n+k
			if n == maxBatchElems {
				if err := a.conn.Flush(); err != nil {
					return fmt.Errorf("nft: add %d elements: %w", n, err)
				}
				n = 0
			}
		}
		return nil
	}
	if err := queue(a.set4, a.pend4); err != nil {
		return err
	}
	if err := queue(a.set6, a.pend6); err != nil {
		return err
	}
	if err := a.conn.Flush(); err != nil {
		return fmt.Errorf("nft: add %d elements: %w", n, err)
	}
	return nil
}

// List returns the elements of both sets as the kernel holds them now.
func (a *Action) List() ([]Element, error) {
	var out []Element
	for _, set := range []*nftables.Set{a.set4, a.set6} {
		els, err := a.conn.GetSetElements(set)
		if err != nil {
			return nil, fmt.Errorf("nft: list set %s: %w", set.Name, err)
		}
		for _, el := range els {
			addr, ok := netip.AddrFromSlice(el.Key)
			if !ok {
				return nil, fmt.Errorf("nft: set %s holds a key of %d bytes", set.Name, len(el.Key))
			}
			out = append(out, Element{Addr: addr, Expires: el.Expires})
		}
	}
	return out, nil
}

// Delete removes addr from its set at once. It reports whether the address
// was there: a missing one (expired, or removed by hand) is not an error.
func (a *Action) Delete(addr netip.Addr) (bool, error) {
	addr = addr.Unmap()
	set := a.set6
	if addr.Is4() {
		set = a.set4
	}
	if err := a.conn.SetDeleteElements(set, []nftables.SetElement{{Key: addr.AsSlice()}}); err != nil {
		return false, fmt.Errorf("nft: delete %s from set %s: %w", addr, set.Name, err)
	}
	if err := a.conn.Flush(); err != nil {
		if errors.Is(err, syscall.ENOENT) {
			return false, nil
		}
		return false, fmt.Errorf("nft: delete %s from set %s: %w", addr, set.Name, err)
	}
	return true, nil
}

// Conn is the connection the action uses, for whoever must act in the same
// table under the same lock (the fast path's lifts).
func (a *Action) Conn() Conn { return a.conn }
