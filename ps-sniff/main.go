// Command ps-sniff is PortSentry 1.2's stealth (-stcp, -sudp) and advanced
// (-atcp, -audp) modes as a sensor: it watches the packets arriving at this
// host through a packet socket with a kernel filter, or replays a capture
// file, and writes one hit line for every probe on a watched port. It needs
// root (CAP_NET_RAW) only to open the socket and then drops to RUN_AS_USER.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/portsentry/pipeline/ps-sniff/capture"
	"github.com/portsentry/pipeline/ps-sniff/decode"
	"github.com/portsentry/pipeline/ps-sniff/frag"
	"github.com/portsentry/pipeline/ps-sniff/listening"
	"github.com/portsentry/pipeline/ps-sniff/pcapfile"
	"github.com/portsentry/pipeline/ps-sniff/probe"
	"github.com/portsentry/pipeline/ps-sniff/sensor"
	"github.com/portsentry/pipeline/shared/alert"
	"github.com/portsentry/pipeline/shared/config"
	"github.com/portsentry/pipeline/shared/event"
	"github.com/portsentry/pipeline/shared/fleet"
	"github.com/portsentry/pipeline/shared/metrics"
	"github.com/portsentry/pipeline/shared/privdrop"
	"github.com/portsentry/pipeline/shared/stage"
	"github.com/portsentry/pipeline/shared/transport"
)

// refreshEvery is how often the listening sockets and the host's addresses
// are read again in the background; a probe newer than the reading is also
// checked with the kernel first (listening.Watcher.Taken).
const refreshEvery = 500 * time.Millisecond

// dropReportEvery is how often ps-sniff says what the kernel dropped.
const dropReportEvery = 10 * time.Second

func main() {
	app := &cli.App{
		Name:      "ps-sniff",
		Usage:     "detect stealth scans from raw packets and report every probe on a watched port",
		UsageText: "ps-sniff -atcp -audp | ps-judge | ps-block\n   ps-sniff -stcp -i eth0 --connect /run/portsentry/judge.sock\n   ps-sniff -atcp -r scan.pcap --addr 198.18.0.2",
		Flags: append(stage.ConfigFlags(), stage.ConnectFlag(),
			&cli.BoolFlag{Name: "stcp", Usage: "stealth TCP mode: watch TCP_PORTS without binding them"},
			&cli.BoolFlag{Name: "sudp", Usage: "stealth UDP mode: watch UDP_PORTS without binding them"},
			&cli.BoolFlag{Name: "atcp", Usage: "advanced TCP mode: watch every port below ADVANCED_PORTS_TCP that no daemon listens on"},
			&cli.BoolFlag{Name: "audp", Usage: "advanced UDP mode: watch every port below ADVANCED_PORTS_UDP that no socket is bound to"},
			&cli.StringFlag{Name: "i", Usage: "capture on interface `IFACE` only (default: every interface but loopback)"},
			&cli.BoolFlag{Name: "loopback", Usage: "capture on the loopback interface too"},
			&cli.StringFlag{Name: "r", Usage: "replay the pcap or pcapng `FILE` instead of capturing"},
			&cli.StringSliceFlag{Name: "addr", Usage: "with -r: this host's `ADDRESS`es (default: every destination in the file)"},
			metrics.Flag(),
		),
		Action: run,
	}
	stage.Main(app)
}

func run(c *cli.Context) error {
	if c.Bool("stcp") && c.Bool("atcp") || c.Bool("sudp") && c.Bool("audp") {
		return stage.Fatal("one TCP mode and one UDP mode per process at most")
	}
	if !c.Bool("stcp") && !c.Bool("atcp") && !c.Bool("sudp") && !c.Bool("audp") {
		return stage.Fatal("no mode: give -stcp or -atcp, and/or -sudp or -audp")
	}
	if c.IsSet("addr") && c.String("r") == "" {
		return stage.Fatal("--addr only applies to -r")
	}
	cfg, log, err := stage.Setup(c, "ps-sniff")
	if err != nil {
		return stage.Fatal("%v", err)
	}
	defer log.Close()
	log.Admin("portsentry is starting.")
	// Listening now, before privileges go: ADDR may be a port below 1024.
	m, srv, err := serveMetrics(c)
	if err != nil {
		return stage.Fatal("%v", err)
	}
	if srv != nil {
		defer srv.Close()
		log.Admin("serving Prometheus metrics on http://%s/metrics", srv.Addr())
	}
	s := &sensor.Sensor{
		TCP:     watch(cfg, c.Bool("stcp"), c.Bool("atcp"), event.ModeSTCP, event.ModeATCP),
		UDP:     watch(cfg, c.Bool("sudp"), c.Bool("audp"), event.ModeSUDP, event.ModeAUDP),
		Decoder: decode.New(frag.DefaultLimits),
		OnHit: func(e *event.Event) {
			log.AttackLimited("%s from host: %s/%s to %s port: %d", e.Scan.Describe(), e.Src, e.Src, e.Proto.Upper(), e.Dport)
			m.hitsOf().Hit(e)
		},
	}
	for _, w := range []*sensor.Watch{s.TCP, s.UDP} {
		if w != nil && !w.Advanced && len(w.Ports.List()) == 0 {
			key := w.Mode.Proto().Upper() + "_PORTS"
			return stage.Fatal("%v", cfg.KeyError(key, fmt.Errorf("empty: no %s port to watch in mode %s", w.Mode.Proto().Upper(), w.Mode)))
		}
	}
	if file := c.String("r"); file != "" {
		err = replay(c, cfg, log, s, file)
	} else {
		err = live(c, cfg, log, s, m)
	}
	if err != nil {
		return stage.Fatal("%v", err)
	}
	return nil
}

