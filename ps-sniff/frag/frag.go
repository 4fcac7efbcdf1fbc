// Package frag reassembles IPv4 and IPv6 fragments the way the Linux kernel
// does (net/ipv4/ip_fragment.c, net/ipv6/reassembly.c, inet_fragment.c), so
// that a probe split into tiny fragments is seen exactly when the host itself
// would have seen it, and not otherwise.
//
// Only the first Limits.MaxHeader bytes of each datagram's payload are kept:
// ps-sniff needs the transport header, not the data, and this keeps memory
// fixed. All memory is allocated once, on the first fragment; time comes only
// from packet timestamps, never from the wall clock, so a capture file replays
// the same way every time.
package frag

import (
	"net/netip"
	"time"
)

// Limits bound the reassembler in memory and time. Memory is allocated once:
// MaxDatagrams × (MaxHeader bytes + MaxFragments spans of 8 bytes).
type Limits struct {
	MaxDatagrams int           // datagrams in reassembly at once; more fragments are dropped
	MaxFragments int           // fragments accepted per datagram; one more drops the datagram
	MaxHeader    int           // payload bytes kept per datagram (transport header and then some)
	Timeout4     time.Duration // IPv4 queue lifetime from its first fragment (net.ipv4.ipfrag_time)
	Timeout6     time.Duration // IPv6 queue lifetime (net.ipv6.ip6frag_time)
}

// DefaultLimits match the kernel's timeouts; the sizes allow a 1500-byte
// datagram cut into 8-byte fragments (nmap -f, fragroute) to reassemble.
var DefaultLimits = Limits{
	MaxDatagrams: 256,
	MaxFragments: 192,
	MaxHeader:    512,
	Timeout4:     30 * time.Second,
	Timeout6:     60 * time.Second,
}

// maxLen is the largest IP datagram (IPv4 total length, IPv6 payload length).
const maxLen = 65535

// Key identifies a datagram being reassembled. For IPv4 it is the kernel's
// (src, dst, id, protocol); IPv6 has no protocol in the key, so Proto is 0.
type Key struct {
	Src, Dst netip.Addr
	ID       uint32
	Proto    uint8
	V6       bool
}

// Fragment is one fragment as the decoder found it.
type Fragment struct {
	Key
	Offset int  // byte offset of this fragment's data in the datagram payload
	More   bool // the MF flag
	Len    int  // payload bytes the fragment carries per its IP header
	// Data holds the bytes captured; it may be shorter than Len when the
	// capture was cut (snap length), never longer.
	Data []byte
	// Next is the protocol of the payload: the IPv4 protocol, or the next
	// header field of the IPv6 fragment header.
	Next uint8
	// HeaderLen is the length of the part that is not fragmented: the IPv4
	// header, or the IPv6 extension headers before the fragment header.
	HeaderLen int
}

// Verdict is what happened to a fragment.
type Verdict uint8

// Verdicts. Pending and Complete are normal; the others drop the fragment
// and, where the kernel does so, the whole datagram.
const (
	Pending    Verdict = iota // kept; the datagram is not complete yet
	Complete                  // the datagram is complete, see Datagram
	Duplicate                 // data already received: fragment dropped, datagram kept
	Overlap                   // overlaps other data (RFC 5722): datagram dropped
	Corrupt                   // end disagrees with the last fragment: datagram dropped
	Empty                     // no data: datagram dropped
	Oversize                  // datagram would exceed 65535 bytes: dropped
	Misaligned                // IPv6 non-last fragment not a multiple of 8: fragment dropped
	TableFull                 // MaxDatagrams in progress: fragment dropped
	TooMany                   // more than MaxFragments: datagram dropped
	numVerdicts
)

var verdictNames = [...]string{"pending", "complete", "duplicate", "overlap", "corrupt",
	"empty", "oversize", "misaligned", "table-full", "too-many-fragments"}

func (v Verdict) String() string {
	if v < numVerdicts {
		return verdictNames[v]
	}
	return "unknown"
}

