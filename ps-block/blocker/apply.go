package blocker

import (
	"context"
	"net/netip"
	"sync"
	"time"

	"github.com/portsentry/pipeline/ps-block/blockfile"
	"github.com/portsentry/pipeline/ps-block/command"
	"github.com/portsentry/pipeline/ps-block/macro"
	"github.com/portsentry/pipeline/shared/event"
)

// flushBatch carries out the queued decisions phase by phase.
func (b *Blocker) flushBatch() {
	batch := b.batch
	if len(batch) == 0 {
		return
	}
	b.batch = nil
	clear(b.inBatch)
	var blocks, acts []*pending
	for _, p := range batch {
		if p.ev.Kind == event.KindBlock {
			blocks = append(blocks, p)
		}
		if p.ev.Kind != event.KindAlert {
			acts = append(acts, p)
		}
	}
	if b.cfg.RunCmdFirst {
		b.runCmds(acts)
	}
	// The nftables set first: one netlink batch, no fork, no file to
	// rewrite, it shuts the door in well under a millisecond, while a
	// scanner is still sending probes.
	b.applyNFT(blocks)
	b.applyHostsDeny(blocks)
	b.applyRoutes(blocks)
	if !b.cfg.RunCmdFirst {
		b.runCmds(acts)
	}
	b.remember(batch)
}

func (b *Blocker) run(ctx context.Context, c *command.Command, p *pending, action string) bool {
	if b.cfg.DryRun {
		b.result(p.k.addr, p.k.mode, action, true, "would run %s: %q", c.Key(), c.Argv(p.vars))
		return true
	}
	return b.report(c, p, action, b.cfg.Runner.Run(ctx, c.Argv(p.vars)))
}

// report writes the result of running c for p and says whether it worked.
func (b *Blocker) report(c *command.Command, p *pending, action string, err error) bool {
	if err != nil {
		b.cfg.Log.Attack("%s failed for host %s: %v", c.Key(), p.k.addr, err)
		b.result(p.k.addr, p.k.mode, action, false, "%s: %v", c.Key(), err)
		return false
	}
	b.result(p.k.addr, p.k.mode, action, true, "ran %s: %q", c.Key(), c.Argv(p.vars))
	return true
}

// maxParallel bounds the commands of one batch that run at once: a command
// that hangs holds one slot until COMMAND_TIMEOUT, not every decision
// behind it.
const maxParallel = 16

// runAll runs c for each of ps, at most maxParallel at a time, and reports
// each in ps's order; ok[i] says whether the command for ps[i] worked.
func (b *Blocker) runAll(c *command.Command, ps []*pending, action string) (ok []bool) {
	ok = make([]bool, len(ps))
	if b.cfg.DryRun {
		for i, p := range ps {
			ok[i] = b.run(context.Background(), c, p, action)
		}
		return ok
	}
	errs := make([]error, len(ps))
	slots := make(chan struct{}, maxParallel)
	var wg sync.WaitGroup
	for i, p := range ps {
		slots <- struct{}{}
		wg.Go(func() {
			defer func() { <-slots }()
			errs[i] = b.cfg.Runner.Run(context.Background(), c.Argv(p.vars))
		})
	}
	wg.Wait()
	for i, p := range ps {
		ok[i] = b.report(c, p, action, errs[i])
	}
	return ok
}

// runCmds runs KILL_RUN_CMD for blocks and run decisions.
func (b *Blocker) runCmds(batch []*pending) {
	if b.cfg.RunCmd == nil {
		for _, p := range batch {
			if p.ev.Kind == event.KindRun {
				b.result(p.k.addr, p.k.mode, ActionRun, false, "KILL_RUN_CMD is not set: nothing to run")
			}
		}
		return
	}
	for i, ok := range b.runAll(b.cfg.RunCmd, batch, ActionRun) {
		if ok {
			p := batch[i]
			b.cfg.Log.Attack("Host %s: ran KILL_RUN_CMD (%s)", p.k.addr, p.ev.Kind)
			p.ok = true
		}
	}
}

