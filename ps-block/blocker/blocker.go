// Package blocker is ps-block's core: it reads decision lines, refuses what
// must never be blocked, carries out the configured actions in PortSentry
// 1.2's order, writes one result line per action, remembers what it applied
// (across restarts, from its files and the kernel) and lifts blocks when
// they end. Each action sits behind a narrow interface so tests fake them.
//
// Every act passes the gate (package gate) at the moment it is carried out:
// a decision read now, one released from the rate-limit queue, a block
// restored at start, one the kernel fast path made, one from the fleet
// (Act). The actions take only the gate's Pass, so no other way exists.
//
// Decisions are gathered into a batch while input keeps coming and carried
// out when it pauses (transport.Handler's Idle), so a flood costs one
// hosts.deny rewrite and one netlink transaction per batch, while the order
// of actions for each host stays 1.2's: KILL_RUN_CMD (if first),
// hosts.deny, KILL_ROUTE, nftables, KILL_RUN_CMD (if last). Results are
// written in the order of the decisions, whatever the phases' order.
package blocker

import (
	"cmp"
	"container/heap"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/portsentry/pipeline/ps-block/command"
	"github.com/portsentry/pipeline/ps-block/gate"
	"github.com/portsentry/pipeline/ps-block/nft"
	"github.com/portsentry/pipeline/ps-block/ratelimit"
	"github.com/portsentry/pipeline/shared/event"
	"github.com/portsentry/pipeline/shared/guard"
	"github.com/portsentry/pipeline/shared/transport"
)

// Result actions beside the SPEC's hosts.deny, route, run and nft: "block"
// is about the decision as a whole (refused, repeated, held back by the rate
// limit, lifted), "input" about a line that could not be read.
const (
	ActionHostsDeny = "hosts.deny"
	ActionRoute     = "route"
	ActionRun       = "run"
	ActionNFT       = "nft"
	ActionBlock     = "block"
	ActionInput     = "input"
)

// maxBatch bounds a batch when input never pauses.
const maxBatch = 4096

// NFT is the nftables action (package nft).
type NFT interface {
	Ensure() error
	Add(p gate.Pass, until time.Time) error
	Flush() error
	Delete(addr netip.Addr) (bool, error)
	List() ([]nft.Element, error)
	SetFor(addr netip.Addr) string
}

// HostsDeny is the hosts.deny action (package hostsdeny).
type HostsDeny interface {
	Load() error
	Has(addr netip.Addr) bool
	Ours(addr netip.Addr) bool
	NotOurs(addrs ...netip.Addr) []netip.Addr
	Add(p gate.Pass) bool
	Line(p gate.Pass) string // the line Add would write, for the log
	Flush() ([]netip.Addr, error)
	Remove(addrs ...netip.Addr) (int, error)
	Path() string
}

// Logger is the administrator's log (package shared/alert).
type Logger interface {
	Admin(format string, args ...any)
	Security(format string, args ...any)
	Attack(format string, args ...any)
	AttackLimited(format string, args ...any)
}

// Sink takes result lines (package shared/transport).
type Sink interface {
	Write(line []byte) error
	Flush() error
}

// Config wires the actions; a nil action is not configured.
type Config struct {
	NFT         NFT
	HostsDeny   HostsDeny
	Route       *command.Command
	Unroute     *command.Command
	RunCmd      *command.Command
	Runner      command.Runner
	RunCmdFirst bool
	// BlockedFile gets the suffix .<mode>; with ".until" it also names the
	// file that keeps each block's end across restarts. "" disables both.
	BlockedFile string
	HistoryFile string
	// KindOf is what BLOCK_TCP/BLOCK_UDP make of a mode's decisions
	// (KindAlert, KindBlock or KindRun); restore uses it for a blocked-file
	// line that has no record of its own (1.2's). nil: KindBlock.
	KindOf func(event.Mode) event.Kind
	// BlockMax bounds the records in force (BLOCK_MAX); past it the oldest
	// is lifted to make room. 0: no bound.
	BlockMax int
	Rate     float64 // new blocks per second; 0: unlimited
	Burst    int
	DryRun   bool
	Now      func() time.Time
	// Gate is asked before every act (ps-block's asks keeper.Current());
	// nil: a gate that refuses only what is never a host (loopback,
	// multicast...), for tests.
	Gate *gate.Gate
	Log  Logger
	Out  Sink
	// OutFailed hears of the first error writing result lines (the next
	// stage has gone); the program then stops, as every stage does.
	OutFailed func(error)
	// Observer hears of every result (ps-block --metrics); nil: none.
	Observer Observer
}

