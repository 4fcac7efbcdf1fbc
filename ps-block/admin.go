package main

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/portsentry/pipeline/ps-block/blocker"
	"github.com/portsentry/pipeline/ps-block/blockfile"
	"github.com/portsentry/pipeline/ps-block/gate"
	"github.com/portsentry/pipeline/ps-block/nft"
	"github.com/portsentry/pipeline/shared/admin"
	"github.com/portsentry/pipeline/shared/alert"
	"github.com/portsentry/pipeline/shared/config"
	"github.com/portsentry/pipeline/shared/event"
	"github.com/portsentry/pipeline/shared/guard"
	"github.com/portsentry/pipeline/shared/metrics"
	"github.com/portsentry/pipeline/shared/stage"
	"github.com/urfave/cli/v2"
)

// commands are the administrator's subcommands of ps-block.
func commands() []*cli.Command {
	cfgFlag := stage.ConfigFlags()[0]
	return []*cli.Command{
		{
			Name:      "list",
			Usage:     "list the blocks, runs and alerts in force (from the record files and the kernel's sets)",
			UsageText: "ps-block list [-c FILE] [--json] [ADDRESS]",
			Flags:     []cli.Flag{cfgFlag, admin.JSONFlag()},
			Action:    listCmd,
		},
		{
			Name:      "unblock",
			Usage:     "lift the block of ADDRESS in every mode, or in one (--mode): through ps-judge's admin socket when it runs (ps-judge forgets the host, ps-block lifts), else from the files and the kernel directly",
			UsageText: "ps-block unblock [-c FILE] [--mode MODE] [--admin PATH] [--json] ADDRESS",
			Flags: []cli.Flag{cfgFlag, admin.JSONFlag(), admin.SocketFlag(),
				&cli.StringFlag{Name: "mode", Usage: "lift only the record of `MODE` (tcp udp stcp sudp atcp audp)"}},
			Action: unblockCmd,
		},
		{
			Name:      "history",
			Usage:     "show HISTORY_FILE (every decision carried out), the newest last",
			UsageText: "ps-block history [-c FILE] [--json] [-n N] [ADDRESS]",
			Flags: []cli.Flag{cfgFlag, admin.JSONFlag(),
				&cli.IntFlag{Name: "n", Usage: "show only the last `N` lines (0: all)"}},
			Action: historyCmd,
		},
		checkCommand(),
		metrics.StatsCommand("ps-block", offlineStats, cfgFlag),
	}
}

// oneAddress is the optional ADDRESS argument.
func oneAddress(c *cli.Context, required bool) (netip.Addr, error) {
	switch {
	case c.NArg() > 1:
		return netip.Addr{}, cli.Exit(fmt.Sprintf("one ADDRESS only, not %q (see ps-block %s --help)", c.Args().Slice(), c.Command.Name), 2)
	case c.NArg() == 0 && required:
		return netip.Addr{}, cli.Exit(fmt.Sprintf("an ADDRESS is needed (see ps-block %s --help)", c.Command.Name), 2)
	case c.NArg() == 0:
		return netip.Addr{}, nil
	}
	a, err := netip.ParseAddr(c.Args().First())
	if err != nil {
		return netip.Addr{}, cli.Exit(fmt.Sprintf("ADDRESS: %v", err), 2)
	}
	return a.Unmap(), nil
}

// recs is ps-block's records opened as a start opens them.
type recs struct {
	b     *blocker.Blocker
	bc    blocker.Config
	cfg   *config.Config
	log   bytes.Buffer // what reading them said
	close func()
}

// openRecords opens ps-block's records as a start would (the same actions,
// checks and Restore), as a dry run when dry (nothing is changed), its
// results written to out.
func openRecords(c *cli.Context, dry bool, out blocker.Sink) (*recs, error) {
	r := &recs{close: func() {}}
	log := alert.NewWriter("ps-block", &r.log)
	cfg, err := config.Load(c.String(stage.FlagConfig), func(w string) { log.Admin("%s", w) })
	if err != nil {
		return nil, err
	}
	bc, closeNFT, err := actions(cfg, dry, log)
	if err != nil {
		return nil, err
	}
	var lock *os.File
	if !dry {
		// A running ps-block holds its records: changing them behind its
		// back would not last.
		if lock, err = lockRecords(cfg); err != nil {
			closeNFT()
			return nil, err
		}
	}
	bc.Log, bc.Out = log, out
	bc.Gate = gateFor(cfg)
	r.b, r.bc, r.cfg = blocker.New(bc), bc, cfg
	r.close = func() { closeNFT(); lock.Close() }
	r.b.Restore()
	return r, nil
}

