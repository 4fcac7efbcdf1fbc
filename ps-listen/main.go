// Command ps-listen is PortSentry 1.2's classic -tcp and -udp modes as a
// sensor: it binds the tripwire ports of TCP_PORTS and UDP_PORTS on every
// local address, IPv4 and IPv6, and writes one hit line for each connection
// accepted or datagram received. It needs root (or CAP_NET_BIND_SERVICE) only
// to bind ports below 1024 and drops to RUN_AS_USER once they are bound.
package main

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/portsentry/pipeline/shared/alert"
	"github.com/portsentry/pipeline/shared/config"
	"github.com/portsentry/pipeline/shared/event"
	"github.com/portsentry/pipeline/shared/fleet"
	"github.com/portsentry/pipeline/shared/metrics"
	"github.com/portsentry/pipeline/shared/privdrop"
	"github.com/portsentry/pipeline/shared/stage"
	"github.com/portsentry/pipeline/shared/transport"
	"github.com/urfave/cli/v2"
)

func main() {
	app := &cli.App{
		Name:      "ps-listen",
		Usage:     "bind PortSentry's tripwire ports and report every connection and datagram",
		UsageText: "ps-listen -tcp -udp | ps-judge | ps-block\n   ps-listen -tcp -c /etc/portsentry/portsentry.conf --connect /run/portsentry/judge.sock",
		Flags: append(stage.ConfigFlags(), stage.ConnectFlag(),
			&cli.BoolFlag{Name: "tcp", Usage: "basic port-bound TCP mode: bind TCP_PORTS"},
			&cli.BoolFlag{Name: "udp", Usage: "basic port-bound UDP mode: bind UDP_PORTS"},
			metrics.Flag(),
		),
		Action: run,
	}
	stage.Main(app)
}

func run(c *cli.Context) error {
	if !c.Bool("tcp") && !c.Bool("udp") {
		return stage.Fatal("no mode: give -tcp, -udp or both")
	}
	cfg, log, err := stage.Setup(c, "ps-listen")
	if err != nil {
		return stage.Fatal("%v", err)
	}
	defer log.Close()
	log.Admin("portsentry is starting.")

	socks, err := bindModes(cfg, log, c.Bool("tcp"), c.Bool("udp"))
	if err != nil {
		return stage.Fatal("%v", err)
	}
	// --connect dials now, while the socket's group still lets it in.
	out, err := stage.Output(c, cfg, log, fleet.Hits)
	if err != nil {
		closeAll(socks)
		return err
	}
	defer out.Close()
	// Listening now, before privileges go: ADDR may be a port below 1024.
	var hits *metrics.Hits // nil without --metrics: counts nothing
	if addr := c.String(metrics.FlagName); addr != "" {
		reg := metrics.NewRegistry()
		hits = metrics.NewHits(reg, "Hits written by ps-listen, by mode and scan type.")
		srv, err := metrics.Serve(addr, reg)
		if err != nil {
			closeAll(socks)
			return stage.Fatal("%v", err)
		}
		defer srv.Close()
		log.Admin("serving Prometheus metrics on http://%s/metrics", srv.Addr())
	}
	// Privileges go before anything reads from the network.
	msg, err := privdrop.To(cfg.RunAsUser)
	if err != nil {
		closeAll(socks)
		return stage.Fatal("%v", err)
	}
	log.Admin("%s", msg)

	s, err := newSensor(socks, out, log, cfg.PortBanner, c.String(stage.FlagConnect) == "")
	if err != nil {
		return stage.Fatal("%v", err)
	}
	defer s.Close()
	s.hits = hits

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sig)
	done, watched := make(chan struct{}), make(chan struct{})
	stopped := make(chan os.Signal, 1)
	go func() {
		defer close(watched)
		select {
		case v := <-sig:
			stopped <- v
			s.Stop()
		case <-done:
		}
	}()

	log.Admin("PortSentry is now active and listening.")
	err = s.Run()
	close(done)
	<-watched // no Stop may reach the sensor once it is closed
	if err != nil {
		if errors.Is(err, transport.ErrDownstreamClosed) {
			return stage.Fatal("%v: stopping", err)
		}
		return stage.Fatal("%v", err)
	}
	log.Admin("stopping on %v", <-stopped)
	return nil
}

// bindModes binds the ports of each mode asked for. An empty port list of a
// mode asked for is an error; ports already in use are skipped, and a mode
// that gets none of its ports is a loud warning while the other mode runs:
// only when no port at all could be bound does ps-listen stop.
func bindModes(cfg *config.Config, log *alert.Logger, tcp, udp bool) ([]*socket, error) {
	release, err := reserveFDs(spareFDs)
	if err != nil {
		return nil, err
	}
	defer release()
	b := newBinder()
	if !b.v6 {
		log.Admin("no IPv6 on this host: watching IPv4 only")
	}
	logf := func(f string, a ...any) { log.Admin(f, a...) }
	var (
		socks []*socket
		none  []string // the modes that got no port
	)
	for _, m := range []struct {
		on    bool
		proto event.Proto
		ports []uint16
		key   string
	}{
		{tcp, event.ProtoTCP, cfg.TCPPorts, "TCP_PORTS"},
		{udp, event.ProtoUDP, cfg.UDPPorts, "UDP_PORTS"},
	} {
		if !m.on {
			continue
		}
		if len(m.ports) == 0 {
			closeAll(socks)
			return nil, cfg.KeyError(m.key, fmt.Errorf("empty: no %s port to watch", m.proto.Upper()))
		}
		bound := bindAll(b, m.proto, m.ports, logf)
		if len(bound) == 0 {
			none = append(none, fmt.Sprintf("could not bind ANY %s sockets (%s in %s)", m.proto.Upper(), alert.Count(len(m.ports), "port"), m.key))
		}
		socks = append(socks, bound...)
	}
	if len(socks) == 0 {
		return nil, fmt.Errorf("%s. Shutting down", strings.Join(none, "; "))
	}
	for _, msg := range none {
		log.Security("%s: that mode watches nothing, the other goes on", msg)
	}
	return socks, nil
}