// logSummary says what the sensor saw, once it has watched at all.
func logSummary(log *alert.Logger, s *sensor.Sensor) {
	st := &s.Decoder.Stats
	log.Admin("%s; %s to other hosts, %d to listening ports; %d reassembled, %s expired, %s with bad TCP options",
		alert.Count(s.Hits, "hit"), alert.Count(s.NotLocal, "probe"), s.ToListening, st.Reassembled,
		alert.Count(st.FragExpired, "fragment queue"), alert.Count(st.TCPBadOptions, "probe"))
	st.Each(func(r decode.Reason, n uint64) {
		if r.Malformed() {
			log.Admin("%s dropped as %s", alert.Count(n, "packet"), r)
		}
	})
}

// privilegeHint makes a packet socket refused for want of privilege say
// what is needed.
func privilegeHint(err error) error {
	if errors.Is(err, os.ErrPermission) {
		return fmt.Errorf("%w: capturing packets needs root or the CAP_NET_RAW capability "+
			"(sudo, or systemd's AmbientCapabilities=CAP_NET_RAW as in contrib/systemd/ps-sniff.service; "+
			"-r FILE replays a capture without either)", err)
	}
	return err
}

// watch builds the watch of the mode asked for, nil when neither is.
func watch(cfg *config.Config, stealth, advanced bool, sm, am event.Mode) *sensor.Watch {
	ports, below, exclude := cfg.TCPPorts, cfg.AdvancedPortsTCP, cfg.AdvancedExcludeTCP
	if sm == event.ModeSUDP {
		ports, below, exclude = cfg.UDPPorts, cfg.AdvancedPortsUDP, cfg.AdvancedExcludeUDP
	}
	w := &sensor.Watch{Mode: sm}
	switch {
	case advanced:
		w.Mode, w.Advanced, w.Below, ports = am, true, below, exclude
	case !stealth:
		return nil
	}
	for _, p := range ports {
		w.Ports.Add(p)
	}
	return w
}

// filter passes the ports the watches can report, nothing above them.
func filter(s *sensor.Sensor) capture.Filter {
	below := func(w *sensor.Watch) int {
		if w.Advanced {
			return w.Below
		}
		ps := w.Ports.List()
		return int(ps[len(ps)-1]) + 1
	}
	var f capture.Filter
	if s.TCP != nil {
		f.TCP, f.TCPBelow = true, below(s.TCP)
	}
	if s.UDP != nil {
		f.UDP, f.UDPBelow = true, below(s.UDP)
	}
	return f
}

// startLines logs what each mode watches, as 1.2 did at start.
func startLines(log *alert.Logger, s *sensor.Sensor, at time.Time) {
	for _, w := range []*sensor.Watch{s.TCP, s.UDP} {
		if w == nil {
			continue
		}
		proto := probe.ProtoTCP
		if w.Mode.Proto() == event.ProtoUDP {
			proto = probe.ProtoUDP
		}
		up := w.Mode.Proto().Upper()
		if w.Advanced {
			log.Admin("Advanced mode will monitor first %d ports", w.Below)
			for _, p := range w.Ports.List() {
				log.Admin("Advanced mode will manually exclude port: %d", p)
			}
			for p := 1; p < w.Below; p++ {
				if w.Covers(uint16(p)) && s.Listening.Listening(proto, uint16(p), at) {
					log.Admin("Advanced Stealth scan detection mode activated. Ignored %s port: %d", up, p)
				}
			}
			continue
		}
		for _, p := range w.Ports.List() {
			if s.Listening.Listening(proto, p, at) {
				log.Admin("Stealth scan detection mode activated. Ignored %s port: %d (in use)", up, p)
			} else {
				log.Admin("Going into stealth listen mode on %s port: %d", up, p)
			}
		}
	}
}

