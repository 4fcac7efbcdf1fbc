package blocker

import (
	"container/heap"
	"math"
	"net/netip"
	"time"

	"github.com/portsentry/pipeline/shared/event"
)

// The state is ps-block's memory of what it carried out, one entry per
// host and mode, bounded by Config.BlockMax. It is sized for a million
// entries under the shipped unit's MemoryMax=256M: entries are held by
// value under a key without pointers (nothing for the garbage collector to
// scan), times are whole seconds in 32 bits, about 40 bytes an entry in the
// map plus 24 in each of two heaps.

// skey is a key as the state holds it: the address as 16 bytes (IPv4
// mapped), no pointer.
type skey struct {
	a [16]byte
	m event.Mode
}

func (k key) s() skey { return skey{k.addr.As16(), k.mode} }

func (s skey) key() key { return key{netip.AddrFrom16(s.a).Unmap(), s.m} }

// entry is one decision carried out and remembered, once per host and
// mode as 1.2's blocked file ensured: a block, a run (KILL_RUN_CMD alone,
// BLOCK_x=2) or an alert (BLOCK_x=0, recorded only). Only a block has
// anything in place to undo when it ends.
type entry struct {
	until  secs       // 0: never ends
	start  secs       // when carried out: its age, for BLOCK_MAX
	port   uint16     // for $PORT$ in KILL_UNROUTE
	kind   event.Kind // KindBlock, KindRun or KindAlert
	routed bool       // KILL_ROUTE succeeded, so KILL_UNROUTE undoes it
	// inKernel: the host's element was seen in (or put back into) the
	// kernel's set at start.
	inKernel bool
	hits     uint16 // the decision's hits (ports probed), saturated
	host     uint16 // the fleet host that decided it: an index in Blocker.hosts, 0 none
}

// hostNamesMax bounds the fleet host names the state remembers; past it
// a record keeps no host name (a fleet is a few hosts, a flood of names
// is not a fleet).
const hostNamesMax = 4096

// hostID is name's index in b.hosts, added if new and room is left; 0
// for none.
func (b *Blocker) hostID(name string) uint16 {
	if name == "" {
		return 0
	}
	if id, ok := b.hostIDs[name]; ok {
		return id
	}
	if len(b.hosts) >= hostNamesMax {
		return 0
	}
	if len(b.hosts) == 0 {
		b.hosts = []string{""}
	}
	id := uint16(len(b.hosts))
	b.hosts = append(b.hosts, name)
	b.hostIDs[name] = id
	return id
}

// hostName is the name of id, "" for none.
func (b *Blocker) hostName(id uint16) string {
	if int(id) >= len(b.hosts) {
		return ""
	}
	return b.hosts[id]
}

// hitsOf is n hits as the state keeps them.
func hitsOf(n int) uint16 { return uint16(min(max(n, 0), math.MaxUint16)) }

// modeSlots sizes arrays indexed by event.Mode.
const modeSlots = 8

// secs is a time in whole seconds since 2000-01-01 UTC, up to 2136: 0
// stands for none.
type secs uint32

const epoch2000 = 946684800

// toSecs is t in secs, rounded down, or up (an end: a block is never
// lifted early); times outside 2000-2136 are clamped into it.
func toSecs(t time.Time, up bool) secs {
	if t.IsZero() {
		return 0
	}
	s := t.Unix() - epoch2000
	if up && t.Nanosecond() > 0 {
		s++
	}
	return secs(min(max(s, 1), math.MaxUint32))
}

func (s secs) time() time.Time {
	if s == 0 {
		return time.Time{}
	}
	return time.Unix(int64(s)+epoch2000, 0).UTC()
}

// end is when the entry ends (zero: never).
func (e entry) end() time.Time { return e.until.time() }

func (b *Blocker) get(k key) (entry, bool) {
	e, ok := b.state[k.s()]
	return e, ok
}

func (b *Blocker) has(k key) bool {
	_, ok := b.state[k.s()]
	return ok
}

// record keeps an entry and schedules its end and its eviction; the
// caller makes room first (makeRoom).
func (b *Blocker) record(k key, e entry) {
	s := k.s()
	b.state[s] = e
	if e.until != 0 {
		heap.Push(&b.lifts, stamped{at: e.until, k: s})
	}
	heap.Push(&b.ages, stamped{at: e.start, k: s})
}

// forget drops an entry; its heap items go stale and are skipped.
func (b *Blocker) forget(k key) { delete(b.state, k.s()) }

// oldest pops the oldest entry in force, or reports there is none.
func (b *Blocker) oldest() (key, bool) {
	for len(b.ages) > 0 {
		it := heap.Pop(&b.ages).(stamped)
		if e, ok := b.state[it.k]; ok && e.start == it.at {
			return it.k.key(), true
		}
	}
	return key{}, false
}

// stamped is a heap item: a time and the entry it is about. An item whose
// entry is gone or has another time is stale, and skipped when popped.
type stamped struct {
	at secs
	k  skey
}

// stampHeap orders items by time, the earliest first.
type stampHeap []stamped

func (h stampHeap) Len() int           { return len(h) }
func (h stampHeap) Less(i, j int) bool { return h[i].at < h[j].at }
func (h stampHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *stampHeap) Push(x any)        { *h = append(*h, x.(stamped)) }
func (h *stampHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	*h = old[:len(old)-1]
	return it
}

// compactHeaps drops stale items when they outnumber the live ones, so a
// heap never holds much more than the entries in force.
func (b *Blocker) compactHeaps() {
	for _, c := range []struct {
		h  *stampHeap
		at func(entry) secs
	}{{&b.lifts, func(e entry) secs { return e.until }}, {&b.ages, func(e entry) secs { return e.start }}} {
		h := c.h
		if len(*h) <= 2*len(b.state)+1024 {
			continue
		}
		live := (*h)[:0]
		for _, it := range *h {
			if e, ok := b.state[it.k]; ok && it.at == c.at(e) {
				live = append(live, it)
			}
		}
		clear((*h)[len(live):])
		*h = live
		heap.Init(h)
	}
}
