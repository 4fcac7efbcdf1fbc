// Command ps-judge reads hit lines from the sensors, applies the guard (the
// ignore file, this host's own addresses and what it depends on) and
// SCAN_TRIGGER, and writes one decision line (alert, block or run) per host
// and mode while the decision lasts. It needs no privilege.
package main

import (
	"context"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/portsentry/pipeline/shared/alert"
	"github.com/portsentry/pipeline/shared/event"
	"github.com/portsentry/pipeline/shared/fleet"
	"github.com/portsentry/pipeline/shared/guard"
	"github.com/portsentry/pipeline/shared/judge"
	"github.com/portsentry/pipeline/shared/metrics"
	"github.com/portsentry/pipeline/shared/stage"
	"github.com/portsentry/pipeline/shared/transport"
	"github.com/urfave/cli/v2"
)

func main() {
	app := &cli.App{
		Name:      "ps-judge",
		Usage:     "decide which hosts tripped PortSentry's sensors",
		UsageText: "ps-sniff -atcp | ps-judge | ps-block\n   ps-judge < captured-hits.jsonl\n   ps-judge --listen /run/portsentry/judge.sock --connect /run/portsentry/block.sock --admin /run/portsentry/admin.sock",
		Flags: append(stage.ConfigFlags(), stage.ListenFlag(), stage.ConnectFlag(),
			&cli.StringFlag{Name: flagAdmin, Usage: "take administrative lines (unblock) from writers connecting to the Unix socket `PATH` (mode 0600; root or ps-judge's own user only); they are refused from the sensors' input"},
			metrics.Flag(),
		),
		Action: run,
		Commands: []*cli.Command{
			metrics.StatsCommand("ps-judge", nil),
		},
	}
	stage.Main(app)
}

func run(c *cli.Context) error {
	stage.OneProcessor()
	cfg, log, err := stage.Setup(c, "ps-judge")
	if err != nil {
		return stage.Fatal("%v", err)
	}
	defer log.Close()
	log.Admin("portsentry judge is starting.")

	keeper := guard.NewKeeper(cfg.IgnoreFile, cfg.ProtectAddresses, func(f string, a ...any) { log.Admin(f, a...) })
	stop := make(chan struct{})
	defer close(stop)
	go keeper.Watch(stop)

	out, err := stage.Output(c, cfg, log, fleet.Decisions)
	if err != nil {
		return err
	}
	// Every decision names the host that made it (SPEC, Transports).
	host, err := fleet.HostName(&cfg.Fleet)
	if err != nil {
		log.Admin("%v: decisions will name no host", err)
	}
	// A judge on NATS (topology 2) knows the fleet's members too, so it
	// never decides against one.
	if url := natsURL(c); url != "" {
		nc, err := fleet.Dial(url, &cfg.Fleet, "ps-judge members", func(f string, a ...any) { log.Admin(f, a...) })
		if err != nil {
			return stage.Fatal("%v", err)
		}
		defer nc.Close()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go fleet.NewMembership(nc, host, nil, keeper.SetMembers, func(f string, a ...any) { log.Admin(f, a...) }).Run(ctx, nil)
	}
	j := &judgeStage{
		host:    host,
		log:     log,
		guard:   keeper,
		out:     out,
		trigger: cfg.ScanTrigger,
		model: judge.NewTrigger(judge.Settings{
			ScanTrigger:   cfg.ScanTrigger,
			BlockTCP:      cfg.BlockTCP,
			BlockUDP:      cfg.BlockUDP,
			BlockDuration: cfg.BlockDuration,
			IdleTimeout:   cfg.StateIdleTimeout,
			MaxHosts:      cfg.StateMaxHosts,
		}),
		failed: make(chan error, 1),
	}
	j.ready()
	if addr := c.String(metrics.FlagName); addr != "" {
		reg := metrics.NewRegistry()
		j.m = newJudgeMetrics(reg)
		srv, err := metrics.Serve(addr, reg)
		if err != nil {
			return stage.Fatal("%v", err)
		}
		defer srv.Close()
		log.Admin("serving Prometheus metrics on http://%s/metrics", srv.Addr())
	}
	var mu *sync.Mutex // with --admin, two sources feed the judge
	defer func() {
		if mu != nil {
			// An admin writer may still be connected: it must not
			// write after the output is closed.
			mu.Lock()
			defer mu.Unlock()
			j.dead = true
		}
		out.Close()
		j.summary()
	}()

	var h transport.Handler = j
	if path := c.String(flagAdmin); path != "" {
		// Its calls must never overlap.
		mu = &sync.Mutex{}
		h = lockedHandler{mu: mu, h: j}
		ln, err := transport.ListenWith(path, adminSource{j}, func(f string, a ...any) { log.Admin(f, a...) }, transport.Options{
			Mode:  0o600,
			Admit: adminPeer,
			Lock:  mu,
		})
		if err != nil {
			return stage.Fatal("--admin: %v%s", err, transport.DirHint(path))
		}
		defer ln.Close()
		log.Admin("taking administrative lines (unblock) from %s", path)
	}
	return stage.Serve(c, cfg, h, log, j.failed)
}

