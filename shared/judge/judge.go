// Package judge is the pure core of ps-judge: hits in, decisions out. It
// reads no clock and makes no system call; time is the time of the events
// themselves, so replaying a captured log gives the same decisions every
// time. Model is the seam for judging models; Trigger is PortSentry 1.2's
// SCAN_TRIGGER.
//
// Hits need not come in time order: several sensors write to one judge,
// and a merged or captured log may be out of order. Trigger's rule for
// this: a host's count covers a window of event time, from the earliest to
// the latest hit counted; a hit more than IdleTimeout before that window or
// after it starts the count afresh (the gap is a distance, never
// negative), any other hit counts wherever it falls. So two hits further
// apart than IdleTimeout never count together, in either order, and hits
// closer together always do. A decision holds for every later hit before
// its until, whatever that hit's time. Times are bounded by the event
// lines (1970 to 2200), so no arithmetic here overflows.
package judge

import (
	"math/bits"
	"net/netip"
	"time"

	"github.com/portsentry/pipeline/shared/event"
)

// Model judges hits. Observe is given hits from hosts the guard allows and
// fills in a Verdict; it must not keep h.
type Model interface {
	Observe(h *event.Event, v *Verdict)
	// Forget drops what is known of a host in a mode (after an unblock).
	Forget(a netip.Addr, m event.Mode)
	// Expire gives back the memory of hosts idle at now.
	Expire(now time.Time)
	// Stats reports the hosts remembered and those forgotten for room.
	Stats() (hosts int, evicted uint64)
}

// Prefetcher is a Model that can ready itself for a hit ahead of it; see
// Trigger.Prefetch.
type Prefetcher interface {
	Prefetch(h *event.Event)
}

// Outcome is what one hit did to its host's state.
type Outcome uint8

const (
	// Counted: a new port for this host, below the trigger.
	Counted Outcome = iota + 1
	// Repeat: a port this host already touched (a retransmission); not counted.
	Repeat
	// Tripped: this hit made a decision; Verdict.Decision holds it.
	Tripped
	// Decided: the host is already decided in this mode and the decision
	// still lasts; nothing new is said.
	Decided
	// Escalated: a decided host went on to double its count of ports; the
	// decision is said again with the new count (Verdict.Decision), so a
	// blocker whose rate limit held it back can tell a real scanner from a
	// flood of spoofed one-probe sources and serve it first.
	Escalated
)

// maxEscalations bounds how often one decision is said again.
const maxEscalations = 6

// Verdict is the result of one hit.
type Verdict struct {
	Outcome  Outcome
	Hits     int         // distinct ports counted for the host so far
	Decision event.Event // valid when Outcome is Tripped
}

// Settings are the keys of the configuration that shape decisions.
type Settings struct {
	ScanTrigger   int           // grace hits on distinct ports before reacting
	BlockTCP      int           // 0 alert, 1 block, 2 run
	BlockUDP      int           // 0 alert, 1 block, 2 run
	BlockDuration time.Duration // 0: never ends
	IdleTimeout   time.Duration // a host's count is forgotten after this long idle
	MaxHosts      int           // hosts remembered at most
}

// key is a host in a mode. The address is kept as its 16 bytes (IPv4 as
// IPv4-mapped): hashing and comparing 17 bytes is cheaper than netip.Addr,
// whose zone pointer the table never needs, and the table is looked up for
// every hit.
type key struct {
	addr [16]byte
	mode event.Mode
}

func keyOf(a netip.Addr, m event.Mode) key { return key{a.As16(), m} }

// host is one remembered (address, mode). Hosts live in one slice, so
// memory is one allocation for MaxHosts.
type host struct {
	key  key
	hash uint32 // the index's hash of key, for forgetting the host
	// The window of the hits counted, unix nanoseconds; last also moves
	// on with the hits of a decided host, for Expire.
	first, last int64
	decided     bool
	until       int64    // unix nanoseconds; 0: the decision never ends
	ports       []uint16 // distinct ports counted, at most ScanTrigger+1
	// After the decision: the ports touched since, as a 64-bit set of port
	// hashes (an estimate, which is all escalation needs), and the count
	// that escalates next.
	after       uint64
	escalations uint8
	used        bool
	seen        bool  // seen again since the hand last passed (see victim)
	next        int32 // the next free slot, in a free slot; -1 ends the list
}

