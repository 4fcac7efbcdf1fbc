package main

import (
	"context"
	"net/netip"

	"github.com/portsentry/pipeline/ps-block/blocker"
	"github.com/portsentry/pipeline/shared/alert"
	"github.com/portsentry/pipeline/shared/config"
	"github.com/portsentry/pipeline/shared/event"
	"github.com/portsentry/pipeline/shared/fleet"
	"github.com/portsentry/pipeline/shared/guard"
)

// member is this ps-block's part in the fleet (--fleet): it publishes the
// decisions of its own input, follows every member's, which reach the
// blocker as input lines of origin "fleet" and so pass its one gate, and
// registers this host's addresses so that no member blocks them.
type member struct {
	*blocker.Blocker // own input is carried out here
	out              *fleet.Outbox
	dry              bool // --dry-run: follow only; publish and register nothing
	stop             context.CancelFunc
	done             chan struct{}
}

// joinFleet connects to url and starts following the fleet once the
// guard knows the members already registered: a decision about a member
// that arrives first would meet a guard that does not know it yet.
func joinFleet(url string, cfg *config.Config, b *blocker.Blocker, keeper *guard.Keeper, dry bool, log *alert.Logger) (*member, error) {
	logf := func(f string, a ...any) { log.Admin(f, a...) }
	host, err := fleet.HostName(&cfg.Fleet)
	if err != nil {
		return nil, err
	}
	nc, err := fleet.Dial(url, &cfg.Fleet, "ps-block on "+host, logf)
	if err != nil {
		return nil, err
	}
	out, err := fleet.NewOutbox(nc, host, "ps-block", logf)
	if err != nil {
		nc.Close()
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &member{Blocker: b, out: out, dry: dry, stop: cancel, done: make(chan struct{})}
	own := func() []netip.Addr {
		sys, err := guard.Discover(guard.ResolvConf)
		if err != nil {
			logf("%v", err)
			return fleet.MemberAddrs(nil, cfg.Fleet.Addresses)
		}
		return fleet.MemberAddrs(sys.Own, cfg.Fleet.Addresses)
	}
	if dry {
		own = nil // a dry run changes nothing, in the bucket neither
	}
	ready := make(chan struct{})
	go fleet.NewMembership(nc, host, own, keeper.SetMembers, logf).Run(ctx, ready)
	go func() {
		defer close(m.done)
		select {
		case <-ready:
		case <-ctx.Done():
			return
		}
		if err := fleet.Follow(ctx, nc, host+"/ps-block", b.FromFleet(), logf); err != nil {
			logf("%v", err)
		}
	}()
	if dry {
		log.Admin("fleet member %s on %s, dry run: following the fleet's decisions, publishing and registering nothing", host, url)
	} else {
		log.Admin("fleet member %s on %s: publishing this host's decisions, applying every member's that this host's guard allows", host, url)
	}
	return m, nil
}

// Line carries out a line of this host's own input and publishes it to
// the fleet when it is a block, run or unblock. The receiving members'
// gates judge it with their own guards.
func (m *member) Line(origin string, n int, data []byte, err error) {
	// Decoded once, for both.
	var ev event.Event
	if err == nil {
		err = event.DecodeInto(&ev, data)
	}
	if err != nil {
		m.Blocker.Line(origin, n, data, err)
		return
	}
	if !m.dry {
		m.out.AddEvent(&ev)
	}
	m.Blocker.Event(origin, n, &ev)
}

// close stops following and sends what waits, for 2 s at most.
func (m *member) close(log *alert.Logger) {
	m.stop()
	<-m.done
	if err := m.out.Close(); err != nil {
		log.Security("%v", err)
	}
}
