package blocker

import (
	"cmp"
	"net/netip"
	"slices"
	"time"

	"github.com/portsentry/pipeline/shared/event"
)

// Record is one decision in force as ps-block remembers it, for the
// administrator's listing (ps-block list).
type Record struct {
	Addr     netip.Addr
	Mode     event.Mode
	Kind     event.Kind // block, run or alert
	Since    time.Time
	Until    time.Time // zero: never ends
	Port     uint16    // the port that tripped the decision
	InKernel bool      // the host is in the kernel's set (seen at Restore)
	Routed   bool      // KILL_ROUTE is in place (KILL_UNROUTE will undo it)
	Hits     int       // the decision's hits (ports probed); 0 unknown (older records)
	Host     string    // the fleet host that decided it; "" unnamed
}

// Records lists the records in force, by address then mode. After a dry
// run's Restore it is what the files and the kernel hold, changing
// nothing: the listing and a restart read them the same way.
func (b *Blocker) Records() []Record {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]Record, 0, len(b.state))
	for s, e := range b.state {
		k := s.key()
		out = append(out, Record{Addr: k.addr, Mode: k.mode, Kind: e.kind, Since: e.start.time(), Until: e.end(),
			Port: e.port, InKernel: e.inKernel, Routed: e.routed, Hits: int(e.hits), Host: b.hostName(e.host)})
	}
	slices.SortFunc(out, func(a, b Record) int {
		return cmp.Or(a.Addr.Compare(b.Addr), cmp.Compare(a.Mode, b.Mode))
	})
	return out
}