const flagAdmin = "admin"

// adminPeer admits to the admin socket root and ps-judge's own user only.
// The socket's mode (0600) already keeps others out; the kernel's record
// of who connected (SO_PEERCRED) holds even if the mode is loosened.
func adminPeer(p transport.Peer) error {
	if p.UID == 0 || p.UID == uint32(os.Geteuid()) {
		return nil
	}
	return fmt.Errorf("uid %d is neither root nor ps-judge's user (uid %d): administrative lines are an administrator's", p.UID, os.Geteuid())
}

// lockedHandler serialises a Handler fed by several sources.
type lockedHandler struct {
	mu *sync.Mutex
	h  transport.Handler
}

func (l lockedHandler) Line(origin string, n int, data []byte, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.h.Line(origin, n, data, err)
}

func (l lockedHandler) Idle() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.h.Idle()
}

// adminSource is the admin socket's Handler: administrative lines only.
type adminSource struct{ j *judgeStage }

func (a adminSource) Line(origin string, n int, data []byte, err error) {
	j := a.j
	if j.dead {
		return
	}
	var ev event.Event
	if err == nil {
		err = event.DecodeInto(&ev, data)
	}
	if err == nil && !ev.Kind.Administrative() {
		err = fmt.Errorf("the admin socket takes administrative lines (unblock), not %s", ev.Kind)
	}
	if err != nil {
		j.log.Admin("%s line %d: %v (skipped)", origin, n, err)
		return
	}
	// The sensors' line read before this one is judged first.
	j.release()
	// An administrator lifts a block: judge the host afresh and pass the
	// line on to ps-block.
	j.model.Forget(ev.Target, ev.Mode)
	if j.m != nil {
		j.m.unblocksPassed.Inc()
	}
	j.log.Admin("unblock of %s in mode %s from %s passed on", ev.Target, ev.Mode, origin)
	j.write(&ev)
}

func (a adminSource) Idle() { a.j.Idle() }

// judgeStage is the transport.Handler that turns lines into decisions.
type judgeStage struct {
	host    string // names each decision
	log     *alert.Logger
	guard   *guard.Keeper
	model   judge.Model
	trigger int // SCAN_TRIGGER, for the log
	out     *transport.Sink

	dec      event.Decoder
	evs      [2]event.Event // the line held and the line read, by turns
	cur      uint8          // evs[cur] is the line held
	held     held
	prefetch judge.Prefetcher // model's, when it is one
	verdict  judge.Verdict
	buf      []byte
	enc      event.Encoder // the decisions' writer
	failed   chan error    // the first output failure; input stops mattering then
	m        *judgeMetrics // nil without --metrics
	dead     bool

	// Since the last Idle: decisions were written, and one left at once.
	decided, sentOne bool

	lines, hits, bad, refused, decisions uint64
	adminRefused                         uint64 // administrative lines from the sensors' input
}

// ready joins the parts of a judgeStage made of its fields.
func (j *judgeStage) ready() *judgeStage {
	j.prefetch, _ = j.model.(judge.Prefetcher)
	j.enc.Echo(&j.dec)
	return j
}

// held is the line judgeStage read but has not judged yet: its origin and
// number, for messages.
type held struct {
	origin string
	n      int
	set    bool
}

// expireEvery is how many hits pass between sweeps of idle hosts.
const expireEvery = 4096

// Line reads a line and judges the one before it (see held): the table's
// lookups for this line's source are read ahead (judge.Prefetcher), so
// that their cache misses overlap the judging of the line before.
func (j *judgeStage) Line(origin string, n int, data []byte, err error) {
	if j.dead {
		return
	}
	j.lines++
	ev := &j.evs[j.cur^1]
	if err == nil {
		err = j.dec.Decode(ev, data)
	}
	if err != nil {
		j.release()
		j.reject(origin, n, err)
		return
	}
	if ev.Kind == event.KindHit && j.prefetch != nil {
		j.prefetch.Prefetch(ev)
	}
	j.release()
	j.cur ^= 1
	j.held = held{origin: origin, n: n, set: true}
}

// release judges the line held, if any. Whatever else the stage does
// (Idle, an administrative line, a bad line's message) comes after it.
func (j *judgeStage) release() {
	if h := j.held; h.set {
		j.held.set = false
		j.judge(h.origin, h.n, &j.evs[j.cur])
	}
}

