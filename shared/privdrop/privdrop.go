// Package privdrop gives up root once a sensor holds its sockets: the
// process becomes an unprivileged user, with that user's group and no
// supplementary groups, for every thread.
package privdrop

import (
	"fmt"
	"os"
	"os/user"
	"strconv"
	"syscall"
)

// To switches the process to the named user when it runs as root, and
// returns what it did in words for the log. Not running as root, it does
// nothing. A user that does not exist is an error: staying root silently
// would be worse than not starting.
func To(name string) (string, error) {
	if os.Geteuid() != 0 {
		return fmt.Sprintf("running as uid %d, not root: no privileges to drop", os.Geteuid()), nil
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
