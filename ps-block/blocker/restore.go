package blocker

import (
	"bufio"
	"container/heap"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/portsentry/pipeline/ps-block/blockfile"
	"github.com/portsentry/pipeline/ps-block/gate"
	"github.com/portsentry/pipeline/ps-block/recfile"
	"github.com/portsentry/pipeline/shared/alert"
	"github.com/portsentry/pipeline/shared/event"
)

// untilSuffix names the file beside BLOCKED_FILE that keeps when each
// record ends and what it was: 1.2's blocked-file line has no room for
// either, and fail2ban must keep reading that line unchanged. Each line is
// "ADDRESS MODE END [KIND] [hits=N] [host=NAME]", END being RFC 3339 or
// "never", KIND "run" or "alert" (absent: a block), N the decision's hits
// and NAME the fleet host that made it (both absent in older lines, which
// read as before), or "ADDRESS MODE lifted" when the record
// ended; the last line for a host and mode counts. The file is rewritten
// with the records in force at each start and when it has grown to more
// than twice their number.
const untilSuffix = ".until"

// lifted is the END of an until line that says the record ended.
const lifted = "lifted"

type endLine struct {
	k     key
	until time.Time
	kind  event.Kind
	gone  bool // the record ended: "lifted"
	hits  uint16
	host  string // event.ValidHost, or ""
}

func (l endLine) String() string { return string(l.appendTo(nil)) }

// appendTo appends the line without its newline to b: a fleet member
// writes one a decision.
func (l endLine) appendTo(b []byte) []byte {
	b = append(l.k.addr.AppendTo(b), ' ')
	b = append(append(b, l.k.mode.String()...), ' ')
	switch {
	case l.gone:
		return append(b, lifted...)
	case !l.until.IsZero():
		b = l.until.UTC().AppendFormat(b, time.RFC3339Nano)
	default:
		b = append(b, "never"...)
	}
	if l.kind != event.KindBlock {
		b = append(append(b, ' '), l.kind.String()...)
	}
	if l.hits > 0 {
		b = strconv.AppendUint(append(b, " hits="...), uint64(l.hits), 10)
	}
	if l.host != "" {
		b = append(append(b, " host="...), l.host...)
	}
	return b
}

func parseEnd(text []byte) (endLine, error) {
	fields := strings.Fields(string(text))
	if len(fields) < 3 || len(fields) > 6 {
		return endLine{}, errors.New("want ADDRESS MODE END [KIND] [hits=N] [host=NAME]")
	}
	var l endLine
	kind, kerr := event.KindBlock, error(nil)
	for i, f := range fields[3:] {
		switch {
		case strings.HasPrefix(f, "hits=") && l.hits == 0:
			n, err := strconv.ParseUint(f[len("hits="):], 10, 16)
			if err != nil || n == 0 {
				kerr = errors.Join(kerr, fmt.Errorf("%q: want hits=1 to 65535", f))
			}
			l.hits = uint16(n)
		case strings.HasPrefix(f, "host=") && l.host == "":
			if l.host = f[len("host="):]; !event.ValidHost(l.host) {
				kerr = errors.Join(kerr, fmt.Errorf("%q: not a host name", f))
			}
		case i == 0 && !strings.Contains(f, "="):
			if kind, kerr = event.ParseKind(f); kerr == nil && kind != event.KindRun && kind != event.KindAlert {
				kerr = fmt.Errorf("kind %q: want run or alert", f)
			}
		default:
			kerr = errors.Join(kerr, fmt.Errorf("%q: want KIND, hits=N or host=NAME, each once", f))
		}
	}
	addr, aerr := netip.ParseAddr(fields[0])
	mode, merr := event.ParseMode(fields[1])
	var until time.Time
	var terr error
	if fields[2] != "never" && fields[2] != lifted {
		until, terr = time.Parse(time.RFC3339Nano, fields[2])
	}
	if err := errors.Join(aerr, merr, terr, kerr); err != nil {
		return endLine{}, err
	}
	l.k, l.until, l.kind, l.gone = key{addr.Unmap(), mode}, until, kind, fields[2] == lifted
	return l, nil
}