// results collects result lines.
type results struct{ lines [][]byte }

func (r *results) Write(l []byte) error { r.lines = append(r.lines, slices.Clone(l)); return nil }
func (*results) Flush() error           { return nil }

// listed is one row of `ps-block list`, its --json object.
type listed struct {
	Address string    `json:"address"`
	Mode    string    `json:"mode"`
	Kind    string    `json:"kind"`
	Since   time.Time `json:"since"`
	Until   time.Time `json:"until,omitzero"`
	Hits    int       `json:"hits,omitzero"` // 0: recorded before ps-block kept it
	Host    string    `json:"host,omitzero"` // the fleet host that decided it
	Port    uint16    `json:"port"`
	Actions []string  `json:"actions"`
}

func listCmd(c *cli.Context) error {
	only, err := oneAddress(c, false)
	if err != nil {
		return err
	}
	r, err := openRecords(c, true, &results{})
	if err != nil {
		return stage.Fatal("%v", err)
	}
	defer r.close()
	warnings(&r.log)
	out := []listed{}
	rows := [][]string{{"ADDRESS", "MODE", "KIND", "SINCE", "UNTIL", "HITS", "HOST", "PORT", "ACTIONS"}}
	for _, rec := range r.b.Records() {
		if only.IsValid() && rec.Addr != only {
			continue
		}
		l := listed{Address: rec.Addr.String(), Mode: rec.Mode.String(), Kind: rec.Kind.String(), Since: rec.Since, Until: rec.Until,
			Hits: rec.Hits, Host: rec.Host, Port: rec.Port, Actions: r.actionsOf(rec)}
		out = append(out, l)
		rows = append(rows, []string{l.Address, l.Mode, l.Kind, admin.Time(rec.Since, "-"), admin.Time(rec.Until, "never"),
			orDash(rec.Hits, strconv.Itoa), orDash(rec.Host, func(s string) string { return s }), strconv.Itoa(int(rec.Port)), strings.Join(l.Actions, ",")})
	}
	if err := admin.Print(os.Stdout, c.Bool(admin.FlagJSON), out, rows); err != nil {
		return stage.Fatal("%v", err)
	}
	if only.IsValid() && len(out) == 0 {
		return admin.NotFound("%s: no record in force", only)
	}
	return nil
}

// orDash is v as text, "-" when zero (unknown, unnamed).
func orDash[T comparable](v T, text func(T) string) string {
	var zero T
	if v == zero {
		return "-"
	}
	return text(v)
}

// actionsOf says what is in place for a record: what the kernel and
// ps-block's own hosts.deny lines show, and what the configuration ran.
func (r *recs) actionsOf(rec blocker.Record) []string {
	if rec.Kind == event.KindAlert {
		return []string{"alert"}
	}
	acts := []string{}
	if rec.InKernel {
		acts = append(acts, blocker.ActionNFT)
	}
	if rec.Kind == event.KindBlock && r.bc.HostsDeny != nil && r.bc.HostsDeny.Ours(rec.Addr) {
		acts = append(acts, blocker.ActionHostsDeny)
	}
	if rec.Routed {
		acts = append(acts, blocker.ActionRoute)
	}
	if r.bc.RunCmd != nil {
		acts = append(acts, blocker.ActionRun)
	}
	return acts
}

// warnings prints on stderr what reading the records said, but the
// summary of a start.
func warnings(buf *bytes.Buffer) {
	for _, l := range strings.SplitAfter(buf.String(), "\n") {
		if l != "" && !strings.Contains(l, "restored ") {
			fmt.Fprint(os.Stderr, l)
		}
	}
}

// gateFor is the gate of a start: the guard of the configuration.
func gateFor(cfg *config.Config) *gate.Gate {
	// A start says what the guard holds: a listing need not.
	keeper := guard.NewKeeper(cfg.IgnoreFile, cfg.ProtectAddresses, func(string, ...any) {})
	return gate.New(func(a netip.Addr) string { return keeper.Current().Refuse(a) })
}

