package fastpath

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"syscall"
	"time"

	"github.com/google/nftables"
	"github.com/portsentry/pipeline/ps-block/nft"
)

// Conn is the part of *nftables.Conn the fast path uses: the nft action's
// seam and a few more calls.
type Conn interface {
	nft.Conn
	FlushSet(*nftables.Set)
	AddObj(nftables.Obj) nftables.Obj
	GetObjReset(nftables.Obj) ([]nftables.Obj, error)
}

// Install applies rs in one transaction: the table, the sets (the filled
// ones emptied and refilled, the others kept with their elements, so a
// restart loses no block and no count), the counters and the chains, each
// flushed and refilled, so a restart never doubles a rule nor opens a
// window without one. A kernel that lacks an expression the rules use (the
// socket lookup: Linux 4.19) refuses the whole transaction, and nothing
// changes.
func Install(c Conn, rs *Ruleset) error {
	c.AddTable(rs.Table)
	for _, sp := range rs.Sets {
		if err := c.AddSet(sp.Set, nil); err != nil {
			return fmt.Errorf("fastpath: prepare set %s: %w", sp.Set.Name, err)
		}
		if sp.Fill {
			c.FlushSet(sp.Set)
			if err := addElements(c, sp.Set, sp.Elements); err != nil {
				return err
			}
		}
	}
	for _, name := range rs.Counters {
		c.AddObj(&nftables.CounterObj{Table: rs.Table, Name: name})
	}
	for _, ch := range rs.Chains {
		c.AddChain(ch.Chain)
		c.FlushChain(ch.Chain)
	}
	for _, ch := range rs.Chains {
		for _, r := range ch.Rules {
			c.AddRule(&nftables.Rule{Table: rs.Table, Chain: ch.Chain, Exprs: r})
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("fastpath: install in table inet %s: %w%s", rs.Table.Name, err, hint(err))
	}
	return nil
}

// hint explains the kernel's refusals an administrator can act on.
func hint(err error) string {
	switch {
	case errors.Is(err, syscall.EOPNOTSUPP), errors.Is(err, syscall.ENOENT):
		return " (this kernel lacks an nftables feature the fast path needs: the socket expression (Linux 4.19, module nft_socket), dynamic sets with timeouts, or named counters)"
	case errors.Is(err, syscall.EEXIST):
		return " (a set of the same name exists with another type: remove it with nft delete set)"
	}
	return ""
}

// addElements adds in messages the netlink attribute length allows (see
// package nft).
func addElements(c Conn, s *nftables.Set, els []nftables.SetElement) error {
	const perMsg = 1024
	for len(els) > 0 {
		k := min(len(els), perMsg)
		if err := c.SetAddElements(s, els[:k]); err != nil {
			return fmt.Errorf("fastpath: fill set %s: %w", s.Name, err)
		}
		els = els[k:]
	}
	return nil
}

// Disarm removes detection and keeps the blocks enforced: the base chains
// are left with the drop rules only. ps-block does this when it stops, so
// that the kernel makes no block nobody would report.
func Disarm(c Conn, rs *Ruleset) error {
	for _, ch := range rs.Chains {
		if ch.Chain.Hooknum == nil {
			continue
		}
		c.FlushChain(ch.Chain)
		for _, r := range rs.Disarmed {
			c.AddRule(&nftables.Rule{Table: rs.Table, Chain: ch.Chain, Exprs: r})
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("fastpath: disarm: %w", err)
	}
	return nil
}

// SyncProtected replaces the protected sets' contents with protected in
// one transaction: the kernel never sees them half filled.
func SyncProtected(c Conn, rs *Ruleset, protected []PrefixRange) error {
	v4, v6 := protectElements(protected)
	for _, sp := range rs.Sets {
		var els []nftables.SetElement
		switch sp.Set.Name {
		case Protect4:
			els = v4
		case Protect6:
			els = v6
		default:
			continue
		}
		c.FlushSet(sp.Set)
		if err := addElements(c, sp.Set, els); err != nil {
			return err
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("fastpath: update the protected sets: %w", err)
	}
	return nil
}

// Block is one source the kernel blocked.
type Block struct {
	Addr    netip.Addr
	Mode    string
	Port    uint16
	Expires time.Duration // life left; 0: permanent
	Set     string        // the block map that holds it
}

// Blocks lists what the block maps hold now.
func Blocks(c nft.Conn, rs *Ruleset) ([]Block, error) {
	var out []Block
	for _, m := range rs.BlockMaps {
		mode, _ := ModeOfMap(m.Name)
		els, err := c.GetSetElements(m)
		if err != nil {
			return nil, fmt.Errorf("fastpath: list map %s: %w", m.Name, err)
		}
		for _, el := range els {
			addr, ok := netip.AddrFromSlice(el.Key)
			if !ok || len(el.Val) < 2 {
				return nil, fmt.Errorf("fastpath: map %s holds an element of %d+%d bytes", m.Name, len(el.Key), len(el.Val))
			}
			out = append(out, Block{Addr: addr, Mode: mode, Port: uint16(el.Val[0])<<8 | uint16(el.Val[1]), Expires: el.Expires, Set: m.Name})
		}
	}
	return out, nil
}

// Forget removes addr from the block maps and the counts, each set in a
// transaction of its own (a missing element fails its transaction), and
// reports whether a block map held it. After an unblock the source starts
// again from no count: only ports it has not probed before count anew.
func Forget(c nft.Conn, rs *Ruleset, addr netip.Addr) (bool, error) {
	addr = addr.Unmap()
	found := false
	for _, group := range [][]*nftables.Set{rs.BlockMaps, rs.Counts} {
		for _, s := range group {
			if (s.KeyType == nftables.TypeIPAddr) != addr.Is4() || s.KeyType.Bytes != uint32(addr.BitLen()/8) {
				continue // another family, or the (source, port) pairs
			}
			if err := c.SetDeleteElements(s, []nftables.SetElement{{Key: addr.AsSlice()}}); err != nil {
				return found, fmt.Errorf("fastpath: delete %s from %s: %w", addr, s.Name, err)
			}
			err := c.Flush()
			switch {
			case err == nil:
				found = found || s.IsMap
			case !errors.Is(err, syscall.ENOENT):
				return found, fmt.Errorf("fastpath: delete %s from %s: %w", addr, s.Name, err)
			}
		}
	}
	return found, nil
}

// Counts are the probes the fast path left to the pipeline since the last
// call: Full by mode (a set was full), Limited (over BLOCK_RATE).
type Counts struct {
	Full    map[string]uint64
	Limited uint64
}

// TakeCounts reads and resets the counters: one request resets every
// counter of the table and returns them all.
func TakeCounts(c Conn, rs *Ruleset) (Counts, error) {
	out := Counts{Full: map[string]uint64{}}
	if len(rs.Counters) == 0 {
		return out, nil
	}
	objs, err := c.GetObjReset(&nftables.CounterObj{Table: rs.Table, Name: rs.Counters[0]})
	if err != nil {
		return out, fmt.Errorf("fastpath: read the counters: %w", err)
	}
	for _, o := range objs {
		co, ok := o.(*nftables.CounterObj)
		switch {
		case !ok:
		case co.Name == limitedCtr:
			out.Limited += co.Packets
		case strings.HasPrefix(co.Name, fullPrefix):
			out.Full[co.Name[len(fullPrefix):]] += co.Packets
		}
	}
	return out, nil
}