// appendEnds adds lines to the until file, and rewrites it when it holds
// more than twice the records in force.
func (b *Blocker) appendEnds(ends []endLine) {
	if b.cfg.BlockedFile == "" || b.cfg.DryRun || len(ends) == 0 {
		return
	}
	path := b.cfg.BlockedFile + untilSuffix
	var buf []byte
	for _, l := range ends {
		buf = append(l.appendTo(buf), '\n')
	}
	if err := recfile.Append(path, buf); err != nil {
		b.cfg.Log.Admin("blocker: %v", err)
		return
	}
	b.endLines += len(ends)
	if b.endLines > 2*len(b.state)+compactMin {
		b.rewriteEnds()
	}
}

// compactMin is how many lines a record file may hold beyond what is in
// force before it is rewritten: a file of at most this many lines is kept
// exact, a larger one rewritten once half its lines are stale, so that each
// lift costs a constant share of a rewrite (with its fsync), not a rewrite.
const compactMin = 64

// rewriteEnds replaces the until file with the records in force, a line
// at a time.
func (b *Blocker) rewriteEnds() {
	if b.cfg.BlockedFile == "" || b.cfg.DryRun {
		return
	}
	path := b.cfg.BlockedFile + untilSuffix
	err := func() error {
		w, err := recfile.Create(path, 0o600)
		if err != nil {
			return err
		}
		defer w.Close()
		bw := bufio.NewWriterSize(w, 64<<10)
		for k, e := range b.state {
			bw.WriteString(endLine{k: k.key(), until: e.end(), kind: e.kind, hits: e.hits, host: b.hostName(e.host)}.String())
			bw.WriteByte('\n')
		}
		if err := bw.Flush(); err != nil {
			return err
		}
		return w.Commit()
	}()
	if err != nil {
		b.cfg.Log.Admin("blocker: %v", err)
		return
	}
	b.endLines = len(b.state)
}

// dropLines removes the lines of ended records of mode m from its blocked
// file: at once while the file is small, else when half its lines are
// stale (a restore skips the stale ones: the until file says they ended).
func (b *Blocker) dropLines(m event.Mode, n int) {
	if b.cfg.BlockedFile == "" || b.cfg.DryRun {
		return
	}
	b.stale[m] += n
	if b.restoring || (b.lines[m] > compactMin && 2*b.stale[m] < b.lines[m]) {
		return
	}
	b.compactLines(m)
}

// compactLines rewrites mode m's blocked file with the lines of records in
// force only, the first for each host.
func (b *Blocker) compactLines(m event.Mode) {
	if b.cfg.BlockedFile == "" || b.cfg.DryRun {
		return
	}
	seen := map[skey]bool{}
	kept := 0
	_, err := blockfile.Keep(b.cfg.BlockedFile+"."+m.String(), func(l blockfile.Line) bool {
		s := key{l.Addr.Unmap(), m}.s()
		if _, ok := b.state[s]; !ok || seen[s] {
			return false
		}
		seen[s] = true
		kept++
		return true
	})
	if err != nil {
		b.cfg.Log.Admin("%v", err)
		return
	}
	b.lines[m], b.stale[m] = kept, 0
}

// restoreChunk bounds what Restore holds at once beside the records: the
// decisions re-applied, the blocks lifted and their result lines.
const restoreChunk = 4096

