package blocker

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/portsentry/pipeline/ps-block/blockfile"
	"github.com/portsentry/pipeline/ps-block/gate"
	"github.com/portsentry/pipeline/ps-block/recfile"
	"github.com/portsentry/pipeline/shared/event"
)

// untilSuffix names the file beside BLOCKED_FILE that keeps when each
// record ends and what it was: 1.2's blocked-file line has no room for
// either, and fail2ban must keep reading that line unchanged. Each line is
// "ADDRESS MODE END [KIND]", END being RFC 3339 or "never", KIND "run" or
// "alert" (absent: a block); the last line for a host and mode counts.
const untilSuffix = ".until"

type endLine struct {
	k     key
	until time.Time
	kind  event.Kind
}

func (l endLine) String() string {
	end := "never"
	if !l.until.IsZero() {
		end = l.until.UTC().Format(time.RFC3339Nano)
	}
	s := l.k.addr.String() + " " + l.k.mode.String() + " " + end
	if l.kind != event.KindBlock {
		s += " " + l.kind.String()
	}
	return s
}

func appendEnds(path string, ends []endLine) error {
	var sb strings.Builder
	for _, l := range ends {
		sb.WriteString(l.String())
		sb.WriteByte('\n')
	}
	if err := recfile.Append(path, []byte(sb.String())); err != nil {
		return fmt.Errorf("blocker: %w", err)
	}
	return nil
}

