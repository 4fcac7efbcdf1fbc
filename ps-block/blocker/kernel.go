package blocker

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/portsentry/pipeline/ps-block/macro"
	"github.com/portsentry/pipeline/shared/event"
)

// KernelBlock is a block the kernel fast path made by itself, from the
// probe, before any decision came.
type KernelBlock struct {
	Addr    netip.Addr
	Mode    event.Mode
	Port    uint16
	Hits    int           // distinct ports counted (SCAN_TRIGGER+1)
	Expires time.Duration // life left in the kernel; 0: permanent
	Set     string        // where the kernel keeps it
}

// Kernel reports and completes the blocks the kernel made: fetch lists
// them, under the Blocker's lock so that no lift or unblock slips between
// the listing and this. A block already known (in that mode) is skipped.
// Each new one is asked of the guard now: one refused is lifted from the
// kernel at once and reported; the others are carried out as decisions
// whose nftables step is done, without the rate limit (the kernel applied
// BLOCK_RATE already): hosts.deny, KILL_ROUTE, KILL_RUN_CMD, the blocked
// and history files, and a result line for each.
func (b *Blocker) Kernel(fetch func() ([]KernelBlock, error)) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	blocks, err := fetch()
	if err != nil {
		return err
	}
	now := b.cfg.Now()
	for _, kb := range blocks {
		addr := kb.Addr.Unmap()
		k := key{addr, kb.Mode}
		if b.state[k] != nil || b.inBatch[k] {
			continue
		}
		if why := b.cfg.Refuse(addr); why != "" {
			b.cfg.Log.AttackLimited("refusing the kernel's block of %s: %s", addr, why)
			detail := fmt.Sprintf("refused: %s is %s; lifted from the kernel's set %s", addr, why, kb.Set)
			if _, err := b.cfg.NFT.Delete(addr); err != nil {
				detail = fmt.Sprintf("refused: %s is %s; lifting it from the kernel's set %s failed: %v", addr, why, kb.Set, err)
			}
			b.result(addr, kb.Mode, ActionBlock, false, "%s", detail)
			continue
		}
		vars, err := macro.NewVars(addr, kb.Port, kb.Mode.String())
		if err != nil {
			b.result(addr, kb.Mode, ActionBlock, false, "kernel block: %v", err)
			continue
		}
		ev := event.Event{Kind: event.KindBlock, Time: now.UTC(), Target: addr, Mode: kb.Mode,
			Proto: kb.Mode.Proto(), Port: kb.Port, Hits: kb.Hits}
		if kb.Expires > 0 {
			ev.Until = now.Add(kb.Expires)
		}
		b.inBatch[k] = true
		b.batch = append(b.batch, &pending{started: true, ev: ev, vars: vars, k: k, kernelSet: kb.Set})
	}
	b.flushBatch()
	b.flushOut()
	return nil
}