// Observer counts results: each one, and for a decision's, the time from
// its hit (the decision's time) to the result.
type Observer interface {
	Result(action string, ok bool)
	Reaction(action string, d time.Duration)
}

func (c Config) kindOf(m event.Mode) event.Kind {
	if c.KindOf == nil {
		return event.KindBlock
	}
	return c.KindOf(m)
}

type key struct {
	addr netip.Addr
	mode event.Mode
}

// pending is a decision waiting in the batch.
type pending struct {
	started bool // left the waiting queue for the batch
	origin  gate.Origin
	pass    gate.Pass // the gate's, when the batch is carried out
	slot    int       // where its results go (see slots); -1 while it waits
	ev      event.Event
	k       key
	ok      bool // some blocking action succeeded
	routed  bool
}

// Blocker is safe for concurrent use: transport calls and the lift timer
// share one mutex.
type Blocker struct {
	cfg     Config
	mu      sync.Mutex
	state   map[skey]entry
	batch   []*pending
	inBatch map[key]bool
	lifts   stampHeap // ends of entries, the earliest first
	// Lines in each mode's blocked file, and how many of them are of
	// records no longer in force (dropped at the next compaction).
	lines, stale [modeSlots]int
	endLines     int       // lines in the until file
	restoring    bool      // inside Restore: the files are compacted at its end
	evicting     bool      // lifting for BLOCK_MAX: per-host lines are rate limited
	putBack      [2]int    // at start: elements, hosts.deny lines put back
	ages         stampHeap // starts of entries, the oldest first (BLOCK_MAX)
	bucket       *ratelimit.Bucket
	nftReady     bool
	badLines     uint64
	gate         *gate.Gate
	slots        [][]byte // result lines not yet written, one slot per decision in order
	cur          int      // the slot of the line being read, or -1
	outErr       error    // the first error writing results
	waiting      waiting  // decisions held back by the rate limit
	held         uint64   // since the last TakeHeld
	dropped      uint64
	// hosts and hostIDs name the fleet hosts of the records (entry.host).
	hosts   []string
	hostIDs map[string]uint16
}

// New returns a Blocker; call Restore before feeding it lines.
func New(cfg Config) *Blocker {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Gate == nil {
		cfg.Gate = gate.New((*guard.Set)(nil).Refuse)
	}
	if cfg.Runner == nil {
		cfg.Runner = command.Exec{}
	}
	return &Blocker{
		cfg:     cfg,
		state:   map[skey]entry{},
		hostIDs: map[string]uint16{},
		inBatch: map[key]bool{},
		bucket:  ratelimit.New(cfg.Rate, cfg.Burst, cfg.Now()),
		gate:    cfg.Gate,
		cur:     -1,
	}
}

// Result lines wait in slots, one per decision in the order the decisions
// came (or left the rate-limit queue), and are written in that order once
// the batch is carried out: the actions go phase by phase over the batch,
// the results do not. A result that belongs to no decision (a lift when a
// block ends) gets a slot of its own.
func (b *Blocker) newSlot() int {
	if n := len(b.slots); n < cap(b.slots) {
		b.slots = b.slots[:n+1]
		b.slots[n] = b.slots[n][:0]
	} else {
		b.slots = append(b.slots, nil)
	}
	return len(b.slots) - 1
}

// emit puts one result line into slot (-1: a slot of its own).
func (b *Blocker) emit(slot int, addr netip.Addr, mode event.Mode, action string, ok bool, format string, args ...any) {
	ev := event.Event{Kind: event.KindResult, Time: b.cfg.Now().UTC(), Target: addr, Mode: mode,
		Action: action, OK: ok, Detail: fmt.Sprintf(format, args...)}
	if b.cfg.DryRun && ok {
		ev.Detail = "dry run: " + ev.Detail
	}
	if b.cfg.Observer != nil {
		b.cfg.Observer.Result(action, ok)
	}
	if slot < 0 {
		slot = b.newSlot()
	}
	b.slots[slot] = event.Append(b.slots[slot], &ev)
}

// result is a result of the line being read, or of no decision.
func (b *Blocker) result(addr netip.Addr, mode event.Mode, action string, ok bool, format string, args ...any) {
	b.emit(b.cur, addr, mode, action, ok, format, args...)
}

// resultFor is a result of the decision p.
func (b *Blocker) resultFor(p *pending, action string, ok bool, format string, args ...any) {
	if b.cfg.Observer != nil && ok && !p.ev.Time.IsZero() {
		b.cfg.Observer.Reaction(action, b.cfg.Now().Sub(p.ev.Time))
	}
	b.emit(p.slot, p.k.addr, p.k.mode, action, ok, format, args...)
}

