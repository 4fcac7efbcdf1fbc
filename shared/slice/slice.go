// Package slice asks the kernel's fair scheduler for a short time slice for
// every thread of the calling process (EEVDF's custom slice, Linux 6.12 and
// later). A stage sleeps until a line or a packet arrives; with the default
// slice a woken stage may wait behind a busy process for the rest of that
// process's slice (3.3 ms measured in the lab, behind nmap itself), and the
// scanner's probes are answered meanwhile. A shorter slice lets it preempt
// at once. It changes when a thread runs, not how much CPU it gets, so a
// flood cannot use it to take more than a fair share; and it needs no
// privilege.
package slice

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// Short is the slice the stages ask for: the kernel's smallest (0.1 ms).
const Short = 100 * time.Microsecond

// ErrUnsupported means the kernel keeps one slice for every thread (before
// Linux 6.12, sched_runtime is ignored for the fair class).
var ErrUnsupported = errors.New("this kernel has no custom time slices (Linux 6.12 or later)")

// Set asks for slice d (0: the kernel's default) for every thread of this process that runs under
// the fair class (SCHED_OTHER, SCHED_BATCH); threads an administrator put
// under a real-time class keep it. Threads created later inherit it.
func Set(d time.Duration) error {
	tids, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return fmt.Errorf("time slice: %w", err)
	}
	for _, t := range tids {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		if err := setThread(tid, d); err != nil {
			return err
		}
	}
	return nil
}

func setThread(tid int, d time.Duration) error {
	attr, err := unix.SchedGetAttr(tid, 0)
	if errors.Is(err, unix.ESRCH) {
		return nil // the thread ended meanwhile
	}
	if err != nil {
		return fmt.Errorf("time slice of thread %d: %w", tid, err)
	}
	if attr.Policy != unix.SCHED_NORMAL && attr.Policy != unix.SCHED_BATCH {
		return nil
	}
	attr.Runtime = uint64(d.Nanoseconds())
	attr.Flags = 0
	if err := unix.SchedSetAttr(tid, attr, 0); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("time slice of thread %d: %w", tid, err)
	}
	got, err := unix.SchedGetAttr(tid, 0)
	if err == nil && d > 0 && got.Runtime != attr.Runtime {
		return ErrUnsupported
	}
	return nil
}

// Of returns the slice thread tid runs with (0 for the kernel's default on
// kernels that report none).
func Of(tid int) (time.Duration, error) {
	attr, err := unix.SchedGetAttr(tid, 0)
	if err != nil {
		return 0, fmt.Errorf("time slice of thread %d: %w", tid, err)
	}
	return time.Duration(attr.Runtime), nil
}
