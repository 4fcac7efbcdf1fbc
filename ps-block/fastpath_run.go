package main

import (
	"time"

	"github.com/portsentry/pipeline/ps-block/blocker"
	"github.com/portsentry/pipeline/ps-block/fastpath"
	"github.com/portsentry/pipeline/ps-block/nft"
	"github.com/portsentry/pipeline/shared/alert"
	"github.com/portsentry/pipeline/shared/config"
	"github.com/portsentry/pipeline/shared/event"
	"github.com/portsentry/pipeline/shared/guard"
)

// fastPath is the running kernel fast path: its own netlink connection for
// installing, the guard sync and the counters (used by one goroutine at a
// time), while listings and lifts go through the blocker's, under its lock.
type fastPath struct {
	conn   fastpath.Conn
	close  func()
	rs     *fastpath.Ruleset
	keeper *guard.Keeper
	log    *alert.Logger
	hits   int
	quit   chan struct{} // closed: run returns
	done   chan struct{} // closed by run
}

// setupFastPath builds and installs the fast path's rules and wraps the
// nftables action so that lifts and listings (the restore) cover the
// kernel's block maps. nil: the fast path is off (a kernel without the
// socket expression, for one), the log says why, and the pipeline alone
// blocks, as before.
func setupFastPath(cfg *config.Config, dry bool, bc *blocker.Config, keeper *guard.Keeper, log *alert.Logger) *fastPath {
	s, notes := fastpath.FromConfig(cfg)
	for _, n := range notes {
		log.Admin("fast path: %s", n)
	}
	action, ok := bc.NFT.(*nft.Action)
	switch {
	case len(s.Watches) == 0:
		return nil
	case dry:
		log.Admin("fast path: not installed in a dry run")
		return nil
	case !ok:
		return nil // NFT_BLOCK off, or its netlink failed (already said)
	}
	rs, err := fastpath.Build(s, fastpath.Protected(keeper.Current()))
	if err != nil {
		log.Admin("%v: the pipeline alone blocks", err)
		return nil
	}
	conn, err := nft.Open(0)
	if err != nil {
		log.Admin("fast path: %v: the pipeline alone blocks", err)
		return nil
	}
	if err := fastpath.Install(conn, rs); err != nil {
		log.Admin("%v: the fast path is off, the pipeline alone blocks", err)
		_ = conn.CloseLasting()
		return nil
	}
	log.Admin("fast path installed in table inet %s (nft list table inet %s shows it)", rs.Table.Name, rs.Table.Name)
	bc.NFT = fastpath.NewAction(action, action.Conn(), rs)
	return &fastPath{conn: conn, close: func() { _ = conn.CloseLasting() }, rs: rs, keeper: keeper, log: log, hits: s.Trigger + 1}
}

// start reports the kernel's blocks to b from now on (after the restore,
// so that what the kernel made while ps-block was down is told from what
// it knows).
func (fp *fastPath) start(b *blocker.Blocker, listConn nft.Conn) {
	fp.quit, fp.done = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(fp.done)
		fp.run(b, listConn)
	}()
}

// stop leaves the blocks enforced and detection off: no block is made
// that no ps-block reports.
func (fp *fastPath) stop() {
	close(fp.quit)
	<-fp.done
	if err := fastpath.Disarm(fp.conn, fp.rs); err != nil {
		fp.log.Admin("%v", err)
	} else {
		fp.log.Admin("fast path disarmed: its blocks stay enforced until they end")
	}
	fp.close()
}

// run reports the kernel's blocks every fastpath.Poll, keeps the
// protected sets equal to the guard, and logs once a second what the
// kernel left to the pipeline, until quit is closed.
func (fp *fastPath) run(b *blocker.Blocker, listConn nft.Conn) {
	tick := time.NewTicker(fastpath.Poll)
	defer tick.Stop()
	synced := fp.keeper.Current()
	fetch := func() ([]event.Event, error) {
		blocks, err := fastpath.Blocks(listConn, fp.rs)
		if err != nil {
			return nil, err
		}
		now := time.Now()
		out := make([]event.Event, 0, len(blocks))
		for _, kb := range blocks {
			mode, err := event.ParseMode(kb.Mode)
			if err != nil {
				continue // ModeOfMap knows the four modes only
			}
			ev := event.Event{Kind: event.KindBlock, Time: now.UTC(), Target: kb.Addr, Mode: mode,
				Proto: mode.Proto(), Port: kb.Port, Hits: fp.hits}
			if kb.Expires > 0 {
				ev.Until = now.Add(kb.Expires)
			}
			out = append(out, ev)
		}
		return out, nil
	}
	for n := 1; ; n++ {
		select {
		case <-fp.quit:
			return
		case <-tick.C:
		}
		if cur := fp.keeper.Current(); cur != synced {
			if err := fastpath.SyncProtected(fp.conn, fp.rs, fastpath.Protected(cur)); err != nil {
				fp.log.Admin("%v", err)
			} else {
				synced = cur
			}
		}
		if err := b.Kernel(fetch); err != nil {
			fp.log.Admin("%v", err)
		}
		if n%4 == 0 {
			fp.logCounts()
		}
	}
}

func (fp *fastPath) logCounts() {
	c, err := fastpath.TakeCounts(fp.conn, fp.rs)
	if err != nil {
		fp.log.Admin("%v", err)
		return
	}
	for mode, n := range c.Full {
		if n > 0 {
			fp.log.Security("fast path %s: a kernel set was full for %d probe(s) in the last second; the pipeline decided them (raise nothing: the sets' sizes are fixed; see README, fast path)", mode, n)
		}
	}
	if c.Limited > 0 {
		fp.log.Security("fast path: %d new block(s) over BLOCK_RATE in the last second were left to the pipeline", c.Limited)
	}
}
