package judge

import (
	"math/rand/v2"
	"testing"
)

// TestIndexAgainstMap: random insertions and deletions, with growth and
// many colliding runs (a small table), agree with a Go map at every step.
func TestIndexAgainstMap(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	hosts := make([]host, 5000)
	x := newIndex(4) // grows several times
	want := map[key]int32{}
	var free []int32
	for i := range hosts {
		free = append(free, int32(i))
	}
	keyOfN := func(n int) key {
		var k key
		k.addr[15], k.addr[14], k.mode = byte(n), byte(n>>8), 1
		return k
	}
	for step := 0; step < 200000; step++ {
		k := keyOfN(rng.IntN(3000))
		slot, present := want[k]
		if got := x.get(k, hosts); got != map[bool]int32{true: slot, false: -1}[present] {
			t.Fatalf("step %d: get(%v) = %d, want %d (present %v)", step, k, got, slot, present)
		}
		switch {
		case present && rng.IntN(2) == 0:
			x.del(slot, x.hash(&k))
			delete(want, k)
			free = append(free, slot)
		case !present:
			s := free[len(free)-1]
			free = free[:len(free)-1]
			hosts[s].key = k
			x.put(k, x.hash(&k), s, hosts)
			want[k] = s
		}
		if x.n != len(want) {
			t.Fatalf("step %d: %d entries, want %d", step, x.n, len(want))
		}
	}
	for k, s := range want {
		if got := x.get(k, hosts); got != s {
			t.Fatalf("get(%v) = %d, want %d", k, got, s)
		}
	}
}