// settle carries out the batch and writes every result so far, in order.
func (b *Blocker) settle() {
	b.flushBatch()
	for i, s := range b.slots {
		if len(s) > 0 && b.outErr == nil {
			if err := b.cfg.Out.Write(s); err != nil {
				b.outFailed(err)
			}
		}
		b.slots[i] = s[:0]
	}
	b.slots = b.slots[:0]
}

// Line implements transport.Handler: one input line, a decision of this
// host's ps-judge.
func (b *Blocker) Line(origin string, n int, data []byte, err error) {
	b.line(gate.Decision, origin, n, data, err)
}

// FromFleet is the Handler of the decisions other hosts of the fleet made
// (ps-block --fleet): they take the way of input lines, and what the gate
// refuses of them says where they came from.
func (b *Blocker) FromFleet() transport.Handler { return fleetSource{b} }

type fleetSource struct{ b *Blocker }

func (f fleetSource) Line(origin string, n int, data []byte, err error) {
	f.b.line(gate.Fleet, origin, n, data, err)
}

// Event is Line for a line its reader decoded already, with
// event.DecodeInto: ps-block --fleet decodes each line once, for the fleet
// and for the blocker (fleet.EventHandler).
func (f fleetSource) Event(origin string, n int, ev *event.Event) {
	f.b.event(gate.Fleet, origin, n, ev, nil)
}

func (f fleetSource) Idle() { f.b.Idle() }

// Event is Line for a line of this host's input decoded already with
// event.DecodeInto.
func (b *Blocker) Event(origin string, n int, ev *event.Event) {
	b.event(gate.Decision, origin, n, ev, nil)
}

func (b *Blocker) line(o gate.Origin, origin string, n int, data []byte, err error) {
	var ev event.Event
	if err == nil {
		err = event.DecodeInto(&ev, data)
	}
	b.event(o, origin, n, &ev, err)
}

// event takes a decoded line, or err when it could not be read.
func (b *Blocker) event(o gate.Origin, origin string, n int, ev *event.Event, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.cur = b.newSlot()
	defer func() {
		b.cur = -1
		if len(b.batch) >= maxBatch || len(b.slots) >= maxBatch {
			b.settle()
		}
	}()
	if err != nil {
		b.badLines++
		b.cfg.Log.AttackLimited("%s line %d: %v (line ignored)", origin, n, err)
		// A line that could not be read names no valid target or mode:
		// the result then carries neither.
		b.result(netip.Addr{}, event.ModeNone, ActionInput, false, "%s line %d: %v", origin, n, err)
		return
	}
	switch ev.Kind {
	case event.KindAlert, event.KindBlock, event.KindRun:
		if ev.Kind == event.KindAlert {
			b.cfg.Log.AttackLimited("Host %s probed %s port %d in mode %s (%d hits): alert only, no action",
				ev.Target, ev.Proto.Upper(), ev.Port, ev.Mode, ev.Hits)
		}
		b.decide(ev, o)
	case event.KindUnblock:
		b.flushBatch() // a block queued before this line comes first
		k := key{ev.Target.Unmap(), ev.Mode}
		// A block still waiting for the rate limit is one the
		// administrator has just lifted: it must not follow.
		if n := len(b.waiting.remove(func(p *pending) bool { return p.k != k })); n > 0 && !b.has(k) {
			b.result(k.addr, k.mode, ActionBlock, true, "unblocked on request: %d decision(s) waiting for the rate limit will not be carried out", n)
			return
		}
		b.lift([]key{k}, "unblocked on request")
	default:
		b.badLines++
		b.cfg.Log.AttackLimited("%s line %d: a %s line is not a decision (line ignored)", origin, n, ev.Kind)
		b.result(ev.Addr(), ev.Mode, ActionInput, false, "%s line %d: ps-block reads alert, block, run and unblock, not %s", origin, n, ev.Kind)
	}
}