// blockedElsewhere reports whether a block of another mode is in place for
// the host (a run or an alert has nothing in place).
func (b *Blocker) blockedElsewhere(addr netip.Addr) bool {
	for _, m := range event.Modes {
		if e := b.state[key{addr, m}]; e != nil && e.kind == event.KindBlock {
			return true
		}
	}
	return false
}

func (b *Blocker) applyHostsDeny(blocks []*pending) {
	hd := b.cfg.HostsDeny
	if hd == nil || len(blocks) == 0 {
		return
	}
	var queued []*pending
	for _, p := range blocks {
		switch {
		case hd.Has(p.k.addr):
			p.ok = true
			b.result(p.k.addr, p.k.mode, ActionHostsDeny, true, "already in %s", hd.Path())
		case b.cfg.DryRun:
			b.result(p.k.addr, p.k.mode, ActionHostsDeny, true, "would add %s to %s", p.k.addr, hd.Path())
		default:
			hd.Add(p.vars)
			queued = append(queued, p)
		}
	}
	if len(queued) == 0 {
		return
	}
	added, err := hd.Flush()
	if err != nil {
		b.cfg.Log.Admin("cannot add %d host(s) to %s: %v", len(queued), hd.Path(), err)
		for _, p := range queued {
			b.result(p.k.addr, p.k.mode, ActionHostsDeny, false, "%v", err)
		}
		return
	}
	fresh := make(map[netip.Addr]bool, len(added))
	for _, a := range added {
		fresh[a] = true
	}
	for _, p := range queued {
		p.ok = true
		if fresh[p.k.addr] {
			b.cfg.Log.Attack("Host %s has been blocked via wrappers in %s", p.k.addr, hd.Path())
			b.result(p.k.addr, p.k.mode, ActionHostsDeny, true, "added to %s", hd.Path())
		} else {
			b.result(p.k.addr, p.k.mode, ActionHostsDeny, true, "already in %s (added by another writer)", hd.Path())
		}
	}
}

func (b *Blocker) applyRoutes(blocks []*pending) {
	if b.cfg.Route == nil {
		return
	}
	var todo []*pending
	for _, p := range blocks {
		if b.routedElsewhere(p.k.addr) {
			p.ok, p.routed = true, true
			b.result(p.k.addr, p.k.mode, ActionRoute, true, "already routed for another mode")
			continue
		}
		todo = append(todo, p)
	}
	for i, ok := range b.runAll(b.cfg.Route, todo, ActionRoute) {
		if ok {
			p := todo[i]
			b.cfg.Log.Attack("Host %s has been blocked via dropped route", p.k.addr)
			p.ok, p.routed = true, true
		}
	}
}

func (b *Blocker) routedElsewhere(addr netip.Addr) bool {
	if !b.blockedElsewhere(addr) {
		return false
	}
	for _, m := range event.Modes {
		if e := b.state[key{addr, m}]; e != nil && e.routed {
			return true
		}
	}
	return false
}

// longestEnd is the latest end among the host's blocks in other modes
// (zero with ok: one never ends).
func (b *Blocker) longestEnd(addr netip.Addr) (end time.Time, any bool) {
	for _, m := range event.Modes {
		if e := b.state[key{addr, m}]; e != nil && e.kind == event.KindBlock {
			if !any || e.until.IsZero() || (!end.IsZero() && e.until.After(end)) {
				end = e.until
			}
			any = true
		}
	}
	return end, any
}

func (b *Blocker) ensureNFT() error {
	if b.nftReady || b.cfg.DryRun {
		return nil
	}
	if err := b.cfg.NFT.Ensure(); err != nil {
		return err
	}
	b.nftReady = true
	return nil
}