// Trigger is PortSentry 1.2's SCAN_TRIGGER model.
type Trigger struct {
	s       Settings
	index   index
	hosts   []host
	hand    int32 // the next slot victim looks at
	sweep   int32 // the next slot Expire looks at
	free    int32 // first unused slot, -1 when all are used
	evicted uint64
	ahead   struct { // the key Prefetch was given last, and its hash
		key  key
		hash uint32
		set  bool
	}
}

// preallocHosts is how many hosts' room is made at once: the default
// STATE_MAX_HOSTS fits, so a flood never makes the table grow (and leave
// the old, half-size copies behind for the collector) while it streams in.
const preallocHosts = 1 << 17

// NewTrigger returns a Trigger with room for s.MaxHosts hosts.
func NewTrigger(s Settings) *Trigger {
	if s.MaxHosts < 1 {
		s.MaxHosts = 1
	}
	t := &Trigger{s: s, index: newIndex(min(s.MaxHosts, preallocHosts))}
	t.hosts = make([]host, 0, min(s.MaxHosts, preallocHosts))
	t.free = -1
	return t
}

// Stats implements Model.
func (t *Trigger) Stats() (hosts int, evicted uint64) { return t.index.n, t.evicted }

// Observe implements Model.
func (t *Trigger) Observe(h *event.Event, v *Verdict) {
	now := h.Time.UnixNano()
	k := keyOf(h.Src, h.Mode)
	hk := t.ahead.hash
	if !t.ahead.set || t.ahead.key != k {
		hk = t.index.hash(&k)
		t.touchVictim(0)
	}
	t.ahead.set = false
	i, _ := t.index.find(&k, hk, t.hosts)
	if i < 0 {
		i = t.insert(k, hk)
	} else {
		t.hosts[i].seen = true
	}
	e := &t.hosts[i]
	// Forget what has lapsed: an ended decision, or a count whose window
	// is more than the idle timeout away from this hit, on either side.
	if e.decided && e.until != 0 && now >= e.until {
		e.decided, e.ports = false, e.ports[:0]
	}
	if e.decided {
		e.last = max(e.last, now)
		t.afterDecision(e, h, v)
		return
	}
	if idle := int64(t.s.IdleTimeout); len(e.ports) == 0 || e.first-now > idle || now-e.last > idle {
		e.ports, e.first, e.last = e.ports[:0], now, now
	} else {
		e.first, e.last = min(e.first, now), max(e.last, now)
	}
	for _, p := range e.ports {
		if p == h.Dport {
			*v = Verdict{Outcome: Repeat, Hits: len(e.ports)}
			return
		}
	}
	e.ports = append(e.ports, h.Dport)
	if len(e.ports) <= t.s.ScanTrigger {
		*v = Verdict{Outcome: Counted, Hits: len(e.ports)}
		return
	}
	e.decided = true
	e.after, e.escalations = 0, 0
	e.until = 0
	if t.s.BlockDuration > 0 {
		// Event times end before 2200: a longer block ends then.
		end := h.Time.Add(t.s.BlockDuration)
		if !end.Before(event.MaxTime) {
			end = event.MaxTime.Add(-time.Second)
		}
		e.until = end.UnixNano()
	}
	v.Outcome, v.Hits = Tripped, len(e.ports)
	t.decide(&v.Decision, h, len(e.ports), e.until)
}

// Prefetch readies the table for h, the hit after the one Observe is given
// next: it brings into the cache the index entries that h's lookup and,
// with the table full, the forgetting of a host for it will read, so that
// these cache misses (likely, in a flood of new sources) overlap the work
// on the hit before. It changes nothing Observe decides.
func (t *Trigger) Prefetch(h *event.Event) {
	k := keyOf(h.Src, h.Mode)
	t.ahead.key, t.ahead.hash, t.ahead.set = k, t.index.hash(&k), true
	t.index.touch(t.ahead.hash)
	t.touchVictim(1)
}

// touchVictim brings into the cache the index entry of the host the hand
// will most likely forget for the nth new host from now (0 or 1), when the
// table is full.
func (t *Trigger) touchVictim(n int32) {
	if t.free >= 0 || len(t.hosts) < t.s.MaxHosts {
		return
	}
	i := t.hand + n
	if int(i) >= len(t.hosts) {
		i = 0
	}
	t.index.touch(t.hosts[i].hash)
}

// decide fills d with what is said about h's host, with until in unix
// nanoseconds (0: never ends). It fills the Verdict's own Event: an Event
// is large, and a flood makes a decision per hit.
func (t *Trigger) decide(d *event.Event, h *event.Event, hits int, until int64) {
	*d = event.Event{
		Kind:   t.kind(h.Mode.Proto()),
		Time:   h.Time,
		Target: h.Src,
		Mode:   h.Mode,
		Proto:  h.Mode.Proto(),
		Port:   h.Dport,
		Scan:   h.Scan,
		Hits:   hits,
	}
	if until != 0 {
		d.Until = time.Unix(0, until).UTC()
	}
}

