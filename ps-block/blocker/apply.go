package blocker

import (
	"context"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/portsentry/pipeline/ps-block/blockfile"
	"github.com/portsentry/pipeline/ps-block/command"
	"github.com/portsentry/pipeline/ps-block/gate"
	"github.com/portsentry/pipeline/ps-block/macro"
	"github.com/portsentry/pipeline/shared/event"
)

// flushBatch asks the gate about each queued decision, now, and carries
// out those it admits phase by phase.
func (b *Blocker) flushBatch() {
	queued := b.batch
	if len(queued) == 0 {
		return
	}
	b.batch = nil
	clear(b.inBatch)
	if h, ok := b.cfg.Log.(holder); ok {
		h.Hold()
		defer h.Release()
	}
	var batch, blocks, acts []*pending
	for _, p := range queued {
		pass, err := b.gate.Admit(p.k.addr, p.ev.Port, p.k.mode, p.origin)
		if err != nil {
			b.refused(p.slot, p.k.addr, p.k.mode, p.origin, err)
			continue
		}
		p.pass = pass
		batch = append(batch, p)
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

// holder is a Logger that gathers the lines of a batch into one write
// (alert.Logger): every block of a batch logs a line.
type holder interface {
	Hold()
	Release()
}

// unmakeKernel takes out of the set a block the kernel fast path made and
// the gate refused.
func (b *Blocker) unmakeKernel(slot int, addr netip.Addr, mode event.Mode) {
	n := b.cfg.NFT
	switch {
	case n == nil:
	case b.cfg.DryRun:
		b.emit(slot, addr, mode, ActionNFT, true, "would remove from set %s: the gate refused it", n.SetFor(addr))
	default:
		if _, err := n.Delete(addr); err != nil {
			b.emit(slot, addr, mode, ActionNFT, false, "removing what the gate refused: %v", err)
			return
		}
		b.emit(slot, addr, mode, ActionNFT, true, "removed from set %s: the gate refused it", n.SetFor(addr))
	}
}

// report writes the result of running argv (c for p) and says whether it
// worked.
func (b *Blocker) report(c *command.Command, p *pending, action string, argv []string, err error) bool {
	if err != nil {
		b.cfg.Log.Attack("%s failed for host %s: %v", c.Key(), p.k.addr, err)
		b.resultFor(p, action, false, "%s: %v", c.Key(), err)
		return false
	}
	verb := "ran"
	if b.cfg.DryRun {
		verb = "would run"
	}
	b.resultFor(p, action, true, "%s %s: %q", verb, c.Key(), argv)
	return true
}

// maxParallel bounds the commands of one batch that run at once: a command
// that hangs holds one slot until COMMAND_TIMEOUT, not every decision
// behind it.
const maxParallel = 16

// runAll runs c for each of ps, at most maxParallel at a time, and reports
// each in ps's order; ran[i] is the command run for ps[i] when it worked,
// nil when it did not.
func (b *Blocker) runAll(c *command.Command, ps []*pending, action string) (ran [][]string) {
	ran = make([][]string, len(ps))
	argvs := make([][]string, len(ps))
	errs := make([]error, len(ps))
	for i, p := range ps {
		argvs[i], errs[i] = c.Argv(p.pass)
	}
	if !b.cfg.DryRun {
		slots := make(chan struct{}, maxParallel)
		var wg sync.WaitGroup
		for i := range ps {
			if errs[i] != nil {
				continue
			}
			slots <- struct{}{}
			wg.Go(func() {
				defer func() { <-slots }()
				errs[i] = b.cfg.Runner.Run(context.Background(), argvs[i])
			})
		}
		wg.Wait()
	}
	for i, p := range ps {
		if b.report(c, p, action, argvs[i], errs[i]) {
			ran[i] = argvs[i]
		}
	}
	return ran
}

// runCmds runs KILL_RUN_CMD for blocks and run decisions.
func (b *Blocker) runCmds(batch []*pending) {
	if b.cfg.RunCmd == nil {
		for _, p := range batch {
			if p.ev.Kind == event.KindRun {
				b.resultFor(p, ActionRun, false, "KILL_RUN_CMD is not set: nothing to run")
				// Still recorded, as 1.2 wrote it: HISTORY_FILE feeds fail2ban.
				p.ok = true
			}
		}
		return
	}
	for i, argv := range b.runAll(b.cfg.RunCmd, batch, ActionRun) {
		if argv != nil {
			p := batch[i]
			// 1.2's line, which log watchers look for.
			b.cfg.Log.Attack("External command run for host: %s using command: \"%s\"", p.k.addr, strings.Join(argv, " "))
			p.ok = true
		}
	}
}

// blockedElsewhere reports whether a block of another mode is in place for
// the host (a run or an alert has nothing in place).
func (b *Blocker) blockedElsewhere(addr netip.Addr) bool {
	for _, m := range event.Modes {
		if e, ok := b.get(key{addr, m}); ok && e.kind == event.KindBlock {
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
		case hd.Has(p.k.addr) && hd.Ours(p.k.addr):
			p.ok = true
			b.result(p.k.addr, p.k.mode, ActionHostsDeny, true, "already in %s (added by ps-block for another mode)", hd.Path())
		case hd.Has(p.k.addr):
			p.ok = true
			b.cfg.Log.AttackLimited("Host %s already has a line in %s that ps-block did not add: nothing added, and it stays when the block ends", p.k.addr, hd.Path())
			b.resultFor(p, ActionHostsDeny, true, "already in %s, a line ps-block did not add: nothing added, and it stays when the block ends", hd.Path())
		case b.cfg.DryRun:
			p.ok = true
			b.resultFor(p, ActionHostsDeny, true, "would add %s to %s", p.k.addr, hd.Path())
		default:
			hd.Add(p.pass)
			queued = append(queued, p)
		}
	}
	if len(queued) == 0 {
		return
	}
	added, err := hd.Flush()
	if err != nil && len(added) > 0 {
		b.cfg.Log.Admin("%v", err) // added, but not remembered
	} else if err != nil {
		b.cfg.Log.Admin("cannot add %d host(s) to %s: %v", len(queued), hd.Path(), err)
		for _, p := range queued {
			b.resultFor(p, ActionHostsDeny, false, "%v", err)
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
			b.cfg.Log.Attack("Host %s has been blocked via wrappers with string: \"%s\" (in %s)", p.k.addr, hd.Line(p.pass), hd.Path())
			b.resultFor(p, ActionHostsDeny, true, "added to %s", hd.Path())
		} else {
			b.resultFor(p, ActionHostsDeny, true, "already in %s (added by another writer meanwhile, not ps-block's: it stays when the block ends)", hd.Path())
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
			b.resultFor(p, ActionRoute, true, "already routed for another mode")
			continue
		}
		todo = append(todo, p)
	}
	for i, argv := range b.runAll(b.cfg.Route, todo, ActionRoute) {
		if argv != nil {
			p := todo[i]
			b.cfg.Log.Attack("Host %s has been blocked via dropped route using command: \"%s\"", p.k.addr, strings.Join(argv, " "))
			p.ok, p.routed = true, true
		}
	}
}

func (b *Blocker) routedElsewhere(addr netip.Addr) bool {
	if !b.blockedElsewhere(addr) {
		return false
	}
	for _, m := range event.Modes {
		if e, ok := b.get(key{addr, m}); ok && e.routed {
			return true
		}
	}
	return false
}

// longestEnd is the latest end among the host's blocks in other modes
// (zero with ok: one never ends).
func (b *Blocker) longestEnd(addr netip.Addr) (end time.Time, any bool) {
	for _, m := range event.Modes {
		if e, ok := b.get(key{addr, m}); ok && e.kind == event.KindBlock {
			if until := e.end(); !any || until.IsZero() || (!end.IsZero() && until.After(end)) {
				end = until
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
			b.resultFor(p, ActionNFT, false, "%v", err)
		}
		return
	}
	var queued []*pending
	for _, p := range blocks {
		set, until := n.SetFor(p.k.addr), p.ev.Until
		if p.origin == gate.Kernel {
			p.ok = true
			b.cfg.Log.Attack("Host %s has been blocked by the kernel fast path (mode %s, port %d)", p.k.addr, p.k.mode, p.ev.Port)
			b.resultFor(p, ActionNFT, true, "added by the kernel fast path to its map for mode %s%s", p.k.mode, untilText(until))
			continue
		}
		if end, ok := b.longestEnd(p.k.addr); ok {
			// The kernel element serves every mode: keep the longest end.
			if end.IsZero() || (!until.IsZero() && !until.After(end)) {
				p.ok = true
				b.resultFor(p, ActionNFT, true, "already in set %s", set)
				continue
			}
			if !b.cfg.DryRun {
				if _, err := n.Delete(p.k.addr); err != nil {
					b.resultFor(p, ActionNFT, false, "extending the block: %v", err)
					continue
				}
			}
		}
		if b.cfg.DryRun {
			p.ok = true
			b.resultFor(p, ActionNFT, true, "would add to set %s%s", set, untilText(until))
			continue
		}
		if err := n.Add(p.pass, until); err != nil {
			b.resultFor(p, ActionNFT, false, "%v", err)
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
			b.resultFor(p, ActionNFT, false, "%v", err)
		}
		return
	}
	for _, p := range queued {
		p.ok = true
		b.cfg.Log.Attack("Host %s has been blocked via nftables set %s", p.k.addr, n.SetFor(p.k.addr))
		b.resultFor(p, ActionNFT, true, "added to set %s%s", n.SetFor(p.k.addr), untilText(p.ev.Until))
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
	if b.cfg.BlockMax > 0 {
		n := 0
		for _, p := range batch {
			if p.ok {
				n++
			}
		}
		if over := len(b.state) + n - b.cfg.BlockMax; over > 0 {
			b.evict(over, "BLOCK_MAX reached: the oldest record is lifted to make room")
		}
	}
	for _, p := range batch {
		if !p.ok {
			continue
		}
		// A dry run remembers too, so that it says what a real run would
		// of a repeat or an unblock; it writes no file.
		b.record(p.k, entry{until: toSecs(p.ev.Until, true), start: toSecs(now, false), port: p.ev.Port, kind: p.ev.Kind, routed: p.routed,
			hits: hitsOf(p.ev.Hits), host: b.hostID(p.ev.Host)})
		l := blockfile.Line{Time: now.Local(), Addr: p.k.addr, Port: p.ev.Port, Proto: p.k.mode.Proto().Upper()}
		byMode[p.k.mode] = append(byMode[p.k.mode], l)
		hist = append(hist, l)
		ends = append(ends, endLine{k: p.k, until: p.ev.Until, kind: p.ev.Kind, hits: hitsOf(p.ev.Hits), host: p.ev.Host})
	}
	if b.cfg.DryRun || len(hist) == 0 {
		return
	}
	if b.cfg.BlockedFile != "" {
		for m, lines := range byMode {
			if err := blockfile.Append(b.cfg.BlockedFile+"."+m.String(), lines); err != nil {
				b.cfg.Log.Admin("%v", err)
			} else {
				b.lines[m] += len(lines)
			}
		}
		b.appendEnds(ends)
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
		e entry
	}
	var live []liftee
	for _, k := range keys {
		e, ok := b.get(k)
		if !ok {
			b.result(k.addr, k.mode, ActionBlock, false, "%s: %s is not blocked in mode %s", why, k.addr, k.mode)
			continue
		}
		live = append(live, liftee{k, e})
		b.forget(k)
	}
	// Their heap items are stale now; a heap never holds many of them.
	b.compactHeaps()
	if b.cfg.BlockedFile != "" && !b.cfg.DryRun && !b.restoring {
		// The until file says at once that they ended; the blocked files
		// drop their lines now or, when large, once half are stale.
		var ends []endLine
		var byMode [modeSlots]int
		for _, l := range live {
			ends = append(ends, endLine{k: l.k, gone: true})
			byMode[l.k.mode]++
		}
		b.appendEnds(ends)
		for m, n := range byMode {
			if n > 0 {
				b.dropLines(event.Mode(m), n)
			}
		}
	} else if b.restoring {
		for _, l := range live {
			b.stale[l.k.mode]++
		}
	}
	would := ""
	if b.cfg.DryRun {
		would = "would be "
	}
	var gone []liftee // no longer blocked in any mode, one per host
	goneAddr := map[netip.Addr]bool{}
	for _, l := range live {
		if l.e.kind != event.KindBlock {
			b.liftLog("Host %s: record of the %s in mode %s %sended (%s)", l.k.addr, l.e.kind, l.k.mode, would, why)
			b.result(l.k.addr, l.k.mode, ActionBlock, true, "record of the %s %sended (%s); the next decision for the host acts again", l.e.kind, would, why)
			continue
		}
		if goneAddr[l.k.addr] {
			// Its host-wide actions are undone with the host's other mode.
			b.result(l.k.addr, l.k.mode, ActionBlock, true, "%slifted (%s) with its other modes", would, why)
			continue
		}
		if b.blockedElsewhere(l.k.addr) {
			b.liftLog("Host %s: block in mode %s %slifted (%s); still blocked in another mode", l.k.addr, l.k.mode, would, why)
			b.result(l.k.addr, l.k.mode, ActionBlock, true, "%slifted (%s); still blocked in another mode", would, why)
			continue
		}
		b.liftLog("Host %s: block %slifted (%s)", l.k.addr, would, why)
		goneAddr[l.k.addr] = true
		gone = append(gone, l)
	}
	if hd := b.cfg.HostsDeny; hd != nil && len(gone) > 0 {
		addrs := make([]netip.Addr, len(gone))
		for i, l := range gone {
			addrs[i] = l.k.addr
		}
		notOurs := map[netip.Addr]bool{}
		for _, a := range hd.NotOurs(addrs...) {
			notOurs[a] = true
		}
		var n int
		var err error
		if !b.cfg.DryRun {
			n, err = hd.Remove(addrs...)
		}
		for _, l := range gone {
			switch {
			case notOurs[l.k.addr]:
				b.result(l.k.addr, l.k.mode, ActionHostsDeny, true, "lifted (%s): the line in %s is not ps-block's, left in place", why, hd.Path())
			case err != nil:
				b.result(l.k.addr, l.k.mode, ActionHostsDeny, false, "lift (%s): %v", why, err)
			case b.cfg.DryRun:
				b.result(l.k.addr, l.k.mode, ActionHostsDeny, true, "would lift (%s): would remove its line from %s", why, hd.Path())
			default:
				b.result(l.k.addr, l.k.mode, ActionHostsDeny, true, "lifted (%s): removed from %s (%d line(s) for %d host(s))", why, hd.Path(), n, len(gone))
			}
		}
	}
	for _, l := range gone {
		k := l.k
		if l.e.routed && b.cfg.Unroute != nil {
			b.unroute(k, l.e.port, why)
		}
		if n := b.cfg.NFT; n != nil {
			if b.cfg.DryRun {
				b.result(k.addr, k.mode, ActionNFT, true, "would lift (%s): would remove from set %s", why, n.SetFor(k.addr))
				continue
			}
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

// unroute runs KILL_UNROUTE for a lifted block. Lifting needs no pass from
// the gate: it can only make a host less blocked.
func (b *Blocker) unroute(k key, port uint16, why string) {
	c := b.cfg.Unroute
	// The values were checked when the block was applied or restored.
	vars, err := macro.NewVars(k.addr, port, k.mode.String())
	var argv []string
	if err == nil {
		argv, err = c.UndoArgv(vars)
	}
	switch {
	case err != nil:
	case b.cfg.DryRun:
		b.result(k.addr, k.mode, ActionRoute, true, "would lift (%s): would run %s: %q", why, c.Key(), argv)
		return
	default:
		err = b.cfg.Runner.Run(context.Background(), argv)
	}
	if err != nil {
		b.cfg.Log.Attack("%s failed for host %s: %v", c.Key(), k.addr, err)
		b.result(k.addr, k.mode, ActionRoute, false, "lift (%s): %s: %v", why, c.Key(), err)
		return
	}
	b.result(k.addr, k.mode, ActionRoute, true, "lifted (%s): ran %s: %q", why, c.Key(), argv)
}
