package guard

import (
	"errors"
	"io/fs"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/portsentry/pipeline/shared/alert"
	"github.com/portsentry/pipeline/shared/ignore"
)

// Name servers are read from both files: with systemd-resolved,
// /etc/resolv.conf names only its stub (127.0.0.53), and the servers the
// host really depends on are in ResolvedConf.
const (
	ResolvConf   = "/etc/resolv.conf"
	ResolvedConf = "/run/systemd/resolve/resolv.conf"
)

// RemindEvery is how often, at most, Remind repeats that the ignore file is
// missing.
const RemindEvery = time.Minute

// Keeper holds the current Set of a running program and builds a new one
// when the ignore file or a resolv.conf changes on disk (or, for a symlink,
// its target), on SIGHUP, and when the host's addresses or routes change.
// Readers never wait: Current is one atomic load.
type Keeper struct {
	ignoreFile  string
	resolvConfs []string
	protect     []netip.Prefix
	log         func(format string, args ...any)
	cur         atomic.Pointer[Set]
	missing     atomic.Bool                           // the ignore file did not exist at the last reload
	members     atomic.Pointer[map[netip.Addr]string] // the fleet's, when this host is a member

	mu         sync.Mutex // serialises Reload and Remind
	lastRemind time.Time
}

// NewKeeper loads the ignore file and the system's addresses once. log
// receives problems and reloads in words for an administrator.
func NewKeeper(ignoreFile string, protect []netip.Prefix, log func(format string, args ...any)) *Keeper {
	return newKeeper(ignoreFile, []string{ResolvConf, ResolvedConf}, protect, log)
}

func newKeeper(ignoreFile string, resolvConfs []string, protect []netip.Prefix, log func(format string, args ...any)) *Keeper {
	k := &Keeper{ignoreFile: ignoreFile, resolvConfs: resolvConfs, protect: protect, log: log}
	k.Reload("start")
	return k
}

// Current is the Set in force.
func (k *Keeper) Current() *Set { return k.cur.Load() }

// SetMembers replaces the fleet's member addresses and builds a new Set.
func (k *Keeper) SetMembers(m map[netip.Addr]string) {
	k.members.Store(&m)
	k.Reload("fleet members")
}

// Reload builds a new Set now. why says what prompted it, for the log.
func (k *Keeper) Reload(why string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	ign, problems, err := ignore.Load(k.ignoreFile)
	for _, p := range problems {
		k.log("%v (line skipped)", p)
	}
	old := k.cur.Load()
	k.missing.Store(errors.Is(err, fs.ErrNotExist))
	if err != nil {
		// A missing file gets sayMissing's warning alone, not its error too.
		if !k.missing.Load() {
			k.log("%v", err)
		}
		k.sayMissing(time.Now())
		// Fail closed: a file that vanished or cannot be read keeps what
		// it held; an empty file is how to ignore nothing.
		if old != nil && old.ignore.Len() > 0 {
			k.log("keeping the previous ignore list (%d entries)", old.ignore.Len())
			ign = old.ignore
		}
	}
	sys, err := Discover(k.resolvConfs...)
	if err != nil {
		k.log("%v", err)
		sys = &System{}
	}
	if m := k.members.Load(); m != nil {
		sys.Members = *m
	}
	k.cur.Store(New(ign, k.protect, sys))
	k.log("guard (%s): %s, %s, %s, %s, %s, %s", why, alert.Count(ign.Len(), "ignore entry"),
		alert.Count(len(sys.Own), "own address"), alert.Count(len(sys.Gateways), "gateway"),
		alert.Count(len(sys.Resolvers), "name server"), alert.Count(len(sys.Members), "fleet member address"),
		alert.Count(len(k.protect), "protected network"))
}

// sayMissing warns that the ignore file is missing, if it is. k.mu is held.
func (k *Keeper) sayMissing(now time.Time) {
	if !k.missing.Load() {
		return
	}
	k.lastRemind = now
	k.log("WARNING: the ignore file %s does not exist: no host is ignored, only this host's own addresses and what it depends on are protected (create the file, even empty, to say that this is meant)", k.ignoreFile)
}

// Remind repeats the warning that the ignore file is missing, at most once
// every RemindEvery, while it lasts. Callers call it when they act (1.2
// said so at every hit); now is their clock.
func (k *Keeper) Remind(now time.Time) {
	if !k.missing.Load() {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if now.Sub(k.lastRemind) >= RemindEvery {
		k.sayMissing(now)
	}
}

// Watch reloads on SIGHUP, on changes to the ignore file and the resolv.conf
// files (and to the targets of those that are symlinks), and on address or
// route changes, until stop is closed.
func (k *Keeper) Watch(stop <-chan struct{}) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	netChanged := make(chan struct{}, 1)
	go func() {
		err := WatchNetwork(func() {
			select {
			case netChanged <- struct{}{}:
			default:
			}
		})
		k.log("not watching address changes: %v", err)
	}()

	var events <-chan fsnotify.Event
	files, watched := map[string]bool{}, map[string]bool{}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		k.log("not watching files: %v", err)
	} else {
		defer w.Close()
		files = k.watchFiles(w, watched)
		events = w.Events
	}
	// Debounce: an editor's save is several events; reload once after them.
	var debounce <-chan time.Time
	for {
		why := ""
		select {
		case <-stop:
			return
		case <-hup:
			why = "SIGHUP"
		case <-netChanged:
			why = "network change"
		case ev := <-events:
			if files[filepath.Clean(ev.Name)] {
				debounce = time.After(100 * time.Millisecond)
			}
			continue
		case <-debounce:
			debounce = nil
			why = "file changed"
		}
		k.Reload(why)
		// A symlink may point elsewhere now, or systemd-resolved may have
		// made its directory.
		if w != nil {
			files = k.watchFiles(w, watched)
		}
	}
}

// watchFiles watches the directories of the watched files and of every
// link on their way to their targets: editors and config managers replace
// files by renaming, which a watch on the file itself would lose. watched
// holds the directories already watched; it returns the paths whose events
// matter.
func (k *Keeper) watchFiles(w *fsnotify.Watcher, watched map[string]bool) map[string]bool {
	files := map[string]bool{}
	for _, f := range append([]string{k.ignoreFile}, k.resolvConfs...) {
		for _, p := range linkChain(f) {
			files[p] = true
			d := filepath.Dir(p)
			if watched[d] {
				continue
			}
			// A directory not there yet (no systemd-resolved) is tried
			// again at the next reload.
			if err := w.Add(d); err == nil {
				watched[d] = true
			} else if !errors.Is(err, fs.ErrNotExist) {
				k.log("not watching %s: %v", d, err)
			}
		}
	}
	return files
}

// linkChain returns path and, while it is a symlink, each path it leads to,
// cleaned and absolute where the link is relative to its directory.
func linkChain(path string) []string {
	out := []string{filepath.Clean(path)}
	for range 40 { // the kernel's own limit of links followed
		target, err := os.Readlink(out[len(out)-1])
		if err != nil {
			break
		}
		if !filepath.IsAbs(target) {
			target = filepath.Join(filepath.Dir(out[len(out)-1]), target)
		}
		out = append(out, filepath.Clean(target))
	}
	return out
}
