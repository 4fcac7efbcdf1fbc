package guard

import (
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/portsentry/pipeline/shared/ignore"
)

// ResolvConf is where name servers are read from.
const ResolvConf = "/etc/resolv.conf"

// Keeper holds the current Set of a running program and builds a new one
// when the ignore file or resolv.conf changes on disk, on SIGHUP, and when
// the host's addresses or routes change. Readers never wait: Current is one
// atomic load.
type Keeper struct {
	ignoreFile string
	protect    []netip.Prefix
	log        func(format string, args ...any)
	cur        atomic.Pointer[Set]
}

// NewKeeper loads the ignore file and the system's addresses once. log
// receives problems and reloads in words for an administrator.
func NewKeeper(ignoreFile string, protect []netip.Prefix, log func(format string, args ...any)) *Keeper {
	k := &Keeper{ignoreFile: ignoreFile, protect: protect, log: log}
	k.Reload("start")
	return k
}

// Current is the Set in force.
func (k *Keeper) Current() *Set { return k.cur.Load() }

// Reload builds a new Set now. why says what prompted it, for the log.
func (k *Keeper) Reload(why string) {
	ign, problems, err := ignore.Load(k.ignoreFile)
	for _, p := range problems {
		k.log("%v (line skipped)", p)
	}
	old := k.cur.Load()
	if err != nil {
		k.log("%v", err)
		if old != nil {
			k.log("keeping the previous ignore list")
			ign = old.ignore
		}
	}
	sys, err := Discover(ResolvConf)
	if err != nil {
		k.log("%v", err)
		sys = &System{}
	}
	k.cur.Store(New(ign, k.protect, sys))
	k.log("guard (%s): %d ignore entries, %d own addresses, %d gateways, %d name servers, %d protected networks",
		why, ign.Len(), len(sys.Own), len(sys.Gateways), len(sys.Resolvers), len(k.protect))
}

// Watch reloads on SIGHUP, on changes to the ignore file and resolv.conf,
// and on address or route changes, until stop is closed.
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
	if w, err := fsnotify.NewWatcher(); err != nil {
		k.log("not watching files: %v", err)
	} else {
		defer w.Close()
		// Watch the directories: editors and config managers replace files by
		// renaming, which a watch on the file itself would lose.
		for _, dir := range []string{filepath.Dir(k.ignoreFile), filepath.Dir(ResolvConf)} {
			if err := w.Add(dir); err != nil {
				k.log("not watching %s: %v", dir, err)
			}
		}
		events = w.Events
	}
	// Debounce: an editor's save is several events; reload once after them.
	var debounce <-chan time.Time
	for {
		select {
		case <-stop:
			return
		case <-hup:
			k.Reload("SIGHUP")
		case <-netChanged:
			k.Reload("network change")
		case ev := <-events:
			if ev.Name == k.ignoreFile || ev.Name == ResolvConf {
				debounce = time.After(100 * time.Millisecond)
			}
		case <-debounce:
			debounce = nil
			k.Reload("file changed")
		}
	}
}