// afterDecision counts a decided host's further ports and escalates when
// the count doubles.
func (t *Trigger) afterDecision(e *host, h *event.Event, v *Verdict) {
	for _, p := range e.ports {
		if p == h.Dport {
			*v = Verdict{Outcome: Decided, Hits: len(e.ports)}
			return
		}
	}
	e.after |= 1 << (uint64(h.Dport) * 0x9e3779b97f4a7c15 >> 58)
	hits := len(e.ports) + bits.OnesCount64(e.after)
	next := len(e.ports) << (e.escalations + 1)
	// Only blocks escalate: they are what a rate limit holds back, while an
	// alert needs no repeat and a run must run its command once, as in 1.2.
	if e.escalations >= maxEscalations || hits < next || t.kind(h.Mode.Proto()) != event.KindBlock {
		*v = Verdict{Outcome: Decided, Hits: hits}
		return
	}
	e.escalations++
	v.Outcome, v.Hits = Escalated, hits
	t.decide(&v.Decision, h, hits, e.until)
}

func (t *Trigger) kind(p event.Proto) event.Kind {
	level := t.s.BlockTCP
	if p == event.ProtoUDP {
		level = t.s.BlockUDP
	}
	switch level {
	case 0:
		return event.KindAlert
	case 2:
		return event.KindRun
	}
	return event.KindBlock
}

// Forget implements Model.
func (t *Trigger) Forget(a netip.Addr, m event.Mode) {
	k := keyOf(a, m)
	if i := t.index.get(k, t.hosts); i >= 0 {
		t.remove(i)
	}
}

// insert makes room for k, of hash hk, reusing a free slot, growing the
// slice, or forgetting a host when the table is full (victim).
func (t *Trigger) insert(k key, hk uint32) int32 {
	var i int32
	switch {
	case t.free >= 0:
		i = t.free
		t.free = t.hosts[i].next
	case len(t.hosts) < t.s.MaxHosts:
		t.hosts = append(t.hosts, host{})
		i = int32(len(t.hosts) - 1)
	default:
		i = t.victim()
		t.evicted++
		t.index.del(i, t.hosts[i].hash)
	}
	ports := t.hosts[i].ports[:0]
	t.hosts[i] = host{key: k, hash: hk, ports: ports, used: true}
	t.index.put(k, hk, i, t.hosts)
	return i
}

// victim chooses the host a full table forgets: the hand goes round the
// slots, sparing once each host seen again since it last passed (the CLOCK
// algorithm). So a host is kept while it is seen at least once per turn,
// and a host seen once is forgotten a turn after it came, as the least
// recently seen host would be; but the hand reads the slots in order, where
// a list of the least recently seen would be followed all over memory, a
// cache miss or two per hit in a flood of new sources. A turn spares each
// host at most once, so the hand finds a victim within one turn.
func (t *Trigger) victim() int32 {
	for {
		i := t.hand
		if t.hand++; int(t.hand) >= len(t.hosts) {
			t.hand = 0
		}
		e := &t.hosts[i]
		if !e.seen {
			return i
		}
		e.seen = false
	}
}

func (t *Trigger) remove(i int32) {
	t.index.del(i, t.hosts[i].hash)
	t.hosts[i] = host{ports: t.hosts[i].ports[:0], next: t.free}
	t.free = i
}

// Expire implements Model: it forgets the hosts idle longer than the idle
// timeout whose decisions, if any, have ended, among the next expireSweep
// slots (all of them in a smaller table), going round the table call after
// call. It only gives slots back; Observe already treats lapsed state as
// gone.
func (t *Trigger) Expire(now time.Time) {
	n := now.UnixNano()
	for range min(expireSweep, len(t.hosts)) {
		i := t.sweep
		if t.sweep++; int(t.sweep) >= len(t.hosts) {
			t.sweep = 0
		}
		e := &t.hosts[i]
		if e.used && n-e.last > int64(t.s.IdleTimeout) && (!e.decided || e.until != 0 && n >= e.until) {
			t.remove(i)
		}
	}
}

// expireSweep is how many slots one Expire looks at. ps-judge calls it
// every 4096 hits: a quarter of a slot a hit (a slot a hit was 1.9 % of a
// spoofed flood's CPU), and a table of 100,000 is swept every 400,000 hits.
const expireSweep = 1024
