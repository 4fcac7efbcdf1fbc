package tests

import (
	"net"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/portsentry/pipeline/shared/event"
	"github.com/portsentry/pipeline/shared/netlab"
)

// TestLabClassic: ps-listen -tcp -udp, 1.2's classic mode, with
// PORT_BANNER. A TCP connection to a tripwire port (IPv4) gets the banner
// and blocks the client; a UDP datagram to another (IPv6, from the other
// address, since the first is blocked by then) blocks its sender. Both end
// in the nft sets, hosts.deny and HISTORY_FILE, which fail2ban reads.
func TestLabClassic(t *testing.T) {
	const banner = "** UNAUTHORIZED ACCESS PROHIBITED *** YOUR CONNECTION ATTEMPT HAS BEEN LOGGED. GO AWAY."
	e := newLab(t)
	conf := e.writeConf(t, "lab.conf", map[string]string{
		"TCP_PORTS":   "1,11,15,79,111",
		"UDP_PORTS":   "1,7,9,635",
		"PORT_BANNER": banner,
	})
	p := e.startPipeline(t, conf, "ps-listen", "-tcp", "-udp")

	got, err := e.dial(t, e.Scanner4, 79, 5*time.Second)
	if err != nil || got != banner {
		t.Errorf("connect to tripwire port 79: read %q, %v; want the banner", got, err)
	}
	d := waitBlocked(t, p, e.Scanner4, event.ModeTCP)
	if d.Port != 79 || d.Scan != event.ScanConnect {
		t.Errorf("decision %s %s; want port 79, connect", decisionKey(d), d.Scan)
	}

	sendUDP(t, e, netip.AddrPortFrom(e.Scanner6, 0), netip.AddrPortFrom(e.Sensor6, 635), "probe")
	d = waitBlocked(t, p, e.Scanner6, event.ModeUDP)
	if d.Port != 635 || d.Scan != event.ScanUDP {
		t.Errorf("decision %s %s; want port 635, udp", decisionKey(d), d.Scan)
	}

	for _, h := range p.hits.events(t) {
		want := event.Event{Mode: event.ModeTCP, Src: e.Scanner4, Dst: e.Sensor4, Dport: 79, Scan: event.ScanConnect}
		if h.Proto == event.ProtoUDP {
			want = event.Event{Mode: event.ModeUDP, Src: e.Scanner6, Dst: e.Sensor6, Dport: 635, Scan: event.ScanUDP}
		}
		if h.Mode != want.Mode || h.Src != want.Src || h.Dst != want.Dst || h.Dport != want.Dport || h.Scan != want.Scan {
			t.Errorf("hit %s %s > %s:%d %s; want %s %s > %s:%d %s", h.Mode, h.Src, h.Dst, h.Dport, h.Scan,
				want.Mode, want.Src, want.Dst, want.Dport, want.Scan)
		}
	}
	e.assertBlockedOnly(t, p, e.Scanner4, e.Scanner6)
	assertFail2ban(t, filepath.Join(e.dir, "history"), e.Scanner4, e.Scanner6)
}

// sendUDP sends one datagram from the scanner's namespace.
func sendUDP(t *testing.T, e *labEnv, from, to netip.AddrPort, payload string) {
	t.Helper()
	netlab.InNamespace(t, e.Scanner, func() {
		c, err := net.DialUDP("udp", net.UDPAddrFromAddrPort(from), net.UDPAddrFromAddrPort(to))
		if err != nil {
			t.Fatalf("udp %s > %s: %v", from, to, err)
		}
		defer c.Close()
		if _, err := c.Write([]byte(payload)); err != nil {
			t.Fatalf("udp %s > %s: %v", from, to, err)
		}
	})
}