// Restore rebuilds what ps-block had carried out before it stopped, reading
// its files a line at a time: the blocked files name the records, the
// until file when each ends and what it was. At most BLOCK_MAX records are
// kept, the newest; the older are lifted. Records that ended while
// ps-block was down are lifted now. Every block in force passes the gate
// again (gate.Restored): one the guard refuses now (an address since added
// to the ignore file, this host's own, a gateway; or a planted or migrated
// file) is lifted and logged; the others whose kernel element is gone
// (after a reboot) are added again, as are missing hosts.deny lines.
// Problems are logged; Restore goes on.
func (b *Blocker) Restore() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if hd := b.cfg.HostsDeny; hd != nil {
		if err := hd.Load(); err != nil {
			b.cfg.Log.Admin("%v", err)
		}
	}
	listable := false
	if b.cfg.NFT != nil {
		if err := b.ensureNFT(); err != nil {
			b.cfg.Log.Admin("nftables: %v (will retry at the next block)", err)
		} else {
			listable = true
		}
	}
	if b.cfg.BlockedFile == "" {
		if listable {
			b.restoreInKernel() // its problems are said at start
		}
		return
	}
	b.restoring = true
	defer func() { b.restoring = false }()
	gap := b.historyGap()
	evicted := b.restoreLines(gap)
	gap.flush(b)
	if gap != nil && gap.written > 0 {
		b.cfg.Log.Admin("HISTORY_FILE %s lacked %s recorded in %s.<mode> (ps-block stopped between writing the two): written now", b.cfg.HistoryFile, alert.Count(gap.written, "block"), b.cfg.BlockedFile)
	}
	b.restoreEnds()
	if listable {
		b.restoreInKernel()
	}

	now := toSecs(b.cfg.Now(), false)
	var (
		ended, refused []key
		reapply        []*pending
		why            = map[key]string{}
		inForce        int
	)
	for s, e := range b.state {
		k := s.key()
		if e.until != 0 {
			heap.Push(&b.lifts, stamped{at: e.until, k: s})
		}
		switch {
		case e.until != 0 && e.until <= now:
			ended = append(ended, k)
		case e.kind != event.KindBlock:
		default:
			pass, err := b.gate.Admit(k.addr, e.port, k.mode, gate.Restored)
			var r *gate.Refused
			switch {
			case errors.As(err, &r):
				refused = append(refused, k)
				why[k] = r.Why
			case err != nil:
				b.cfg.Log.Admin("%s.%s: %s: %v (lifted)", b.cfg.BlockedFile, k.mode, k.addr, err)
				refused = append(refused, k)
				why[k] = err.Error()
			default:
				inForce++
				if !e.inKernel || (b.cfg.HostsDeny != nil && !b.cfg.HostsDeny.Has(k.addr)) {
					reapply = append(reapply, &pending{ev: event.Event{Kind: e.kind, Target: k.addr, Mode: k.mode, Port: e.port, Until: e.end()}, k: k, origin: gate.Restored, pass: pass, slot: -1})
				}
			}
		}
		if len(reapply) >= restoreChunk {
			b.reapply(reapply)
			reapply = reapply[:0]
		}
	}
	b.reapply(reapply)
	if n := b.putBack[0]; n > 0 {
		b.cfg.Log.Admin("restored %d element(s) missing from the nftables sets", n)
	}
	if n := b.putBack[1]; n > 0 {
		b.cfg.Log.Admin("restored %d line(s) missing from %s", n, b.cfg.HostsDeny.Path())
	}
	b.cfg.Log.Admin("restored %d record(s) (blocks, runs, alerts) from %s.<mode>: %d block(s) in force, %d ended meanwhile, %d refused by the guard, %d over BLOCK_MAX lifted",
		len(b.state), b.cfg.BlockedFile, inForce, len(ended), len(refused), evicted)
	for len(ended) > 0 {
		n := min(len(ended), restoreChunk)
		b.lift(ended[:n], "block ended while ps-block was stopped")
		b.flushOut()
		ended = ended[n:]
	}
	// Refused hosts are lifted after the others were put back: a host
	// refused in one mode is refused in all, so nothing added it again.
	b.liftRefused(refused, why)
	for _, m := range event.Modes {
		if b.stale[m] > 0 {
			b.compactLines(m)
		}
	}
	b.rewriteEnds()
	b.compactHeaps()
	b.flushOut()
}

// restoreLines reads the blocked files into the state, a line at a time,
// each record a block until the until file says otherwise (or, with no
// line there, what BLOCK_TCP/BLOCK_UDP make of the mode: a 1.2 file). Past
// BLOCK_MAX the oldest are lifted, a chunk at a time; it returns how many.
func (b *Blocker) restoreLines(gap *historyGap) (evicted int) {
	for _, m := range event.Modes {
		path := b.cfg.BlockedFile + "." + m.String()
		kind := b.cfg.kindOf(m)
		err := blockfile.Scan(path, func(l blockfile.Line) {
			b.lines[m]++
			gap.check(b, l)
			k := key{l.Addr.Unmap(), m}
			if b.has(k) {
				b.stale[m]++ // a second line for the host
				return
			}
			b.record(k, entry{start: toSecs(l.Time, false), port: l.Port, kind: kind,
				// Routes are not visible to ps-block; a restored block
				// counts as routed so that its end runs KILL_UNROUTE.
				routed: kind == event.KindBlock && b.cfg.Route != nil})
			if b.cfg.BlockMax > 0 && len(b.state) >= b.cfg.BlockMax+restoreChunk {
				evicted += b.evict(len(b.state)-b.cfg.BlockMax, "BLOCK_MAX reached at start: the oldest are lifted")
			}
		}, func(n int, err error) {
			b.cfg.Log.Admin("%s line %d: %v (line skipped)", path, n, err)
			b.stale[m]++
		})
		if err != nil {
			b.cfg.Log.Admin("%v", err)
		}
	}
	if b.cfg.BlockMax > 0 && len(b.state) > b.cfg.BlockMax {
		evicted += b.evict(len(b.state)-b.cfg.BlockMax, "BLOCK_MAX reached at start: the oldest are lifted")
	}
	return evicted
}