// unblocked is one row of `ps-block unblock`, its --json object.
type unblocked struct {
	Address string `json:"address"`
	Mode    string `json:"mode"`
	Action  string `json:"action"`
	OK      bool   `json:"ok"`
	Detail  string `json:"detail"`
}

// liftWait is how long unblock waits for a running ps-block to record
// the lift that ps-judge passed on.
const liftWait = 5 * time.Second

func unblockCmd(c *cli.Context) error {
	addr, err := oneAddress(c, true)
	if err != nil {
		return err
	}
	var only event.Mode
	if m := c.String("mode"); m != "" {
		if only, err = event.ParseMode(m); err != nil {
			return cli.Exit(fmt.Sprintf("--mode: %v", err), 2)
		}
	}
	r, err := openRecords(c, true, &results{})
	if err != nil {
		return stage.Fatal("%v", err)
	}
	warnings(&r.log)
	modes := inForce(r.b, addr, only)
	r.close()
	if len(modes) == 0 {
		return admin.NotFound("%s: no record in force%s", addr, map[bool]string{true: " in mode " + only.String()}[only != event.ModeNone])
	}
	var lines [][]byte
	for _, m := range modes {
		lines = append(lines, event.Encode(&event.Event{Kind: event.KindUnblock, Time: time.Now().UTC(), Target: addr, Mode: m}))
	}
	var out []unblocked
	sock := c.String(admin.FlagAdmin)
	err = admin.Send(sock, lines)
	switch {
	case err == nil:
		// ps-judge forgets the host and passes the lines on; ps-block's
		// records say when it has lifted.
		deadline := time.Now().Add(liftWait)
		for {
			r, err := openRecords(c, true, &results{})
			if err != nil {
				return stage.Fatal("%v", err)
			}
			left := inForce(r.b, addr, only)
			// Host-wide actions stay while another mode blocks the host.
			inPlace := len(inForce(r.b, addr, event.ModeNone)) == 0 && r.hostWide(addr)
			r.close()
			if len(left) == 0 && !inPlace {
				break
			}
			if time.Now().After(deadline) {
				return stage.Fatal("sent to ps-judge (%s), but ps-block has not lifted %s in mode(s) %v within %v: is it running, fed by that ps-judge?", sock, addr, modes, liftWait)
			}
			time.Sleep(100 * time.Millisecond)
		}
		for _, m := range modes {
			out = append(out, unblocked{addr.String(), m.String(), "block", true, "lifted through ps-judge's admin socket " + sock + " (ps-judge forgot the host)"})
		}
	case errors.Is(err, admin.ErrNotRunning):
		// Nothing runs: do what a ps-block started now would do with
		// these lines, its actions and records the same.
		res := &results{}
		r, lerr := openRecords(c, false, res)
		if errors.Is(lerr, errLocked) {
			return stage.Fatal("%v, but %v: start ps-judge with --admin %s, feeding that ps-block (or stop ps-block)", err, lerr, sock)
		}
		if lerr != nil {
			return stage.Fatal("%v", lerr)
		}
		defer r.close()
		for i, l := range lines {
			r.b.Line("ps-block unblock", i+1, l, nil)
		}
		r.b.Idle()
		warnings(&r.log)
		if out, err = decodeResults(res.lines); err != nil {
			return stage.Fatal("%v", err)
		}
	default:
		return stage.Fatal("%v", err)
	}
	rows := [][]string{{"ADDRESS", "MODE", "ACTION", "OK", "DETAIL"}}
	failed := false
	for _, u := range out {
		rows = append(rows, []string{u.Address, u.Mode, u.Action, strconv.FormatBool(u.OK), u.Detail})
		failed = failed || !u.OK
	}
	if err := admin.Print(os.Stdout, c.Bool(admin.FlagJSON), out, rows); err != nil {
		return stage.Fatal("%v", err)
	}
	if failed {
		return stage.Fatal("some of the lift failed (see above)")
	}
	return nil
}

// hostWide reports whether a host-wide block of addr is still in place:
// its element in the kernel's set or ps-block's line in hosts.deny. The
// records say a block ended before its actions are undone.
func (r *recs) hostWide(addr netip.Addr) bool {
	if r.bc.HostsDeny != nil && r.bc.HostsDeny.Ours(addr) {
		return true
	}
	if r.bc.NFT != nil {
		els, err := r.bc.NFT.List()
		if err == nil && slices.ContainsFunc(els, func(e nft.Element) bool { return e.Addr.Unmap() == addr }) {
			return true
		}
	}
	return false
}

