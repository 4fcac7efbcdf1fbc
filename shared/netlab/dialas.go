package netlab

import (
	"net"
	"runtime"
	"syscall"
)

// DialUnixAs connects n times to the Unix socket at path with the effective
// uid set to uid on one OS thread only (the raw system call, where
// syscall.Setuid would change every thread of the test): the kernel records
// the connecting thread's credentials (SO_PEERCRED), so the listener sees
// another user. It needs root. On error the connections made are closed.
func DialUnixAs(path string, uid, n int) ([]net.Conn, error) {
	type res struct {
		cs  []net.Conn
		err error
	}
	done := make(chan res)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		var r res
		if _, _, e := syscall.RawSyscall(syscall.SYS_SETRESUID, ^uintptr(0), uintptr(uid), ^uintptr(0)); e != 0 {
			r.err = e
		}
		for i := 0; i < n && r.err == nil; i++ {
			c, err := net.Dial("unix", path)
			if err != nil {
				r.err = err
				break
			}
			r.cs = append(r.cs, c)
		}
		done <- r
	}()
	r := <-done
	if r.err != nil {
		for _, c := range r.cs {
			c.Close()
		}
		return nil, r.err
	}
	return r.cs, nil
}