func (b *Blocker) applyNFT(blocks []*pending) {
	n := b.cfg.NFT
	if n == nil || len(blocks) == 0 {
		return
	}
	if err := b.ensureNFT(); err != nil {
		b.cfg.Log.Admin("nftables: %v", err)
		for _, p := range blocks {
			b.result(p.k.addr, p.k.mode, ActionNFT, false, "%v", err)
		}
		return
	}
	var queued []*pending
	for _, p := range blocks {
		set, until := n.SetFor(p.k.addr), p.ev.Until
		if end, ok := b.longestEnd(p.k.addr); ok {
			// The kernel element serves every mode: keep the longest end.
			if end.IsZero() || (!until.IsZero() && !until.After(end)) {
				p.ok = true
				b.result(p.k.addr, p.k.mode, ActionNFT, true, "already in set %s", set)
				continue
			}
			if !b.cfg.DryRun {
				if _, err := n.Delete(p.k.addr); err != nil {
					b.result(p.k.addr, p.k.mode, ActionNFT, false, "extending the block: %v", err)
					continue
				}
			}
		}
		if b.cfg.DryRun {
			b.result(p.k.addr, p.k.mode, ActionNFT, true, "would add to set %s%s", set, untilText(until))
			continue
		}
		if err := n.Add(p.k.addr, until); err != nil {
			b.result(p.k.addr, p.k.mode, ActionNFT, false, "%v", err)
			continue
		}
		queued = append(queued, p)
	}
	if len(queued) == 0 {
		return
	}
	if err := n.Flush(); err != nil {
		b.cfg.Log.Admin("nftables: %v", err)
		for _, p := range queued {
			b.result(p.k.addr, p.k.mode, ActionNFT, false, "%v", err)
		}
		return
	}
	for _, p := range queued {
		p.ok = true
		b.cfg.Log.Attack("Host %s has been blocked via nftables set %s", p.k.addr, n.SetFor(p.k.addr))
		b.result(p.k.addr, p.k.mode, ActionNFT, true, "added to set %s%s", n.SetFor(p.k.addr), untilText(p.ev.Until))
	}
}

func untilText(until time.Time) string {
	if until.IsZero() {
		return ""
	}
	return " until " + until.UTC().Format(time.RFC3339)
}

// remember records the decisions that took (a block with some action
// done, a run whose command worked, every alert) and writes the blocked,
// history and until files, one append each per batch: with BLOCK_x 0 or 2
// too, as 1.2 did, for fail2ban reads HISTORY_FILE.
func (b *Blocker) remember(batch []*pending) {
	byMode := map[event.Mode][]blockfile.Line{}
	var hist []blockfile.Line
	var ends []endLine
	now := b.cfg.Now()
	for _, p := range batch {
		if !p.ok {
			continue
		}
		if !b.cfg.DryRun {
			b.record(p.k, &entry{until: p.ev.Until, port: p.ev.Port, kind: p.ev.Kind, routed: p.routed})
		}
		l := blockfile.Line{Time: now.Local(), Addr: p.k.addr, Port: p.ev.Port, Proto: p.k.mode.Proto().Upper()}
		byMode[p.k.mode] = append(byMode[p.k.mode], l)
		hist = append(hist, l)
		ends = append(ends, endLine{k: p.k, until: p.ev.Until, kind: p.ev.Kind})
	}
	if b.cfg.DryRun || len(hist) == 0 {
		return
	}
	if b.cfg.BlockedFile != "" {
		for m, lines := range byMode {
			if err := blockfile.Append(b.cfg.BlockedFile+"."+m.String(), lines); err != nil {
				b.cfg.Log.Admin("%v", err)
			}
		}
		if err := appendEnds(b.cfg.BlockedFile+untilSuffix, ends); err != nil {
			b.cfg.Log.Admin("%v", err)
		}
	}
	if b.cfg.HistoryFile != "" {
		if err := blockfile.Append(b.cfg.HistoryFile, hist); err != nil {
			b.cfg.Log.Admin("%v", err)
		}
	}
}