// Datagram is a reassembled datagram's payload start.
type Datagram struct {
	Key
	Next      uint8  // protocol of Payload
	Len       int    // full payload length
	Payload   []byte // first min(Len, MaxHeader) bytes, fewer if the capture was cut
	Fragments int
}

type span struct{ start, end int32 }

type slot struct {
	key      Key
	deadline int64 // UnixNano
	total    int   // payload length, once known or as far as seen
	meat     int   // bytes received
	first    bool  // offset 0 received
	last     bool  // MF=0 received
	frags    int
	hdrLen   int
	next     uint8
	cut      int    // captured bytes are reliable below this offset
	runs     []span // disjoint, sorted; like the kernel's fragment runs
	prefix   []byte
	inUse    bool
}

// Reassembler holds datagrams in reassembly. It is not safe for concurrent use.
type Reassembler struct {
	lim   Limits
	slots []slot
	free  []int32
	index map[Key]int32
	// nextSweep is when (UnixNano, packet time) Add next sweeps for expired queues.
	nextSweep int64
	// Expired counts datagrams dropped because their time ran out.
	Expired uint64
}

// New returns a reassembler bounded by lim; zero fields take DefaultLimits.
func New(lim Limits) *Reassembler {
	d := DefaultLimits
	if lim.MaxDatagrams <= 0 {
		lim.MaxDatagrams = d.MaxDatagrams
	}
	if lim.MaxFragments <= 0 {
		lim.MaxFragments = d.MaxFragments
	}
	if lim.MaxHeader <= 0 {
		lim.MaxHeader = d.MaxHeader
	}
	if lim.Timeout4 <= 0 {
		lim.Timeout4 = d.Timeout4
	}
	if lim.Timeout6 <= 0 {
		lim.Timeout6 = d.Timeout6
	}
	return &Reassembler{lim: lim}
}

// InProgress returns the number of datagrams being reassembled.
func (r *Reassembler) InProgress() int { return len(r.index) }

// alloc sets up all memory at once, on the first fragment: most hosts never
// see one, and afterwards nothing is allocated per fragment.
func (r *Reassembler) alloc() {
	n := r.lim.MaxDatagrams
	r.slots = make([]slot, n)
	r.free = make([]int32, n)
	r.index = make(map[Key]int32, n)
	spans := make([]span, n*r.lim.MaxFragments)
	prefix := make([]byte, n*r.lim.MaxHeader)
	for i := range r.slots {
		s := &r.slots[i]
		s.runs = spans[i*r.lim.MaxFragments : i*r.lim.MaxFragments : (i+1)*r.lim.MaxFragments]
		s.prefix = prefix[i*r.lim.MaxHeader : (i+1)*r.lim.MaxHeader]
		r.free[i] = int32(n - 1 - i)
	}
}

func (r *Reassembler) release(i int32) {
	s := &r.slots[i]
	delete(r.index, s.key)
	s.inUse = false
	s.runs = s.runs[:0]
	r.free = append(r.free, i)
}

// Sweep drops the datagrams whose time ran out before now.
func (r *Reassembler) Sweep(now time.Time) {
	t := now.UnixNano()
	for i := range r.slots {
		if r.slots[i].inUse && t >= r.slots[i].deadline {
			r.Expired++
			r.release(int32(i))
		}
	}
	r.nextSweep = t + int64(time.Second)
}

func (r *Reassembler) lookup(k Key, now int64) (int32, Verdict) {
	if i, ok := r.index[k]; ok {
		if now < r.slots[i].deadline {
			return i, Pending
		}
		// The kernel's timer would have fired already: start afresh.
		r.Expired++
		r.release(i)
	}
	if len(r.free) == 0 {
		r.Sweep(time.Unix(0, now))
		if len(r.free) == 0 {
			return -1, TableFull
		}
	}
	i := r.free[len(r.free)-1]
	r.free = r.free[:len(r.free)-1]
	timeout := r.lim.Timeout4
	if k.V6 {
		timeout = r.lim.Timeout6
	}
	s := &r.slots[i]
	*s = slot{key: k, deadline: now + int64(timeout), cut: r.lim.MaxHeader,
		runs: s.runs[:0], prefix: s.prefix, inUse: true}
	r.index[k] = i
	return i, Pending
}