// judge acts on a line read.
func (j *judgeStage) judge(origin string, n int, ev *event.Event) {
	if j.dead {
		return
	}
	switch ev.Kind {
	case event.KindHit:
	case event.KindUnblock:
		// Whoever writes the sensors' input (a sensor parsing hostile
		// packets, a captured log) is not an administrator: were this
		// obeyed, a subverted sensor could lift any block.
		j.adminRefused++
		if j.m != nil {
			j.m.adminRefused.Inc()
		}
		if j.log.Allow() {
			j.log.Security("%s line %d: %s of %s in mode %s refused: administrative lines are taken only from the --admin socket, never from the sensors' input", origin, n, ev.Kind, ev.Target, ev.Mode)
		}
		return
	default:
		j.reject(origin, n, fmt.Errorf("ps-judge reads hit lines, not %s", ev.Kind))
		return
	}
	j.hits++
	if j.m != nil {
		j.m.hits.Hit(ev)
	}
	if why := j.guard.Current().Refuse(ev.Src); why != "" {
		j.refused++
		if j.m != nil {
			j.m.protected.Inc()
		}
		if j.log.Allow() {
			// The sensor logged the probe; this says why nothing follows
			// (worded unlike a probe's line, which log watchers count).
			j.log.Attack("Host: %s/%s to %s port: %d ignored: %s", ev.Src, ev.Src, ev.Proto.Upper(), ev.Dport, why)
		}
		return
	}
	j.model.Observe(ev, &j.verdict)
	v := &j.verdict
	switch v.Outcome {
	case judge.Counted:
		if j.log.Allow() {
			j.log.Attack("Host: %s/%s to %s port: %d in mode %s (%d of %d grace hits)", ev.Src, ev.Src, ev.Proto.Upper(), ev.Dport, ev.Mode, v.Hits, j.trigger)
		}
	case judge.Tripped:
		// The decision leaves first: the log lines can wait, the block can't.
		j.decisions++
		if j.m != nil {
			j.m.decision(v.Decision.Kind)
		}
		j.write(&v.Decision)
		// The sensor logged the probe itself: 1.2 logged it once.
		if j.log.Allow() {
			j.log.Attack("Host: %s/%s tripped mode %s after %s (%s port: %d): %s", ev.Src, ev.Src, ev.Mode, alert.Count(v.Hits, "port"), ev.Proto.Upper(), ev.Dport, v.Decision.Kind)
		}
	case judge.Escalated:
		j.decisions++
		if j.m != nil {
			j.m.decision(v.Decision.Kind)
		}
		j.write(&v.Decision)
		if j.log.Allow() {
			j.log.Attack("Host: %s/%s still scanning in mode %s: %d ports, %s said again", ev.Src, ev.Src, ev.Mode, v.Hits, v.Decision.Kind)
		}
	}
	if j.hits%expireEvery == 0 {
		j.model.Expire(ev.Time)
	}
}

func (j *judgeStage) reject(origin string, n int, err error) {
	j.bad++
	if j.m != nil {
		j.m.bad.Inc()
	}
	if j.log.Allow() {
		j.log.Admin("%s line %d: %v (skipped)", origin, n, err)
	}
}

// write sends a decision: the hits still waiting to be read must not delay
// the line that gets a scanner blocked. The first decision since the last
// flush leaves at once; those after it wait for the end of what the input
// had buffered (Idle, at most one read of 64 KiB later), so a flood of
// decisions (spoofed sources) leaves in writes of many lines. The policy
// counts nothing in time: no clock is read per line.
func (j *judgeStage) write(e *event.Event) {
	if e.Host == "" {
		e.Host = j.host
	}
	j.buf = j.enc.Append(j.buf[:0], e)
	if err := j.out.Write(j.buf); err != nil {
		j.fail(err)
		return
	}
	j.decided = true
	if !j.sentOne {
		j.sentOne = true
		j.flush()
	}
}

func (j *judgeStage) flush() {
	if err := j.out.Flush(); err != nil {
		j.fail(err)
	}
}

func (j *judgeStage) Idle() {
	j.release()
	if j.dead {
		return
	}
	j.flush()
	j.sentOne = false
	if j.decided {
		// Decisions were made: say again if they were made with no
		// ignore file (1.2 said so at every hit; this is rate limited).
		j.decided = false
		j.guard.Remind(time.Now())
	}
}

// fail records the first output error. With stdin the reading loop ends at
// EOF; a dead downstream must end it sooner, so stdin is closed too.
func (j *judgeStage) fail(err error) {
	j.dead = true
	select {
	case j.failed <- err:
	default:
	}
	os.Stdin.Close()
}

func (j *judgeStage) summary() {
	hosts, evicted := j.model.Stats()
	j.log.Admin("%s read: %s, %s skipped, %s from protected hosts, %s; %s remembered, %d forgotten for room",
		alert.Count(j.lines, "line"), alert.Count(j.hits, "hit"), alert.Count(j.bad, "bad line"), alert.Count(j.refused, "hit"),
		alert.Count(j.decisions, "decision"), alert.Count(hosts, "host"), evicted)
	if j.adminRefused > 0 {
		j.log.Security("%d administrative line(s) (unblock) refused from the sensors' input: only the --admin socket takes them", j.adminRefused)
	}
}

// natsURL is the NATS server of --listen or --connect, or "".
func natsURL(c *cli.Context) string {
	for _, f := range []string{stage.FlagListen, stage.FlagConnect} {
		if u := c.String(f); fleet.IsURL(u) {
			return u
		}
	}
	return ""
}
