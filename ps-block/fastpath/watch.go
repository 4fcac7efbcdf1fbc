package fastpath

import (
	"errors"
	"net/netip"
	"time"

	"github.com/portsentry/pipeline/ps-block/nft"
)

// Action is the nftables action with the fast path's block maps: a lift
// (an unblock, a block's end, a refusal) removes the host from them too,
// and a listing (ps-block's restore) includes them, so a restart neither
// adds twice nor drops what the kernel made.
type Action struct {
	*nft.Action
	conn nft.Conn
	rs   *Ruleset
}

// NewAction wraps a; c is a's own connection, used under the same lock.
func NewAction(a *nft.Action, c nft.Conn, rs *Ruleset) *Action {
	return &Action{Action: a, conn: c, rs: rs}
}

// Delete removes addr from the pipeline's set, the block maps and the
// counts.
func (a *Action) Delete(addr netip.Addr) (bool, error) {
	inSet, err := a.Action.Delete(addr)
	inMap, ferr := Forget(a.conn, a.rs, addr)
	return inSet || inMap, errors.Join(err, ferr)
}

// List lists the pipeline's sets and the block maps.
func (a *Action) List() ([]nft.Element, error) {
	els, err := a.Action.List()
	if err != nil {
		return nil, err
	}
	blocks, err := Blocks(a.conn, a.rs)
	if err != nil {
		return nil, err
	}
	for _, b := range blocks {
		els = append(els, nft.Element{Addr: b.Addr, Expires: b.Expires})
	}
	return els, nil
}

// Poll is how often the block maps are listed: every block the kernel
// made is reported within this, well inside the second promised.
const Poll = 250 * time.Millisecond