// historyGap is what HISTORY_FILE may lack of what the blocked files
// record: ps-block appends a batch's lines to BLOCKED_FILE.<mode> and then
// to HISTORY_FILE, and a stop between the two (SIGKILL, a power cut) left
// blocks that fail2ban, which reads the history, never saw. A blocked line
// is missing from the history when it is later than the history's last
// second, or of that second and not among its lines (a batch's lines go
// into each file in one write). An empty or missing history (new, or
// rotated) is no record to complete.
type historyGap struct {
	last    int64 // unix seconds of the history's last line
	seen    map[historyKey]bool
	lost    []blockfile.Line
	written int
}

type historyKey struct {
	addr  netip.Addr
	proto string
}

// historyTail bounds how far from its end the history's last second is
// looked for.
const historyTail = 16 << 20

// historyGap reads the history's last second, or returns nil when there
// is no history to complete.
func (b *Blocker) historyGap() *historyGap {
	if b.cfg.HistoryFile == "" || b.cfg.DryRun {
		return nil
	}
	lines, ok, err := blockfile.LastSecond(b.cfg.HistoryFile, historyTail)
	if err != nil {
		b.cfg.Log.Admin("%v", err)
	}
	if !ok {
		return nil
	}
	g := &historyGap{last: lines[0].Time.Unix(), seen: map[historyKey]bool{}}
	for _, l := range lines {
		g.seen[historyKey{l.Addr.Unmap(), l.Proto}] = true
	}
	return g
}

// check keeps l if the history lacks it.
func (g *historyGap) check(b *Blocker, l blockfile.Line) {
	if g == nil {
		return
	}
	if t := l.Time.Unix(); t < g.last || t == g.last && g.seen[historyKey{l.Addr.Unmap(), l.Proto}] {
		return
	}
	g.lost = append(g.lost, l)
	if len(g.lost) >= restoreChunk {
		g.flush(b)
	}
}

// flush appends the lines kept to the history.
func (g *historyGap) flush(b *Blocker) {
	if g == nil || len(g.lost) == 0 {
		return
	}
	if err := blockfile.Append(b.cfg.HistoryFile, g.lost); err != nil {
		b.cfg.Log.Admin("%v", err)
	} else {
		g.written += len(g.lost)
	}
	g.lost = g.lost[:0]
}

// restoreEnds reads the until file, a line at a time, into the records
// the blocked files named; a record it says ended is dropped.
func (b *Blocker) restoreEnds() {
	path := b.cfg.BlockedFile + untilSuffix
	f, err := recfile.Open(path, os.O_RDONLY)
	if errors.Is(err, fs.ErrNotExist) {
		return
	}
	if err != nil {
		b.cfg.Log.Admin("blocker: %v", err)
		return
	}
	defer f.Close()
	// A record lifted and then decided again has "lifted" then a new end:
	// the later line brings it back.
	gone := map[skey]entry{}
	err = recfile.Lines(f, func(n int, text []byte, err error) error {
		var l endLine
		if err == nil {
			l, err = parseEnd(text)
		}
		if err != nil {
			b.cfg.Log.Admin("%s line %d: %v (line skipped)", path, n, err)
			return nil
		}
		s := l.k.s()
		e, ok := b.state[s]
		if !ok && !l.gone {
			e, ok = gone[s]
			delete(gone, s)
		}
		switch {
		case !ok:
		case l.gone:
			gone[s] = e
			delete(b.state, s)
			b.stale[l.k.mode]++
		default:
			e.until, e.kind, e.hits, e.host = toSecs(l.until, true), l.kind, l.hits, b.hostID(l.host)
			e.routed = e.routed && l.kind == event.KindBlock
			b.state[s] = e
		}
		return nil
	})
	if err != nil {
		b.cfg.Log.Admin("blocker: read %s: %v", path, err)
	}
}

