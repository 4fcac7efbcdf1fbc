package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/portsentry/pipeline/ps-block/blocker"
	"github.com/portsentry/pipeline/ps-block/hostsdeny"
	"github.com/portsentry/pipeline/ps-block/recfile"
	"github.com/portsentry/pipeline/shared/alert"
	"github.com/portsentry/pipeline/shared/config"
	"golang.org/x/sys/unix"
)

// startChecks finds, before any decision is read, what would otherwise
// fail only at the first attack: a record directory that does not exist
// (created here, mode 0750), a record file ps-block must refuse, a command
// whose program is missing, a hosts.deny it cannot edit. Each is an error
// naming the configuration file, line and key, all of them returned (ps-block
// check says them all): a stage that cannot keep its records or carry out
// its actions must not start as if it could. A dry run creates no
// directory: it says that the real run would.
func startChecks(cfg *config.Config, bc blocker.Config, log *alert.Logger) (errs []error) {
	records := bc.RecordFiles()
	if bc.HostsDeny != nil && bc.BlockedFile != "" {
		records = append(records, blocker.RecordFile{Key: "BLOCKED_FILE", Path: bc.BlockedFile + hostsdeny.RecordSuffix})
	}
	said := map[string]bool{} // a directory's problem is said once
	for _, r := range records {
		dir := filepath.Dir(r.Path)
		if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) && bc.DryRun {
			if said[dir] {
				continue
			}
			said[dir] = true
			log.Admin("%s: the directory %s does not exist; a real run would create it (mode %04o)", r.Key, dir, recfile.DirMode)
			continue
		}
		created, err := recfile.Dir(r.Path)
		if err != nil {
			errs = append(errs, cfg.KeyError(r.Key, fmt.Errorf("no directory for %s: %w", r.Path, err)))
			continue
		}
		if created {
			log.Admin("%s: created the directory %s (mode %04o)", r.Key, dir, recfile.DirMode)
		}
		if err := recfile.CheckExisting(r.Path); err != nil {
			errs = append(errs, cfg.KeyError(r.Key, err))
		}
		if err := unix.Access(dir, unix.W_OK); err != nil && !said[dir] {
			said[dir] = true
			errs = append(errs, cfg.KeyError(r.Key, fmt.Errorf("cannot write in %s, the directory of %s: %w", dir, r.Path, err)))
		}
	}
	for _, c := range []struct {
		key string
		cmd interface{ Check() error }
		set bool
	}{
		{"KILL_ROUTE", bc.Route, bc.Route != nil},
		{"KILL_UNROUTE", bc.Unroute, bc.Unroute != nil},
		{"KILL_RUN_CMD", bc.RunCmd, bc.RunCmd != nil},
	} {
		if c.set {
			if err := c.cmd.Check(); err != nil {
				errs = append(errs, cfg.KeyError(c.key, err))
			}
		}
	}
	if hd, ok := bc.HostsDeny.(*hostsdeny.File); ok {
		if err := hd.Check(); err != nil {
			errs = append(errs, cfg.KeyError("KILL_HOSTS_DENY", fmt.Errorf("%w (HOSTS_DENY_FILE names the file)", err)))
		}
	}
	return errs
}
