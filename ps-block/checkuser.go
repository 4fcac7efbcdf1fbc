package main

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"unsafe"

	"github.com/portsentry/pipeline/ps-block/blocker"
	"github.com/portsentry/pipeline/ps-block/hostsdeny"
	"github.com/portsentry/pipeline/ps-block/recfile"
	"github.com/portsentry/pipeline/shared/config"
	"golang.org/x/sys/unix"
)

// unitFiles are where an installed ps-block.service may be, the
// administrator's own first (make install, the package).
var unitFiles = []string{
	"/etc/systemd/system/ps-block.service",
	"/usr/local/lib/systemd/system/ps-block.service",
	"/lib/systemd/system/ps-block.service",
	"/usr/lib/systemd/system/ps-block.service",
}

// unitUser is the User= of the first installed ps-block unit, "" if none.
func unitUser(files []string) string {
	for _, p := range files {
		f, err := os.Open(p)
		if err != nil {
			continue
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if v, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "User="); ok {
				return strings.TrimSpace(v)
			}
		}
		return ""
	}
	return ""
}

// checkUser resolves --user: NAME, or the installed unit's user, or the
// current user.
func checkUser(name string) (*user.User, error) {
	from := "--user"
	if name == "" {
		name, from = unitUser(unitFiles), "the User= of the installed ps-block.service (--user NAME to check another)"
	}
	if name == "" {
		return user.Current()
	}
	u, err := user.Lookup(name)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", from, err)
	}
	return u, nil
}

// asUser runs f on an OS thread of its own whose user, group and groups
// are u's, so that the kernel answers f's access checks for u (ACLs
// included). Only that thread changes (raw syscalls, not the process-wide
// ones) and it is never given back: the goroutine ends locked and Go ends
// the thread.
func asUser(u *user.User, f func() []error) []error {
	uid, uerr := strconv.Atoi(u.Uid)
	gid, gerr := strconv.Atoi(u.Gid)
	gids, lerr := u.GroupIds()
	if err := errors.Join(uerr, gerr, lerr); err != nil {
		return []error{fmt.Errorf("user %s: %w", u.Username, err)}
	}
	groups := make([]uint32, 0, len(gids))
	for _, g := range gids {
		if n, err := strconv.Atoi(g); err == nil {
			groups = append(groups, uint32(n))
		}
	}
	done := make(chan []error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		var err error
		if len(groups) > 0 {
			if _, _, e := unix.RawSyscall(unix.SYS_SETGROUPS, uintptr(len(groups)), uintptr(unsafe.Pointer(&groups[0])), 0); e != 0 {
				err = e
			}
		}
		if err == nil {
			if _, _, e := unix.RawSyscall(unix.SYS_SETRESGID, uintptr(gid), uintptr(gid), ^uintptr(0)); e != 0 {
				err = e
			}
		}
		if err == nil {
			if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, uintptr(uid), uintptr(uid), ^uintptr(0)); e != 0 {
				err = e
			}
		}
		if err != nil {
			done <- []error{fmt.Errorf("--user %s: cannot take its identity to check (root needed): %w", u.Username, err)}
			return
		}
		done <- f()
	}()
	return <-done
}

// userChecks says what u could not write of what ps-block writes: the
// record files' directories and files (refused as a start would refuse
// them), hosts.deny and its directory.
func userChecks(cfg *config.Config, u *user.User) []error {
	bc := blocker.Config{BlockedFile: cfg.BlockedFile, HistoryFile: cfg.HistoryFile}
	records := bc.RecordFiles()
	if cfg.KillHostsDeny != "" && cfg.BlockedFile != "" {
		records = append(records, blocker.RecordFile{Key: "BLOCKED_FILE", Path: cfg.BlockedFile + hostsdeny.RecordSuffix})
	}
	return asUser(u, func() (errs []error) {
		said := map[string]bool{}
		writable := func(key, path, prep string) {
			// A missing directory is made by ps-block in the nearest
			// one that exists.
			for d := path; prep == "in" && d != filepath.Dir(d); d = filepath.Dir(d) {
				if _, err := os.Stat(d); !errors.Is(err, fs.ErrNotExist) {
					path = d
					break
				}
			}
			if err := unix.Access(path, unix.W_OK); err != nil && !errors.Is(err, fs.ErrNotExist) && !said[path] {
				said[path] = true
				errs = append(errs, cfg.KeyError(key, fmt.Errorf("user %s cannot write %s %s: %w", u.Username, prep, path, err)))
			}
		}
		for _, r := range records {
			writable(r.Key, filepath.Dir(r.Path), "in")
			if err := recfile.CheckExisting(r.Path); err != nil {
				errs = append(errs, cfg.KeyError(r.Key, fmt.Errorf("as user %s: %w", u.Username, err)))
			}
		}
		if cfg.KillHostsDeny != "" {
			writable("KILL_HOSTS_DENY", cfg.HostsDenyFile, "to")
			writable("KILL_HOSTS_DENY", filepath.Dir(cfg.HostsDenyFile), "in")
		}
		return errs
	})
}