// loadEnds reads the until file; lines it cannot read are reported and
// skipped (their blocks then count as never ending, as in 1.2).
func loadEnds(path string, log Logger) (map[key]endLine, error) {
	f, err := recfile.Open(path, os.O_RDONLY)
	if errors.Is(err, fs.ErrNotExist) {
		return map[key]endLine{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("blocker: %w", err)
	}
	defer f.Close()
	ends := map[key]endLine{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		fields := strings.Fields(sc.Text())
		if len(fields) != 3 && len(fields) != 4 {
			log.Admin("%s line %d: want ADDRESS MODE END [KIND] (line skipped)", path, n)
			continue
		}
		kind, kerr := event.KindBlock, error(nil)
		if len(fields) == 4 {
			if kind, kerr = event.ParseKind(fields[3]); kerr == nil && kind != event.KindRun && kind != event.KindAlert {
				kerr = fmt.Errorf("kind %q: want run or alert", fields[3])
			}
		}
		addr, aerr := netip.ParseAddr(fields[0])
		mode, merr := event.ParseMode(fields[1])
		var until time.Time
		var terr error
		if fields[2] != "never" {
			until, terr = time.Parse(time.RFC3339Nano, fields[2])
		}
		if err := errors.Join(aerr, merr, terr, kerr); err != nil {
			log.Admin("%s line %d: %v (line skipped)", path, n, err)
			continue
		}
		k := key{addr.Unmap(), mode}
		ends[k] = endLine{k: k, until: until, kind: kind}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("blocker: read %s: %w", path, err)
	}
	return ends, nil
}

// rewriteEnds replaces the until file with the blocks in force, so it does
// not grow without end.
func (b *Blocker) rewriteEnds(path string) error {
	var sb strings.Builder
	for k, e := range b.state {
		sb.WriteString(endLine{k: k, until: e.until, kind: e.kind}.String())
		sb.WriteByte('\n')
	}
	if err := recfile.Replace(path, []byte(sb.String())); err != nil {
		return fmt.Errorf("blocker: %w", err)
	}
	return nil
}

// Restore rebuilds what ps-block had applied before it stopped: the blocked
// files name the blocks, the until file when they end. Blocks that ended
// while ps-block was down are lifted now. Every block in force passes the
// gate again (gate.Restored): one the guard refuses now (an address since
// added to the ignore file, this host's own, a gateway; or a planted or
// migrated file) is lifted and logged; the others whose kernel element is
// gone (after a reboot) are added again, as are missing hosts.deny lines.
// Problems are logged; Restore goes on.
func (b *Blocker) Restore() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if hd := b.cfg.HostsDeny; hd != nil {
		if err := hd.Load(); err != nil {
			b.cfg.Log.Admin("%v", err)
		}
	}
	inKernel := map[netip.Addr]bool{}
	if n := b.cfg.NFT; n != nil {
		if err := b.ensureNFT(); err != nil {
			b.cfg.Log.Admin("nftables: %v (will retry at the next block)", err)
		} else if els, err := n.List(); err != nil {
			b.cfg.Log.Admin("%s", nftReadProblem(err, b.cfg.DryRun))
		} else {
			for _, el := range els {
				inKernel[el.Addr.Unmap()] = true
			}
		}
	}
	if b.cfg.BlockedFile == "" {
		return
	}
	ends, err := loadEnds(b.cfg.BlockedFile+untilSuffix, b.cfg.Log)
	if err != nil {
		b.cfg.Log.Admin("%v", err)
	}
	now := b.cfg.Now()
	var (
		ended, refused []key
		reapply        []*pending
		why            = map[key]string{}
	)
	for _, m := range event.Modes {
		path := b.cfg.BlockedFile + "." + m.String()
		var lines []blockfile.Line
		err := blockfile.Scan(path, func(l blockfile.Line) { lines = append(lines, l) }, func(n int, err error) {
			b.cfg.Log.Admin("%s line %d: %v (line skipped)", path, n, err)
		})
		if err != nil {
			b.cfg.Log.Admin("%v", err)
			continue
		}
		for _, l := range lines {
			k := key{l.Addr.Unmap(), m}
			if b.state[k] != nil {
				continue
			}
			pass, err := b.gate.Admit(k.addr, l.Port, m, gate.Restored)
			var r *gate.Refused
			if err != nil && !errors.As(err, &r) {
				b.cfg.Log.Admin("%s: %v (line skipped)", path, err)
				continue
			}
			end, ok := ends[k]
			if !ok {
				// A line with no record of its own (a 1.2 file): what
				// BLOCK_TCP/BLOCK_UDP make of the mode says what it was.
				end.kind = b.cfg.kindOf(m)
			}
			until := end.until
			// Routes are not visible to ps-block; a restored block counts
			// as routed so that its end runs KILL_UNROUTE.
			b.record(k, &entry{until: until, port: l.Port, kind: end.kind, routed: end.kind == event.KindBlock && b.cfg.Route != nil})
			switch {
			case !until.IsZero() && !until.After(now):
				ended = append(ended, k)
			case r != nil:
				refused = append(refused, k)
				why[k] = r.Why
			case end.kind == event.KindBlock:
				reapply = append(reapply, &pending{ev: event.Event{Kind: end.kind, Target: k.addr, Mode: m, Port: l.Port, Until: until}, k: k, origin: gate.Restored, pass: pass, slot: -1})
			}
		}
	}
	b.cfg.Log.Admin("restored %d record(s) (blocks, runs, alerts) from %s.<mode>: %d block(s) in force, %d ended meanwhile, %d refused by the guard",
		len(b.state), b.cfg.BlockedFile, len(reapply), len(ended), len(refused))
	b.lift(ended, "block ended while ps-block was stopped")
	// Lifted before the others are put back: a host refused in one mode
	// is refused in all, so nothing below adds it again.
	b.liftRefused(refused, why)
	b.reapply(reapply, inKernel)
	if !b.cfg.DryRun {
		if err := b.rewriteEnds(b.cfg.BlockedFile + untilSuffix); err != nil {
			b.cfg.Log.Admin("%v", err)
		}
	}
	b.flushOut()
}

