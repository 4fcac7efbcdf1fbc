package slice

import (
	"errors"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"
)

// threads returns the slices of every thread of this process.
func threads(t *testing.T) map[int]time.Duration {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	m := map[int]time.Duration{}
	for _, e := range ents {
		tid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if d, err := Of(tid); err == nil {
			m[tid] = d
		}
	}
	return m
}

// TestSet: every thread gets the slice, and so does a thread made after.
func TestSet(t *testing.T) {
	if err := Set(Short); errors.Is(err, ErrUnsupported) {
		t.Skip(err)
	} else if err != nil {
		t.Fatal(err)
	}
	for tid, d := range threads(t) {
		if d != Short {
			t.Errorf("thread %d: slice %v, want %v", tid, d, Short)
		}
	}
	// Goroutines locked to threads, kept blocked while they are read: the
	// runtime has to make new threads for some of them.
	before := len(threads(t))
	started, done := make(chan struct{}), make(chan struct{})
	for range 4 {
		go func() {
			runtime.LockOSThread()
			started <- struct{}{}
			<-done
		}()
		<-started
	}
	after := threads(t)
	if len(after) <= before {
		t.Fatalf("%d threads before, %d after: none made", before, len(after))
	}
	for tid, d := range after {
		if d != Short {
			t.Errorf("thread %d made after Set: slice %v, want %v", tid, d, Short)
		}
	}
	close(done)
	// Back to the kernel's default, for the other tests of this process.
	if err := Set(0); err != nil {
		t.Fatal(err)
	}
}