// Act carries out acts that did not come as input lines: blocks the kernel
// fast path made (gate.Kernel: in place already, so not held back by the
// rate limit, and taken out of the set if the gate refuses them). They
// take the way a line takes, through the gate, and are carried out and
// reported before Act returns. Lines from the fleet take FromFleet.
func (b *Blocker) Act(o gate.Origin, evs ...event.Event) error {
	if o != gate.Kernel {
		return fmt.Errorf("blocker: Act takes the blocks the kernel made, not a decision %s", o)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.act(o, evs)
	return nil
}

// act is Act with the lock held.
func (b *Blocker) act(o gate.Origin, evs []event.Event) {
	for i := range evs {
		ev := &evs[i]
		b.cur = b.newSlot()
		if ev.Kind != event.KindBlock && ev.Kind != event.KindRun && ev.Kind != event.KindAlert {
			b.result(ev.Addr(), ev.Mode, ActionInput, false, "%s: a %s is not a decision to carry out", o, ev.Kind)
		} else {
			b.decide(ev, o)
		}
		b.cur = -1
		if len(b.batch) >= maxBatch || len(b.slots) >= maxBatch {
			b.settle()
		}
	}
	b.flushOut()
}

// Idle implements transport.Handler: input paused, so carry out the batch
// and send the results.
func (b *Blocker) Idle() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.flushOut()
}

// flushOut carries out the batch and sends every result.
func (b *Blocker) flushOut() {
	b.settle()
	if err := b.cfg.Out.Flush(); err != nil {
		b.outFailed(err)
	}
}

// outFailed reports the first output error only: after it every write fails.
func (b *Blocker) outFailed(err error) {
	if b.outErr != nil {
		return
	}
	b.outErr = err
	if b.cfg.OutFailed != nil {
		b.cfg.OutFailed(err)
	} else {
		b.cfg.Log.Admin("cannot write result lines: %v", err)
	}
}

// decide checks a block or run decision and queues it. The gate is asked
// here too, so that what it refuses never waits or takes a token; it is
// asked again when the decision is carried out.
func (b *Blocker) decide(ev *event.Event, o gate.Origin) {
	addr, mode := ev.Target.Unmap(), ev.Mode
	if _, err := b.gate.Admit(addr, ev.Port, mode, o); err != nil {
		b.refused(b.cur, addr, mode, o, err)
		return
	}
	now := b.cfg.Now()
	if !ev.Until.IsZero() && !ev.Until.After(now) {
		b.result(addr, mode, ActionBlock, false, "refused: the block ended at %s, before it arrived", ev.Until.UTC().Format(time.RFC3339))
		return
	}
	k := key{addr, mode}
	if b.has(k) || b.inBatch[k] {
		b.already(k, ev.Kind)
		return
	}
	if ev.Kind == event.KindBlock && !b.anyBlockAction() {
		b.result(addr, mode, ActionBlock, false, "no blocking action is configured (NFT_BLOCK, KILL_HOSTS_DENY, KILL_ROUTE, KILL_RUN_CMD)")
		return
	}
	p := &pending{ev: *ev, k: k, origin: o, slot: b.cur}
	if ev.Kind == event.KindAlert || o == gate.Kernel {
		// An alert changes nothing but the records, as 1.2 wrote them
		// (BLOCKED_FILE, HISTORY_FILE); a block the kernel made is in
		// place already. The rate limit is about changes ps-block makes:
		// neither waits for it.
		p.ok = ev.Kind == event.KindAlert
		b.enter(p)
		return
	}
	if dropped := b.waiting.push(p); dropped != nil {
		b.dropped++
		b.result(dropped.k.addr, dropped.k.mode, ActionBlock, false, "dropped: more decisions wait for the rate limit (BLOCK_RATE) than it keeps")
	}
	b.release(now)
	if !p.started {
		b.held++
		p.slot, p.origin = -1, gate.Released
		b.result(addr, mode, ActionBlock, false, "held back by the rate limit on new blocks (BLOCK_RATE): waiting, %d in line", b.waiting.n)
	}
}

// refused reports the gate's refusal of an act; a block the kernel fast
// path made is taken out of the set.
func (b *Blocker) refused(slot int, addr netip.Addr, mode event.Mode, o gate.Origin, err error) {
	if o == gate.Kernel {
		defer b.unmakeKernel(slot, addr, mode)
	}
	var r *gate.Refused
	if !errors.As(err, &r) {
		b.emit(slot, addr, mode, ActionBlock, false, "refused: %v", err)
		return
	}
	if r.Origin == gate.Decision {
		b.cfg.Log.AttackLimited("refusing to block %s: %s", addr, r.Why)
		b.emit(slot, addr, mode, ActionBlock, false, "refused: %v", err)
		return
	}
	b.cfg.Log.AttackLimited("refusing to block %s (%s): %s", addr, r.Origin, r.Why)
	b.emit(slot, addr, mode, ActionBlock, false, "refused (%s): %v", r.Origin, err)
}

// enter puts p into the batch.
func (b *Blocker) enter(p *pending) {
	p.started = true
	if p.slot < 0 {
		p.slot = b.newSlot()
	}
	b.inBatch[p.k] = true
	b.batch = append(b.batch, p)
}

