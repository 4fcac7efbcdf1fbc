// Command ps-block is the pipeline's privileged stage: it reads decision
// lines (alert, block, run, unblock) from standard input or a Unix socket,
// carries out the configured actions (nftables sets, hosts.deny, KILL_ROUTE,
// KILL_RUN_CMD) and writes one result line per action to standard output.
package main

import (
	"errors"
	"net/netip"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/portsentry/pipeline/ps-block/blocker"
	"github.com/portsentry/pipeline/ps-block/command"
	"github.com/portsentry/pipeline/ps-block/gate"
	"github.com/portsentry/pipeline/ps-block/hostsdeny"
	"github.com/portsentry/pipeline/ps-block/nft"
	"github.com/portsentry/pipeline/shared/alert"
	"github.com/portsentry/pipeline/shared/config"
	"github.com/portsentry/pipeline/shared/event"
	"github.com/portsentry/pipeline/shared/fleet"
	"github.com/portsentry/pipeline/shared/guard"
	"github.com/portsentry/pipeline/shared/metrics"
	"github.com/portsentry/pipeline/shared/stage"
	"github.com/portsentry/pipeline/shared/transport"
	"github.com/urfave/cli/v2"
)

func main() {
	app := &cli.App{
		Name:      "ps-block",
		Usage:     "carry out PortSentry decisions: nftables, hosts.deny, KILL_ROUTE, KILL_RUN_CMD",
		UsageText: "ps-judge | ps-block [-c FILE] [--syslog] [--listen PATH] [--connect PATH] [--dry-run] [--fleet nats://HOST:PORT]",
		Flags: append(stage.ConfigFlags(), stage.ListenFlag(), stage.ConnectFlag(),
			&cli.BoolFlag{Name: "dry-run", Usage: "print what would be done and change nothing"},
			metrics.Flag(),
			&cli.StringFlag{Name: "fleet", Usage: "join the fleet on the NATS server `URL` (nats://HOST:PORT or tls://HOST:PORT): publish this host's decisions, apply every member's that this host's guard allows, and register this host's addresses so that no member blocks them"},
		),
		Action:   run,
		Commands: commands(),
	}
	stage.Main(app)
}

// memoryLimit is the Go runtime's soft limit unless GOMEMLIMIT says
// otherwise: three quarters of the shipped unit's MemoryMax=256M, so that
// the garbage collector works harder before the kernel kills ps-block
// (BLOCK_MAX's million records need about 150 MiB).
const memoryLimit = 192 << 20

// gcPercent is the collector's target unless GOGC says otherwise: the heap
// may grow to three times what is live between two collections (Go's
// default: twice), so that a stream of decisions, each a few short-lived
// allocations, costs half as many collections; memoryLimit still bounds
// the heap. The test binary of BenchmarkFleetBursts10k (10 rounds of
// 10,000 fleet decisions), 3 runs each, median CPU: 1.32 s with GOGC=100,
// 1.24 s with 200, 1.11 s with 400; 400 took ps-block's peak RSS in
// TestAdvFlood to 37 MiB of its 48 MiB bound (200: 29 MiB, 100: 24 MiB).
const gcPercent = 200

func run(c *cli.Context) error {
	stage.OneProcessor()
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(memoryLimit)
	}
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
	cfg, log, err := stage.Setup(c, "ps-block")
	if err != nil {
		return stage.Fatal("%v", err)
	}
	defer log.Close()
	if fleet.IsURL(c.String(stage.FlagListen)) {
		return stage.Fatal("--listen %s: ps-block reads the fleet's decisions with --fleet, beside its own input", c.String(stage.FlagListen))
	}
	dry := c.Bool("dry-run")
	bc, closeNFT, err := actions(cfg, dry, log)
	if err != nil {
		return err
	}
	defer closeNFT()
	if !dry {
		// After the start checks, which create the records' directory.
		lock, err := lockRecords(cfg)
		if err != nil {
			return stage.Fatal("%v", err)
		}
		defer lock.Close()
	}

	keeper := guard.NewKeeper(cfg.IgnoreFile, cfg.ProtectAddresses, log.Admin)
	stop := make(chan struct{})
	defer close(stop)
	go keeper.Watch(stop)
	var listConn nft.Conn
	if a, ok := bc.NFT.(*nft.Action); ok {
		listConn = a.Conn()
	}
	fp := setupFastPath(cfg, dry, &bc, keeper, log)

	out, err := stage.Output(c, cfg, log, fleet.Results)
	if err != nil {
		return err
	}
	defer out.Close()
	bc.Out = out
	bc.Log = log
	outFailed := make(chan error, 1)
	bc.OutFailed = func(err error) { outFailed <- err }
	// The one gate of every act: it asks the guard in force at that moment
	// (and says again, at most once a minute, that the ignore file is
	// missing while it is).
	bc.Gate = gate.New(func(a netip.Addr) string {
		keeper.Remind(time.Now())
		return keeper.Current().Refuse(a)
	})
	var m *blockMetrics
	addr := c.String(metrics.FlagName)
	reg := metrics.NewRegistry()
	if addr != "" {
		m = newBlockMetrics(reg)
		bc.Observer = m
	}
	b := blocker.New(bc)
	if addr != "" {
		table := ""
		if cfg.NFTBlock {
			table = cfg.NFTTable
		}
		m.watch(reg, b, table)
		srv, err := metrics.Serve(addr, reg)
		if err != nil {
			return stage.Fatal("%v", err)
		}
		defer srv.Close()
		log.Admin("serving Prometheus metrics on http://%s/metrics", srv.Addr())
	}
	b.Restore()
	// After the restore, so that blocks the kernel made while ps-block
	// was down are told from those it knows.
	if fp != nil {
		fp.start(b, listConn)
		defer fp.stop()
	}
	log.Admin("PortSentry ps-block is active%s", map[bool]string{true: " (dry run: nothing will be changed)"}[dry])

	// One clock tick a second lifts ended blocks and reports what the rate
	// limit held back, once a second rather than once a line.
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	go func() {
		for {
			select {
			case <-tick.C:
				b.LiftDue()
				held, dropped := b.TakeHeld()
				if m != nil {
					m.held.Add(float64(held))
					m.dropped.Add(float64(dropped))
				}
				if held > 0 {
					log.Security("rate limit held back %d new block(s) in the last second (%d dropped: too many waiting)", held, dropped)
				}
			case <-stop:
				return
			}
		}
	}()

	// Serve watches SIGINT and SIGTERM too; this copy tells a stop from
	// the end of input afterwards.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	var input transport.Handler = b
	if url := c.String("fleet"); url != "" {
		m, err := joinFleet(url, cfg, b, keeper, dry, log)
		if err != nil {
			return stage.Fatal("--fleet: %v", err)
		}
		defer m.close(log)
		input = m
	}
	err = stage.Serve(c, cfg, input, log, outFailed)
	if err == nil {
		drain(b, log, sigs)
	}
	if n := b.BadLines(); n > 0 {
		log.Admin("%d line(s) refused", n)
	}
	return err
}