func live(c *cli.Context, cfg *config.Config, log *alert.Logger, s *sensor.Sensor, m *sniffMetrics) error {
	h, err := capture.Open(capture.Config{
		Interface: c.String("i"),
		Loopback:  c.Bool("loopback"),
		Filter:    filter(s),
	})
	if err != nil {
		return privilegeHint(err)
	}
	defer h.Close()
	lw, fallback, err := listening.NewKernelWatcher(s.TCP != nil, s.UDP != nil)
	if err != nil {
		return err
	}
	if fallback != "" {
		log.Admin("reading listening ports from /proc/net, slower: %s", fallback)
	}
	lw.OnError = func(err error) { log.Admin("%v", err) }
	var addrs sensor.HostAddrs
	if err := addrs.Refresh(); err != nil {
		return err
	}
	// --connect dials now, while the socket's group still lets it in.
	out, err := stage.Output(c, cfg, log, fleet.Hits)
	if err != nil {
		return err
	}
	defer out.Close()
	// Privileges go before anything reads from the network.
	msg, err := privdrop.To(cfg.RunAsUser)
	if err != nil {
		return err
	}
	log.Admin("%s", msg)
	s.Listening, s.IsLocal = lw, addrs.Has
	s.Out, s.FlushEach = out, true

	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer cancel()
	go lw.Run(ctx, refreshEvery)
	go func() {
		t := time.NewTicker(refreshEvery)
		defer t.Stop()
		var received, dropped uint64
		lastReport := time.Now()
		// The kernel's counters reset on each reading: add them up and say
		// what a flood made it drop, every 10 s at most and at the end.
		read := func() {
			if r, d, err := h.Stats(); err == nil {
				received, dropped = received+uint64(r), dropped+uint64(d)
				m.capture(r, d)
			}
		}
		report := func(now time.Time) {
			read()
			if dropped > 0 {
				log.Security("the kernel dropped %d of %d packets for ps-sniff in the last %v: probes may have gone unseen", dropped, received, now.Sub(lastReport).Round(time.Second))
			}
			received, dropped, lastReport = 0, 0, now
		}
		for {
			select {
			case <-ctx.Done():
				report(time.Now())
				h.Close() // wakes the read loop
				return
			case now := <-t.C:
				if err := addrs.Refresh(); err != nil {
					log.Admin("%v", err)
				}
				if now.Sub(lastReport) >= dropReportEvery {
					report(now)
				} else {
					read()
				}
			}
		}
	}()
	startLines(log, s, time.Now())
	log.Admin("PortSentry is now active and listening.")
	defer logSummary(log, s)
	err = readLoop(h, s)
	if ctx.Err() != nil && errors.Is(err, os.ErrClosed) {
		log.Admin("stopping on signal")
		return nil
	}
	if errors.Is(err, transport.ErrDownstreamClosed) {
		return fmt.Errorf("%w: stopping", err)
	}
	return err
}

// readLoop handles packets as they come; the sensor sends each hit the
// moment it is made (FlushEach): during a scan the next packet is always
// pending, and waiting for a pause would hold back the very hit that gets
// the scanner blocked.
func readLoop(h *capture.Handle, s *sensor.Sensor) error {
	for {
		pkt, err := h.Read(false)
		if errors.Is(err, capture.ErrWouldBlock) {
			s.Decoder.Sweep(time.Now())
			pkt, err = h.Read(true)
		}
		if err != nil {
			return err
		}
		if err := s.Packet(decode.LinkRaw, pkt.Data, pkt.Time); err != nil {
			return err
		}
	}
}

func replay(c *cli.Context, cfg *config.Config, log *alert.Logger, s *sensor.Sensor, file string) error {
	isLocal := func(netip.Addr) bool { return true }
	if list := c.StringSlice("addr"); len(list) > 0 {
		set := map[netip.Addr]bool{}
		for _, a := range list {
			ip, err := netip.ParseAddr(a)
			if err != nil {
				return fmt.Errorf("--addr %q: %w", a, err)
			}
			set[ip.Unmap()] = true
		}
		isLocal = func(a netip.Addr) bool { return set[a] }
	}
	// First pass: the ports the host answered stand for its listening sockets.
	learn := &sensor.Learner{IsLocal: isLocal}
	d := decode.New(frag.DefaultLimits)
	var p probe.Probe
	if err := eachPacket(file, func(lt decode.LinkType, data []byte, ts time.Time) error {
		learn.Add(&p, d.Decode(lt, data, ts, &p))
		return nil
	}); err != nil {
		return err
	}
	s.Listening, s.IsLocal = &learn.Ports, isLocal
	out, err := stage.Output(c, cfg, log, fleet.Hits)
	if err != nil {
		return err
	}
	defer out.Close()
	s.Out = out
	startLines(log, s, time.Time{})
	log.Admin("replaying %s", file)
	defer logSummary(log, s)
	if err := eachPacket(file, s.Packet); err != nil {
		return err
	}
	return out.Flush()
}

func eachPacket(file string, fn func(decode.LinkType, []byte, time.Time) error) error {
	r, err := pcapfile.Open(file)
	if err != nil {
		return err
	}
	defer r.Close()
	for {
		data, ts, err := r.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if err := fn(r.Link(), data, ts); err != nil {
			return err
		}
	}
}