// release moves waiting decisions into the batch while the rate limit
// allows, the best evidence first. A decision overtaken meanwhile (its host
// blocked by another line, its block already over) is settled without a token.
func (b *Blocker) release(now time.Time) {
	for {
		p := b.waiting.peek()
		if p == nil {
			return
		}
		if b.has(p.k) || b.inBatch[p.k] {
			b.waiting.pop()
			continue
		}
		if !p.ev.Until.IsZero() && !p.ev.Until.After(now) {
			b.waiting.pop()
			b.resultFor(p, ActionBlock, false, "refused: the block ended at %s while it waited for the rate limit", p.ev.Until.UTC().Format(time.RFC3339))
			continue
		}
		// Asked before a token is spent on it; asked again when carried out.
		if _, err := b.gate.Admit(p.k.addr, p.ev.Port, p.k.mode, p.origin); err != nil {
			b.waiting.pop()
			b.refused(p.slot, p.k.addr, p.k.mode, p.origin, err)
			continue
		}
		if !b.bucket.Allow(now) {
			return
		}
		b.waiting.pop()
		b.enter(p)
	}
}

// already settles a decision for a host and mode ps-block has carried out
// and still remembers: once per host and mode, across restarts, so a
// repeated line, a writer resending what it sent, or ps-judge forgetting
// the host never runs an action twice.
func (b *Blocker) already(k key, kind event.Kind) {
	switch kind {
	case event.KindBlock:
		b.cfg.Log.AttackLimited("Host: %s is already blocked in mode %s. Ignoring", k.addr, k.mode)
		b.result(k.addr, k.mode, ActionBlock, true, "already blocked in mode %s: nothing done", k.mode)
	case event.KindRun:
		b.cfg.Log.AttackLimited("Host: %s: KILL_RUN_CMD already ran in mode %s. Ignoring", k.addr, k.mode)
		b.result(k.addr, k.mode, ActionRun, true, "KILL_RUN_CMD already ran for %s in mode %s: not run again", k.addr, k.mode)
	}
}

func (b *Blocker) anyBlockAction() bool {
	return b.cfg.NFT != nil || b.cfg.HostsDeny != nil || b.cfg.Route != nil || b.cfg.RunCmd != nil
}

// Waiting reports how many decisions wait for the rate limit.
func (b *Blocker) Waiting() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.waiting.n
}

// Abandon settles every decision still waiting for the rate limit with a
// result saying why it will not be carried out, so that a stop loses none
// unsaid, and returns how many there were.
func (b *Blocker) Abandon(why string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	gone := b.waiting.remove(func(*pending) bool { return false })
	for _, p := range gone {
		b.resultFor(p, ActionBlock, false, "not carried out: %s", why)
	}
	b.flushOut()
	return len(gone)
}

// TakeHeld returns how many new blocks the rate limit held back, and how
// many waiting ones it dropped for room, since the last call, for a
// once-a-second log line.
func (b *Blocker) TakeHeld() (held, dropped uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	held, dropped, b.held, b.dropped = b.held, b.dropped, 0, 0
	return held, dropped
}

// LiftDue lifts every block whose end is not after now; the ticker of
// ps-block's main loop calls it.
func (b *Blocker) LiftDue() {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.cfg.Now()
	// Tokens came back since the last line: carry out what waits.
	if b.waiting.n > 0 {
		b.release(now)
		b.flushOut()
	}
	var (
		due  []key
		seen map[skey]bool // a block recorded twice has two items
	)
	for len(b.lifts) > 0 && b.lifts[0].at <= toSecs(now, false) {
		it := heap.Pop(&b.lifts).(stamped)
		// A stale item: the block was lifted or replaced since.
		if e, ok := b.state[it.k]; ok && e.until == it.at && !seen[it.k] {
			if seen == nil {
				seen = map[skey]bool{}
			}
			seen[it.k] = true
			due = append(due, it.k.key())
		}
	}
	if len(due) > 0 {
		// In address order: the heap leaves equal ends in no order.
		slices.SortFunc(due, func(x, y key) int {
			if c := x.addr.Compare(y.addr); c != 0 {
				return c
			}
			return cmp.Compare(x.mode, y.mode)
		})
		b.lift(due, "block ended")
		b.flushOut()
	}
}

// InForce is the number of records (blocks, runs, alerts) in force.
func (b *Blocker) InForce() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.state)
}

// BadLines is the number of input lines refused so far.
func (b *Blocker) BadLines() uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.badLines
}