// inForce lists the modes in which addr has a record (only one, unless
// only is ModeNone).
func inForce(b *blocker.Blocker, addr netip.Addr, only event.Mode) []event.Mode {
	var modes []event.Mode
	for _, rec := range b.Records() {
		if rec.Addr == addr && (only == event.ModeNone || rec.Mode == only) {
			modes = append(modes, rec.Mode)
		}
	}
	return modes
}

func decodeResults(lines [][]byte) ([]unblocked, error) {
	out := []unblocked{}
	for _, l := range lines {
		var ev event.Event
		if err := event.DecodeInto(&ev, l); err != nil {
			return nil, fmt.Errorf("result %q: %w", l, err)
		}
		out = append(out, unblocked{ev.Target.String(), ev.Mode.String(), ev.Action, ev.OK, ev.Detail})
	}
	return out, nil
}

// historyLine is one row of `ps-block history`, its --json object.
type historyLine struct {
	Time    time.Time `json:"time"`
	Address string    `json:"address"`
	Name    string    `json:"name,omitempty"`
	Port    uint16    `json:"port"`
	Proto   string    `json:"proto"`
}

func historyCmd(c *cli.Context) error {
	only, err := oneAddress(c, false)
	if err != nil {
		return err
	}
	cfg, err := config.Load(c.String(stage.FlagConfig), func(string) {})
	if err != nil {
		return stage.Fatal("%v", err)
	}
	if cfg.HistoryFile == "" {
		return stage.Fatal("HISTORY_FILE is not set in %s: no history is kept", cfg.Source)
	}
	out := []historyLine{}
	err = blockfile.Scan(cfg.HistoryFile, func(l blockfile.Line) {
		if only.IsValid() && l.Addr.Unmap() != only {
			return
		}
		h := historyLine{Time: l.Time, Address: l.Addr.String(), Port: l.Port, Proto: l.Proto}
		if l.Name != l.Addr.String() {
			h.Name = l.Name
		}
		out = append(out, h)
	}, func(n int, err error) {
		fmt.Fprintf(os.Stderr, "ps-block: %s line %d: %v (skipped)\n", cfg.HistoryFile, n, err)
	})
	if err != nil {
		return stage.Fatal("%v", err)
	}
	if n := c.Int("n"); n > 0 && len(out) > n {
		out = out[len(out)-n:]
	}
	rows := [][]string{{"TIME", "ADDRESS", "NAME", "PORT", "PROTO"}}
	for _, h := range out {
		rows = append(rows, []string{admin.Time(h.Time, "-"), h.Address, cmp.Or(h.Name, "-"), strconv.Itoa(int(h.Port)), h.Proto})
	}
	if err := admin.Print(os.Stdout, c.Bool(admin.FlagJSON), out, rows); err != nil {
		return stage.Fatal("%v", err)
	}
	if only.IsValid() && len(out) == 0 {
		return admin.NotFound("%s: not in the history", only)
	}
	return nil
}

// offlineStats is `ps-block stats` without --metrics: the records in force
// by mode and kind, the history's lines, and the kernel's drops.
func offlineStats(c *cli.Context) ([]metrics.Sample, error) {
	r, err := openRecords(c, true, &results{})
	if err != nil {
		return nil, err
	}
	defer r.close()
	warnings(&r.log)
	count := map[[2]string]int{}
	for _, rec := range r.b.Records() {
		count[[2]string{rec.Mode.String(), rec.Kind.String()}]++
	}
	var out []metrics.Sample
	for k, n := range count {
		out = append(out, metrics.Sample{Name: "portsentry_blocks_in_force", Labels: map[string]string{"mode": k[0], "kind": k[1]}, Value: float64(n)})
	}
	if r.cfg.HistoryFile != "" {
		n := 0
		if err := blockfile.Scan(r.cfg.HistoryFile, func(blockfile.Line) { n++ }, func(int, error) {}); err != nil {
			return nil, err
		}
		out = append(out, metrics.Sample{Name: "portsentry_history_lines", Labels: map[string]string{}, Value: float64(n)})
	}
	if r.cfg.NFTBlock {
		out = append(out, metrics.Sample{Name: "portsentry_kernel_drops_total", Labels: map[string]string{}, Value: kernelDrops(r.cfg.NFTTable)()})
	}
	return out, nil
}
