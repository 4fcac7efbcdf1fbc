package judge

import (
	"hash/maphash"
	"unsafe"
)

// index finds a host's slot in Trigger.hosts by its key. It is open
// addressing with linear probing and deletion by backward shift, keyed by
// a seeded hash (maphash), so that sources an attacker chooses cannot pile
// up in one run of the table. It does what a Go map did, for the one job a
// flood of spoofed sources asks of it per hit (find, insert, and delete the
// host forgotten for room), at a fraction of the cost. The seed changes the
// layout only, never a decision.
type index struct {
	seed  maphash.Seed
	slots []entry
	mask  uint32
	n     int
}

// entry is a host's slot + 1 (0: empty) and the low bits of its key's hash,
// which spare most key comparisons and every rehash on deletion.
type entry struct {
	slot int32
	hash uint32
}

func newIndex(capacity int) index {
	size := 16
	for size < 2*capacity {
		size *= 2
	}
	return index{seed: maphash.MakeSeed(), slots: make([]entry, size), mask: uint32(size - 1)}
}

func (x *index) hash(k *key) uint32 {
	return uint32(maphash.Bytes(x.seed, unsafe.Slice((*byte)(unsafe.Pointer(k)), unsafe.Sizeof(*k))))
}

// find returns k's slot in hosts and its position in the index, or -1
// and the empty position where it would go.
func (x *index) find(k *key, h uint32, hosts []host) (slot int32, pos uint32) {
	for pos = h & x.mask; ; pos = (pos + 1) & x.mask {
		e := x.slots[pos]
		if e.slot == 0 {
			return -1, pos
		}
		if e.hash == h && hosts[e.slot-1].key == *k {
			return e.slot - 1, pos
		}
	}
}

// touch brings the first entry a lookup of hash h reads into the cache,
// ahead of its use.
func (x *index) touch(h uint32) { prefetch(&x.slots[h&x.mask]) }

// get returns k's slot, or -1.
func (x *index) get(k key, hosts []host) int32 {
	slot, _ := x.find(&k, x.hash(&k), hosts)
	return slot
}

// put records that k, not yet present and of hash h, is in slot.
func (x *index) put(k key, h uint32, slot int32, hosts []host) {
	if 2*(x.n+1) > len(x.slots) {
		x.grow()
	}
	_, pos := x.find(&k, h, hosts)
	x.slots[pos] = entry{slot + 1, h}
	x.n++
}

// del forgets the entry of slot, whose key hashes to h. It is found by its
// slot number: no key is read or hashed, so forgetting a host touches the
// index only.
func (x *index) del(slot int32, h uint32) {
	pos := h & x.mask
	for ; x.slots[pos].slot != slot+1; pos = (pos + 1) & x.mask {
		if x.slots[pos].slot == 0 {
			return
		}
	}
	x.slots[pos] = entry{}
	x.n--
	// Move back each following entry of the run that may no longer be
	// reached past the hole: one whose home is not in (pos, j].
	for j := (pos + 1) & x.mask; x.slots[j].slot != 0; j = (j + 1) & x.mask {
		home := x.slots[j].hash & x.mask
		if (j-home)&x.mask >= (j-pos)&x.mask {
			x.slots[pos], x.slots[j] = x.slots[j], entry{}
			pos = j
		}
	}
}

func (x *index) grow() {
	old := x.slots
	x.slots = make([]entry, 2*len(old))
	x.mask = uint32(len(x.slots) - 1)
	for _, e := range old {
		if e.slot != 0 {
			pos := e.hash & x.mask
			for x.slots[pos].slot != 0 {
				pos = (pos + 1) & x.mask
			}
			x.slots[pos] = e
		}
	}
}
