package blocker

import (
	"github.com/portsentry/pipeline/ps-block/gate"
	"github.com/portsentry/pipeline/shared/event"
)

// Kernel reports and completes the blocks the kernel fast path made by
// itself: fetch lists them as block decisions, under the Blocker's lock so
// that no lift or unblock slips between the listing and this. One already
// known in its mode is skipped without a word (the listing repeats every
// block until it ends); each new one goes through the gate as gate.Kernel
// (refused: lifted from the kernel) and is carried out like a decision
// whose nftables step is done: hosts.deny, KILL_ROUTE, KILL_RUN_CMD, the
// blocked and history files, a result line for each.
func (b *Blocker) Kernel(fetch func() ([]event.Event, error)) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	evs, err := fetch()
	if err != nil {
		return err
	}
	fresh := evs[:0]
	for _, ev := range evs {
		k := key{ev.Target.Unmap(), ev.Mode}
		if !b.has(k) && !b.inBatch[k] {
			fresh = append(fresh, ev)
		}
	}
	if len(fresh) > 0 {
		b.act(gate.Kernel, fresh)
	}
	return nil
}