// listMax is the most records for which Restore reads the kernel's sets:
// the kernel dumps a set's elements in rounds that each walk the set from
// its start, so a dump grows with the square of its size (200,000
// elements: 32 s; 1,000,000: more than 10 minutes, measured). Past it every
// block is added again instead, in chunks, which leaves an element already
// there as it is.
const listMax = 20_000

// restoreInKernel marks the records whose host is in the kernel's sets.
func (b *Blocker) restoreInKernel() {
	if len(b.state) > listMax {
		b.cfg.Log.Admin("nftables: %d records: every block is added to the sets again rather than the sets read (a dump of a large set takes minutes)", len(b.state))
		return
	}
	els, err := b.cfg.NFT.List()
	if err != nil {
		b.cfg.Log.Admin("%s", nftReadProblem(err, b.cfg.DryRun))
		return
	}
	for _, el := range els {
		a := el.Addr.Unmap()
		for _, m := range event.Modes {
			if e, ok := b.state[key{a, m}.s()]; ok {
				e.inKernel = true
				b.state[key{a, m}.s()] = e
			}
		}
	}
}

// liftLog logs one lift; those BLOCK_MAX makes go through the rate-limited
// log, so that 900,000 lifted at a start are a few lines, not 900,000.
func (b *Blocker) liftLog(format string, args ...any) {
	if b.evicting {
		b.cfg.Log.AttackLimited(format, args...)
		return
	}
	b.cfg.Log.Attack(format, args...)
}

// evict lifts the n oldest records to make room (BLOCK_MAX), and returns
// how many it lifted.
func (b *Blocker) evict(n int, why string) int {
	done := 0
	for done < n {
		var keys []key
		for len(keys) < min(n-done, restoreChunk) {
			k, ok := b.oldest()
			if !ok {
				break
			}
			keys = append(keys, k)
		}
		if len(keys) == 0 {
			break
		}
		b.cfg.Log.AttackLimited("BLOCK_MAX (%d) reached: lifting the %d oldest record(s), from %s in mode %s on", b.cfg.BlockMax, len(keys), keys[0].addr, keys[0].mode)
		b.evicting = true
		b.lift(keys, why)
		b.evicting = false
		if b.restoring {
			b.flushOut()
		}
		done += len(keys)
	}
	return done
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
// kernel set and hosts.deny for blocks still in force: one netlink batch
// and one hosts.deny append per chunk.
func (b *Blocker) reapply(ps []*pending) {
	if b.cfg.DryRun || len(ps) == 0 {
		return
	}
	var nftMissing, hdMissing []*pending
	seen := map[netip.Addr]bool{}
	for _, p := range ps {
		if seen[p.k.addr] {
			continue
		}
		seen[p.k.addr] = true
		if e, _ := b.get(p.k); b.cfg.NFT != nil && b.nftReady && !b.hostInKernel(p.k.addr) && !e.inKernel {
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
			b.putBack[0] += len(nftMissing)
			for _, p := range nftMissing {
				if e, ok := b.get(p.k); ok {
					e.inKernel = true
					b.state[p.k.s()] = e
				}
			}
		}
	}
	if len(hdMissing) > 0 {
		for _, p := range hdMissing {
			b.cfg.HostsDeny.Add(p.pass)
		}
		if _, err := b.cfg.HostsDeny.Flush(); err != nil {
			b.cfg.Log.Admin("restoring hosts.deny lines: %v", err)
		} else {
			b.putBack[1] += len(hdMissing)
		}
	}
}

// hostInKernel reports whether any record of the host is marked as in
// the kernel's set (the element serves every mode).
func (b *Blocker) hostInKernel(a netip.Addr) bool {
	for _, m := range event.Modes {
		if e, ok := b.get(key{a, m}); ok && e.inKernel {
			return true
		}
	}
	return false
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
