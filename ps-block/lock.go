package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/portsentry/pipeline/ps-block/recfile"
	"github.com/portsentry/pipeline/shared/config"
	"golang.org/x/sys/unix"
)

// lockSuffix names the lock file beside BLOCKED_FILE that a running
// ps-block holds (flock, exclusive): a second ps-block, or an offline
// `ps-block unblock`, must not change the records behind its back. The
// kernel drops the lock when the process ends, however it ends.
const lockSuffix = ".lock"

// errLocked: another process holds the records.
var errLocked = errors.New("another ps-block holds the records")

// lockRecords takes the records' lock, or says who holds it; with no
// BLOCKED_FILE there are no records to guard. The lock lasts until the
// returned file is closed or the process ends. The start checks made
// the directory.
func lockRecords(cfg *config.Config) (*os.File, error) {
	if cfg.BlockedFile == "" {
		return nil, nil
	}
	path := cfg.BlockedFile + lockSuffix
	f, err := recfile.Open(path, os.O_RDONLY|os.O_CREATE)
	if err != nil {
		return nil, cfg.KeyError("BLOCKED_FILE", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w (%s is locked)", errLocked, path)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return f, nil
}