// Add queues one fragment received at now. On Complete the returned Datagram
// is valid until the next call to Add or Sweep.
func (r *Reassembler) Add(f *Fragment, now time.Time) (Datagram, Verdict) {
	if r.slots == nil {
		r.alloc()
	}
	t := now.UnixNano()
	if t >= r.nextSweep {
		r.Sweep(now)
	}
	offset, end := f.Offset, f.Offset+f.Len
	if f.V6 {
		// reassembly.c: the data end must fit, and non-last fragments be
		// multiples of 8, else the fragment alone is dropped.
		if end > maxLen {
			return Datagram{}, Oversize
		}
		if f.More && end&7 != 0 {
			return Datagram{}, Misaligned
		}
	} else if f.More {
		// ip_fragment.c trims a non-last fragment to a multiple of 8.
		end &^= 7
	}
	i, v := r.lookup(f.Key, t)
	if v != Pending {
		return Datagram{}, v
	}
	s := &r.slots[i]
	if v := s.place(f, offset, end); v != Pending {
		if v != Duplicate {
			r.release(i)
		}
		return Datagram{}, v
	}
	s.frags++
	if s.frags > r.lim.MaxFragments {
		r.release(i)
		return Datagram{}, TooMany
	}
	if offset == 0 {
		s.first = true
		s.next = f.Next
		s.hdrLen = f.HeaderLen
	}
	s.keep(f.Data, offset, end)
	if !s.first || !s.last || s.meat != s.total {
		return Datagram{}, Pending
	}
	r.release(i)
	if s.hdrLen+s.total > maxLen {
		return Datagram{}, Oversize
	}
	n := min(s.total, len(s.prefix), s.cut)
	return Datagram{Key: s.key, Next: s.next, Len: s.total, Payload: s.prefix[:n], Fragments: s.frags}, Complete
}

// place applies the kernel's checks on the datagram's end and then inserts
// [offset, end) into the runs as inet_frag_queue_insert does: a fragment
// inside a run is a duplicate, any other overlap kills the datagram.
func (s *slot) place(f *Fragment, offset, end int) Verdict {
	if !f.More {
		if end < s.total || (s.last && end != s.total) {
			return Corrupt
		}
		s.last = true
		s.total = end
	} else if end > s.total {
		if s.last {
			return Corrupt
		}
		s.total = end
	}
	if end <= offset {
		return Empty
	}
	o, e := int32(offset), int32(end)
	n := len(s.runs)
	switch {
	case n == 0:
		s.runs = append(s.runs, span{o, e})
	case e > s.runs[n-1].end:
		tail := &s.runs[n-1]
		switch {
		case o < tail.end:
			return Overlap
		case o == tail.end:
			tail.end = e
		case n == cap(s.runs):
			return TooMany
		default:
			s.runs = append(s.runs, span{o, e})
		}
	default:
		j := 0
		for j < n && s.runs[j].end <= o {
			j++
		}
		if s.runs[j].start < e {
			if o >= s.runs[j].start && e <= s.runs[j].end {
				return Duplicate
			}
			return Overlap
		}
		if n == cap(s.runs) {
			return TooMany
		}
		s.runs = append(s.runs, span{})
		copy(s.runs[j+1:], s.runs[j:n])
		s.runs[j] = span{o, e}
	}
	s.meat += end - offset
	return Pending
}

// keep copies the part of the fragment that falls in the kept prefix and
// notes where captured data stops short of the wire data.
func (s *slot) keep(data []byte, offset, end int) {
	if len(data) > end-offset {
		data = data[:end-offset]
	}
	if offset < len(s.prefix) {
		copy(s.prefix[offset:], data)
	}
	if got := offset + len(data); got < end && got < s.cut {
		s.cut = got
	}
}