// lift ends the blocks of keys, for the reason why; the host-wide actions
// are undone only for hosts no other mode still blocks. One rewrite of
// BLOCKED_FILE per mode and one of hosts.deny serve all of them, so that
// thousands of blocks ending at one moment cost a few file writes, not
// thousands.
func (b *Blocker) lift(keys []key, why string) {
	type liftee struct {
		k key
		e *entry
	}
	var live []liftee
	for _, k := range keys {
		e := b.state[k]
		switch {
		case e == nil:
			b.result(k.addr, k.mode, ActionBlock, false, "%s: %s is not blocked in mode %s", why, k.addr, k.mode)
			continue
		case b.cfg.DryRun:
			b.result(k.addr, k.mode, ActionBlock, true, "would lift (%s)", why)
			continue
		}
		live = append(live, liftee{k, e})
		delete(b.state, k)
	}
	if b.cfg.BlockedFile != "" {
		byMode := map[event.Mode][]netip.Addr{}
		for _, l := range live {
			byMode[l.k.mode] = append(byMode[l.k.mode], l.k.addr)
		}
		for m, addrs := range byMode {
			if _, err := blockfile.Remove(b.cfg.BlockedFile+"."+m.String(), addrs...); err != nil {
				b.cfg.Log.Admin("%v", err)
			}
		}
	}
	var gone []liftee // no longer blocked in any mode
	for _, l := range live {
		if l.e.kind != event.KindBlock {
			b.cfg.Log.Attack("Host %s: record of the %s in mode %s ended (%s)", l.k.addr, l.e.kind, l.k.mode, why)
			b.result(l.k.addr, l.k.mode, ActionBlock, true, "record of the %s ended (%s); the next decision for the host acts again", l.e.kind, why)
			continue
		}
		if b.blockedElsewhere(l.k.addr) {
			b.cfg.Log.Attack("Host %s: block in mode %s lifted (%s); still blocked in another mode", l.k.addr, l.k.mode, why)
			b.result(l.k.addr, l.k.mode, ActionBlock, true, "lifted (%s); still blocked in another mode", why)
			continue
		}
		b.cfg.Log.Attack("Host %s: block lifted (%s)", l.k.addr, why)
		gone = append(gone, l)
	}
	if hd := b.cfg.HostsDeny; hd != nil && len(gone) > 0 {
		addrs := make([]netip.Addr, len(gone))
		for i, l := range gone {
			addrs[i] = l.k.addr
		}
		n, err := hd.Remove(addrs...)
		for _, l := range gone {
			if err != nil {
				b.result(l.k.addr, l.k.mode, ActionHostsDeny, false, "lift (%s): %v", why, err)
			} else {
				b.result(l.k.addr, l.k.mode, ActionHostsDeny, true, "lifted (%s): removed from %s (%d line(s) for %d host(s))", why, hd.Path(), n, len(gone))
			}
		}
	}
	for _, l := range gone {
		k := l.k
		if l.e.routed && b.cfg.Unroute != nil {
			// The values were checked when the block was applied or restored.
			if vars, err := macro.NewVars(k.addr, l.e.port, k.mode.String()); err == nil {
				b.run(context.Background(), b.cfg.Unroute, &pending{vars: vars, k: k}, ActionRoute)
			}
		}
		if n := b.cfg.NFT; n != nil {
			present, err := n.Delete(k.addr)
			switch {
			case err != nil:
				b.result(k.addr, k.mode, ActionNFT, false, "lift (%s): %v", why, err)
			case present:
				b.result(k.addr, k.mode, ActionNFT, true, "lifted (%s): removed from set %s", why, n.SetFor(k.addr))
			default:
				b.result(k.addr, k.mode, ActionNFT, true, "lifted (%s): not in set %s (expired in the kernel)", why, n.SetFor(k.addr))
			}
		}
	}
}