// drain settles the decisions still waiting for the rate limit when input
// ends: at the end of a replay they are carried out at BLOCK_RATE (the
// ticker goes on releasing them) before ps-block exits; on a stop, each
// gets a result saying it was not carried out. None is lost unsaid.
func drain(b *blocker.Blocker, log *alert.Logger, sigs <-chan os.Signal) {
	n := b.Waiting()
	if n == 0 {
		return
	}
	stopped := func(how string) {
		n := b.Abandon("ps-block " + how + " while it waited for the rate limit")
		log.Security("%s: %d held-back decision(s) not carried out", how, n)
	}
	select {
	case <-sigs:
		stopped("stopped")
		return
	default:
	}
	log.Admin("end of input: %d decision(s) wait for the rate limit (BLOCK_RATE); carrying them out before exiting (SIGTERM stops now)", n)
	poll := time.NewTicker(100 * time.Millisecond)
	defer poll.Stop()
	for b.Waiting() > 0 {
		select {
		case s := <-sigs:
			stopped("stopped on " + s.String())
			return
		case <-poll.C:
		}
	}
	log.Admin("every held-back decision carried out")
}

// actions builds the configured actions. A malformed command is a
// configuration error, reported before any decision is read; every one is
// said, with what the start checks find (ps-block check shows them all).
func actions(cfg *config.Config, dry bool, log *alert.Logger) (blocker.Config, func(), error) {
	bc := blocker.Config{
		RunCmdFirst: cfg.KillRunCmdFirst,
		BlockedFile: cfg.BlockedFile,
		HistoryFile: cfg.HistoryFile,
		KindOf: func(m event.Mode) event.Kind {
			v := cfg.BlockTCP
			if m.Proto() == event.ProtoUDP {
				v = cfg.BlockUDP
			}
			return [...]event.Kind{event.KindAlert, event.KindBlock, event.KindRun}[v]
		},
		Rate:     cfg.BlockRate,
		Burst:    cfg.BlockBurst,
		BlockMax: cfg.BlockMax,
		DryRun:   dry,
		Runner:   command.Exec{Timeout: cfg.CommandTimeout},
	}
	closeNFT := func() {}
	var errs []error
	for _, c := range []struct {
		key, val string
		dst      **command.Command
		parse    func(key, s string) (*command.Command, error)
	}{
		{"KILL_ROUTE", cfg.KillRoute, &bc.Route, command.Parse},
		{"KILL_UNROUTE", cfg.KillUnroute, &bc.Unroute, command.ParseUndo},
		{"KILL_RUN_CMD", cfg.KillRunCmd, &bc.RunCmd, command.Parse},
	} {
		if c.val == "" {
			continue
		}
		cmd, err := c.parse(c.key, c.val)
		if err != nil {
			errs = append(errs, cfg.KeyError(c.key, err))
			continue
		}
		*c.dst = cmd
	}
	if cfg.KillHostsDeny != "" {
		if tmpl, err := hostsdeny.NewTemplate(cfg.KillHostsDeny); err != nil {
			errs = append(errs, cfg.KeyError("KILL_HOSTS_DENY", err))
		} else {
			path := cfg.HostsDenyFile
			if path == "" {
				path = hostsdeny.DefaultPath
			}
			record := ""
			if cfg.BlockedFile != "" {
				record = cfg.BlockedFile + hostsdeny.RecordSuffix
			}
			bc.HostsDeny = hostsdeny.New(path, record, tmpl)
		}
	}
	if cfg.NFTBlock {
		if conn, err := nft.Open(0); err != nil {
			// Every block then reports the failure; ps-block goes on with
			// its other actions.
			log.Admin("%v", err)
		} else {
			closeNFT = func() { _ = conn.CloseLasting() }
			bc.NFT = nft.New(conn, nft.Config{Table: cfg.NFTTable, Forward: cfg.NFTForward}, time.Now)
		}
	}
	errs = append(errs, startChecks(cfg, bc, log)...)
	if len(errs) > 0 {
		closeNFT()
		return bc, func() {}, errors.Join(errs...)
	}
	return bc, closeNFT, nil
}
