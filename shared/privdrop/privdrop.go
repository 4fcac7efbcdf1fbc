// Package privdrop gives up root once a sensor holds its sockets: the
// process becomes an unprivileged user, with that user's group and no
// supplementary groups, for every thread.
package privdrop

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"strconv"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// To switches the process to the named user when it runs as root, and
// returns what it did in words for the log. Not running as root (a systemd
// unit that grants only CAP_NET_RAW, say), it gives up every capability
// instead, the sockets being open. A user that does not exist is an error:
// staying root silently would be worse than not starting.
func To(name string) (string, error) {
	if os.Geteuid() != 0 {
		err := dropCapabilities()
		if errors.Is(err, syscall.ENOTSUP) {
			// The runtime changes every thread only without cgo.
			return "WARNING: capabilities kept: this binary was built with cgo; build it with make (CGO_ENABLED=0)", nil
		}
		if err != nil {
			return "", fmt.Errorf("dropping capabilities: %w", err)
		}
		return fmt.Sprintf("running as uid %d, not root: every capability dropped", os.Geteuid()), nil
	}
	u, err := user.Lookup(name)
	if err != nil {
		return "", fmt.Errorf("dropping privileges: %w", err)
	}
	uid, err := strconv.Atoi(u.Uid)
	if err != nil {
		return "", fmt.Errorf("dropping privileges: user %s has uid %q", name, u.Uid)
	}
	gid, err := strconv.Atoi(u.Gid)
	if err != nil {
		return "", fmt.Errorf("dropping privileges: user %s has gid %q", name, u.Gid)
	}
	if uid == 0 {
		return "", fmt.Errorf("dropping privileges: user %s is root", name)
	}
	// Groups first, then gid, then uid: after Setresuid nothing else may change.
	if err := syscall.Setgroups(nil); err != nil {
		return "", fmt.Errorf("dropping privileges: setgroups: %w", err)
	}
	if err := syscall.Setresgid(gid, gid, gid); err != nil {
		return "", fmt.Errorf("dropping privileges: setresgid %d: %w", gid, err)
	}
	if err := syscall.Setresuid(uid, uid, uid); err != nil {
		return "", fmt.Errorf("dropping privileges: setresuid %d: %w", uid, err)
	}
	if syscall.Setuid(0) == nil {
		return "", fmt.Errorf("dropping privileges: still able to become root")
	}
	return fmt.Sprintf("now running as user %s (uid %d, gid %d)", name, uid, gid), nil
}

// dropCapabilities empties the permitted, effective and inheritable sets
// and the ambient set of every thread, and forbids gaining any back.
func dropCapabilities() error {
	if _, _, e := syscall.AllThreadsSyscall(syscall.SYS_PRCTL, unix.PR_SET_NO_NEW_PRIVS, 1, 0); e != 0 {
		return fmt.Errorf("no_new_privs: %w", e)
	}
	if _, _, e := syscall.AllThreadsSyscall6(syscall.SYS_PRCTL, unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0, 0); e != 0 {
		return fmt.Errorf("clearing ambient capabilities: %w", e)
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData // zero: no capability in any set
	if _, _, e := syscall.AllThreadsSyscall(syscall.SYS_CAPSET, uintptr(unsafe.Pointer(&hdr)), uintptr(unsafe.Pointer(&data[0])), 0); e != 0 {
		return fmt.Errorf("capset: %w", e)
	}
	return nil
}