// nftReadProblem words a failure to read the kernel's sets. A dry run
// creates nothing, so a table not made yet is what a first real run would
// find, and reading needs the privilege a dry run may lack: it says so
// instead of passing on netlink's words.
// google/nftables formats the kernel's errno into its message (%v), so the
// errno's own text is what is left to look for.
func nftReadProblem(err error, dry bool) string {
	is := func(e syscall.Errno) bool { return errors.Is(err, e) || strings.Contains(err.Error(), e.Error()) }
	switch {
	case !dry:
		return err.Error()
	case is(syscall.ENOENT):
		return "nftables: ps-block's table does not exist yet (a real run creates it); the dry run takes its sets as empty"
	case is(syscall.EPERM):
		return "nftables: reading the sets needs root or CAP_NET_ADMIN; the dry run takes them as empty"
	}
	return "nftables: cannot read the sets (" + err.Error() + "); the dry run takes them as empty"
}

// liftRefused lifts the restored blocks the gate refused, one lift per
// reason so that hosts.deny and each blocked file are rewritten once per
// reason, not once per host.
func (b *Blocker) liftRefused(keys []key, why map[key]string) {
	if len(keys) == 0 {
		return
	}
	byWhy := map[string][]key{}
	var reasons []string
	for _, k := range keys {
		w := why[k]
		if byWhy[w] == nil {
			reasons = append(reasons, w)
		}
		byWhy[w] = append(byWhy[w], k)
		b.cfg.Log.Security("restored block of %s in mode %s refused by the guard: %s is %s; lifting it", k.addr, k.mode, k.addr, w)
	}
	for _, w := range reasons {
		b.lift(byWhy[w], "refused by the guard at start: "+w)
	}
}

// reapply puts back what a reboot or an administrator removed from the
// kernel set and hosts.deny for blocks still in force.
func (b *Blocker) reapply(ps []*pending, inKernel map[netip.Addr]bool) {
	if b.cfg.DryRun {
		return
	}
	var nftMissing, hdMissing []*pending
	seen := map[netip.Addr]bool{}
	for _, p := range ps {
		if seen[p.k.addr] {
			continue
		}
		seen[p.k.addr] = true
		if b.cfg.NFT != nil && b.nftReady && !inKernel[p.k.addr] {
			// The longest end of the host's modes goes in.
			p.ev.Until, _ = b.longestEnd(p.k.addr)
			nftMissing = append(nftMissing, p)
		}
		if b.cfg.HostsDeny != nil && !b.cfg.HostsDeny.Has(p.k.addr) {
			hdMissing = append(hdMissing, p)
		}
	}
	if len(nftMissing) > 0 {
		for _, p := range nftMissing {
			if err := b.cfg.NFT.Add(p.pass, p.ev.Until); err != nil {
				b.cfg.Log.Admin("restoring %s: %v", p.k.addr, err)
			}
		}
		if err := b.cfg.NFT.Flush(); err != nil {
			b.cfg.Log.Admin("restoring %d element(s): %v", len(nftMissing), err)
		} else {
			b.cfg.Log.Admin("restored %d element(s) missing from the nftables sets", len(nftMissing))
		}
	}
	if len(hdMissing) > 0 {
		for _, p := range hdMissing {
			b.cfg.HostsDeny.Add(p.pass)
		}
		if _, err := b.cfg.HostsDeny.Flush(); err != nil {
			b.cfg.Log.Admin("restoring hosts.deny lines: %v", err)
		} else {
			b.cfg.Log.Admin("restored %d line(s) missing from %s", len(hdMissing), b.cfg.HostsDeny.Path())
		}
	}
}

// RecordFile is one file ps-block keeps its records in, with the
// configuration key that names it.
type RecordFile struct {
	Key, Path string
}

// RecordFiles lists every file the configuration makes ps-block keep, for
// the checks at start.
func (c Config) RecordFiles() []RecordFile {
	var out []RecordFile
	if c.BlockedFile != "" {
		for _, m := range event.Modes {
			out = append(out, RecordFile{"BLOCKED_FILE", c.BlockedFile + "." + m.String()})
		}
		out = append(out, RecordFile{"BLOCKED_FILE", c.BlockedFile + untilSuffix})
	}
	if c.HistoryFile != "" {
		out = append(out, RecordFile{"HISTORY_FILE", c.HistoryFile})
	}
	return out
}
