// Package sensor decides which probes are hits and writes them as event
// lines: a probe is a hit when it is addressed to this host, on a port its
// mode watches, and no socket listens on that port.
package sensor

import (
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/portsentry/pipeline/ps-sniff/decode"
	"github.com/portsentry/pipeline/ps-sniff/listening"
	"github.com/portsentry/pipeline/ps-sniff/probe"
	"github.com/portsentry/pipeline/shared/event"
)

// Watch is the port watch of one mode.
type Watch struct {
	Mode event.Mode
	// Advanced watches every port from 1 to Below-1 except those in Ports
	// (ADVANCED_EXCLUDE_x); stealth watches the ports in Ports.
	Advanced bool
	Below    int
	Ports    listening.Ports
}

// Covers reports whether the watch includes port, before the check for a
// listening socket.
func (w *Watch) Covers(port uint16) bool {
	if w.Advanced {
		return port != 0 && int(port) < w.Below && !w.Ports.Has(port)
	}
	return w.Ports.Has(port)
}

// Writer takes event lines; transport.Sink is one.
type Writer interface {
	Write(line []byte) error
	Flush() error
}

// Sensor turns packets into hit lines. It is not safe for concurrent use.
type Sensor struct {
	TCP, UDP *Watch // nil: mode off
	// IsLocal says whether an address is one of this host's.
	IsLocal   func(netip.Addr) bool
	Listening listening.Source
	Decoder   *decode.Decoder
	Out       Writer
	// FlushEach sends every hit line before anything else is done (live
	// capture: the next packet, or the log line, can wait; the block can't).
	FlushEach bool
	// OnHit, if set, is called after each hit line is written.
	OnHit func(*event.Event)

	// Counters: hits written, probes to other hosts, probes to listening ports.
	Hits, NotLocal, ToListening uint64

	p    probe.Probe
	ev   event.Event
	line []byte
}

// Packet decodes one packet received at ts and writes a hit line if it is one.
func (s *Sensor) Packet(lt decode.LinkType, data []byte, ts time.Time) error {
	if s.Decoder.Decode(lt, data, ts, &s.p) != decode.OK {
		return nil
	}
	w := s.TCP
	if s.p.Proto == probe.ProtoUDP {
		w = s.UDP
	}
	if w == nil || !w.Covers(s.p.Dport) {
		return nil
	}
	if !s.IsLocal(s.p.Dst) {
		s.NotLocal++
		return nil
	}
	if s.Listening.Taken(&s.p, ts) {
		s.ToListening++
		return nil
	}
	s.ev = event.Event{
		Kind: event.KindHit, Time: ts.UTC(), Sensor: "ps-sniff", Mode: w.Mode,
		Proto: w.Mode.Proto(), Src: s.p.Src, Sport: s.p.Sport, Dst: s.p.Dst, Dport: s.p.Dport,
		Scan: scanOf(s.p.Scan),
	}
	if s.p.Proto == probe.ProtoTCP {
		s.ev.Flags = s.p.Flags.String()
	}
	s.line = event.Append(s.line[:0], &s.ev)
	if err := s.Out.Write(s.line); err != nil {
		return fmt.Errorf("hit: %w", err)
	}
	if s.FlushEach {
		if err := s.Out.Flush(); err != nil {
			return fmt.Errorf("hit: %w", err)
		}
	}
	s.Hits++
	if s.OnHit != nil {
		s.OnHit(&s.ev)
	}
	return nil
}

func scanOf(s probe.Scan) event.Scan {
	switch s {
	case probe.ScanSYN:
		return event.ScanSYN
	case probe.ScanFIN:
		return event.ScanFIN
	case probe.ScanNull:
		return event.ScanNull
	case probe.ScanXmas:
		return event.ScanXmas
	case probe.ScanUDP:
		return event.ScanUDP
	}
	return event.ScanOther
}

// HostAddrs is this host's set of addresses, read from the interfaces and
// refreshed by the caller. It is safe for concurrent use.
type HostAddrs struct {
	cur atomic.Pointer[map[netip.Addr]struct{}]
}

// Refresh reads the interface addresses again.
func (h *HostAddrs) Refresh() error {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return fmt.Errorf("host addresses: %w", err)
	}
	m := make(map[netip.Addr]struct{}, len(addrs))
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok {
				m[ip.Unmap()] = struct{}{}
			}
		}
	}
	h.cur.Store(&m)
	return nil
}

// Has reports whether a is one of the addresses last read.
func (h *HostAddrs) Has(a netip.Addr) bool {
	m := h.cur.Load()
	if m == nil {
		return false
	}
	_, ok := (*m)[a.WithZone("")]
	return ok
}

// Learner finds, in a capture file, the ports its host answered: a SYN-ACK
// from a TCP port, a UDP datagram sent back from the port a datagram was
// sent to. In replay they stand for the listening sockets.
type Learner struct {
	IsLocal func(netip.Addr) bool
	Ports   listening.Static
	flows   map[flow]struct{}
}

type flow struct {
	src, dst     netip.Addr
	sport, dport uint16
}

// maxFlows bounds the UDP flows remembered from one file.
const maxFlows = 1 << 20

// Add takes one decoded packet.
func (l *Learner) Add(p *probe.Probe, r decode.Reason) {
	switch {
	case r == decode.AckRst && p.Proto == probe.ProtoTCP && p.Flags&(probe.SYN|probe.ACK|probe.RST) == probe.SYN|probe.ACK:
		if l.IsLocal(p.Src) {
			l.Ports.TCP.Add(p.Sport)
		}
	case r == decode.OK && p.Proto == probe.ProtoUDP:
		if l.flows == nil {
			l.flows = map[flow]struct{}{}
		}
		if _, ok := l.flows[flow{p.Dst, p.Src, p.Dport, p.Sport}]; ok && l.IsLocal(p.Src) {
			l.Ports.UDP.Add(p.Sport)
		}
		if len(l.flows) < maxFlows {
			l.flows[flow{p.Src, p.Dst, p.Sport, p.Dport}] = struct{}{}
		}
	}
}
