package blocker

import "math/bits"

// waitingPerClass bounds each class of the waiting queue; all of it holds
// at most 33 times this many decisions, whatever a flood sends.
const waitingPerClass = 512

// waiting holds the decisions the rate limit could not carry out at once,
// by the evidence against the host: its class is the bit length of the
// decision's hit count, and higher classes go first. Under a flood of
// spoofed one-probe sources, a real scanner whose count ps-judge reports
// again as it grows (2, 4, 8 ... ports) overtakes them all. Within a class
// the oldest goes first; a full class drops its oldest, since a newer
// decision on the same evidence is worth as much.
type waiting struct {
	classes [33]ring
	n       int
}

type ring struct {
	items       []*pending
	head, count int
}

func class(hits int) int {
	if hits < 0 {
		hits = 0
	}
	return bits.Len32(uint32(hits))
}

// push queues p and returns the decision it pushed out, if any.
func (w *waiting) push(p *pending) (dropped *pending) {
	r := &w.classes[class(p.ev.Hits)]
	if r.items == nil {
		r.items = make([]*pending, waitingPerClass)
	}
	if r.count == len(r.items) {
		dropped = r.items[r.head]
		r.head = (r.head + 1) % len(r.items)
		r.count--
		w.n--
	}
	r.items[(r.head+r.count)%len(r.items)] = p
	r.count++
	w.n++
	return dropped
}

// peek returns the oldest decision of the highest class, or nil.
func (w *waiting) peek() *pending {
	if r := w.top(); r != nil {
		return r.items[r.head]
	}
	return nil
}

// pop removes what peek returns.
func (w *waiting) pop() {
	if r := w.top(); r != nil {
		r.items[r.head] = nil
		r.head = (r.head + 1) % len(r.items)
		r.count--
		w.n--
	}
}

func (w *waiting) top() *ring {
	for c := len(w.classes) - 1; c >= 0; c-- {
		if w.classes[c].count > 0 {
			return &w.classes[c]
		}
	}
	return nil
}

// remove takes every decision that keep refuses out of the queue, keeping
// the order of the rest, and returns them. An administrator's unblock and
// ps-block's stop use it: neither happens at the rate of the traffic.
func (w *waiting) remove(keep func(*pending) bool) []*pending {
	var out []*pending
	for c := range w.classes {
		r := &w.classes[c]
		kept := 0
		for i := 0; i < r.count; i++ {
			p := r.items[(r.head+i)%len(r.items)]
			if keep(p) {
				r.items[(r.head+kept)%len(r.items)] = p
				kept++
			} else {
				out = append(out, p)
			}
		}
		for i := kept; i < r.count; i++ {
			r.items[(r.head+i)%len(r.items)] = nil
		}
		w.n -= r.count - kept
		r.count = kept
	}
	return out
}
