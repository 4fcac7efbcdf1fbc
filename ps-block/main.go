// Command ps-block is the pipeline's privileged stage: it reads decision
// lines (alert, block, run, unblock) from standard input or a Unix socket,
// carries out the configured actions (nftables sets, hosts.deny, KILL_ROUTE,
// KILL_RUN_CMD) and writes one result line per action to standard output.
package main

import (
	"net/netip"
	"time"

	"github.com/portsentry/pipeline/ps-block/blocker"
	"github.com/portsentry/pipeline/ps-block/command"
	"github.com/portsentry/pipeline/ps-block/hostsdeny"
	"github.com/portsentry/pipeline/ps-block/nft"
	"github.com/portsentry/pipeline/shared/alert"
	"github.com/portsentry/pipeline/shared/config"
	"github.com/portsentry/pipeline/shared/guard"
	"github.com/portsentry/pipeline/shared/stage"
	"github.com/urfave/cli/v2"
)

func main() {
	app := &cli.App{
		Name:      "ps-block",
		Usage:     "carry out PortSentry decisions: nftables, hosts.deny, KILL_ROUTE, KILL_RUN_CMD",
		UsageText: "ps-judge | ps-block [-c FILE] [--syslog] [--listen PATH] [--connect PATH] [--dry-run]",
		Flags: append(stage.ConfigFlags(), stage.ListenFlag(), stage.ConnectFlag(),
			&cli.BoolFlag{Name: "dry-run", Usage: "print what would be done and change nothing"},
		),
		Action: run,
	}
	stage.Main(app)
}

func run(c *cli.Context) error {
	stage.OneProcessor()
	cfg, log, err := stage.Setup(c, "ps-block")
	if err != nil {
		return stage.Fatal("%v", err)
	}
	defer log.Close()
	dry := c.Bool("dry-run")
	bc, closeNFT, err := actions(cfg, dry, log)
	if err != nil {
		return err
	}
	defer closeNFT()

	keeper := guard.NewKeeper(cfg.IgnoreFile, cfg.ProtectAddresses, log.Admin)
	stop := make(chan struct{})
	defer close(stop)
	go keeper.Watch(stop)

	out := stage.Output(c, log)
	defer out.Close()
	bc.Out = out
	bc.Log = log
	outFailed := make(chan error, 1)
	bc.OutFailed = func(err error) { outFailed <- err }
	bc.Refuse = func(a netip.Addr) string { return keeper.Current().Refuse(a) }
	b := blocker.New(bc)
	b.Restore()
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
				if held, dropped := b.TakeHeld(); held > 0 {
					log.Security("rate limit held back %d new block(s) in the last second (%d dropped: too many waiting)", held, dropped)
				}
			case <-stop:
				return
			}
		}
	}()

	err = stage.Serve(c, b, log, outFailed)
	if n := b.BadLines(); n > 0 {
		log.Admin("%d line(s) refused", n)
	}
	return err
}

// actions builds the configured actions. A malformed command is a
// configuration error, reported before any decision is read.
func actions(cfg *config.Config, dry bool, log *alert.Logger) (blocker.Config, func(), error) {
	bc := blocker.Config{
		RunCmdFirst: cfg.KillRunCmdFirst,
		BlockedFile: cfg.BlockedFile,
		HistoryFile: cfg.HistoryFile,
		Rate:        cfg.BlockRate,
		Burst:       cfg.BlockBurst,
		DryRun:      dry,
		Runner:      command.Exec{Timeout: cfg.CommandTimeout},
	}
	closeNFT := func() {}
	var err error
	for _, c := range []struct {
		key, val string
		dst      **command.Command
	}{
		{"KILL_ROUTE", cfg.KillRoute, &bc.Route},
		{"KILL_UNROUTE", cfg.KillUnroute, &bc.Unroute},
		{"KILL_RUN_CMD", cfg.KillRunCmd, &bc.RunCmd},
	} {
		if c.val == "" {
			continue
		}
		if *c.dst, err = command.Parse(c.key, c.val); err != nil {
			return bc, closeNFT, err
		}
	}
	if cfg.KillHostsDeny != "" {
		tmpl, err := hostsdeny.NewTemplate(cfg.KillHostsDeny)
		if err != nil {
			return bc, closeNFT, err
		}
		path := cfg.HostsDenyFile
		if path == "" {
			path = hostsdeny.DefaultPath
		}
		bc.HostsDeny = hostsdeny.New(path, tmpl)
	}
	if cfg.NFTBlock {
		conn, err := nft.Open(0)
		if err != nil {
			// Every block then reports the failure; ps-block goes on with
			// its other actions.
			log.Admin("%v", err)
			return bc, closeNFT, nil
		}
		closeNFT = func() { _ = conn.CloseLasting() }
		bc.NFT = nft.New(conn, nft.Config{Table: cfg.NFTTable, Forward: cfg.NFTForward}, time.Now)
	}
	return bc, closeNFT, nil
}
