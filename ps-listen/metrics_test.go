package main

import (
	"net/netip"
	"regexp"
	"strings"
	"testing"

	"github.com/portsentry/pipeline/shared/metrics"
)

// TestBinaryMetrics: with --metrics, ps-listen serves the hits it wrote by
// mode and scan type, scraped over HTTP and parsed by Prometheus' parser,
// and still serves them once it has dropped its privileges.
func TestBinaryMetrics(t *testing.T) {
	bin := build(t)
	ports := freePorts(t, 2)
	conf := writeConfig(t, `TCP_PORTS="`+portList(ports[:1])+`"`, `UDP_PORTS="`+portList(ports[1:])+`"`)
	p := startProc(t, bin, "-tcp", "-udp", "-c", conf, "--metrics", "127.0.0.1:0")
	p.waitActive(t)
	m := regexp.MustCompile(`serving Prometheus metrics on http://(\S+)/metrics`).FindStringSubmatch(p.stderr.String())
	if m == nil {
		t.Fatalf("no metrics address in\n%s", p.stderr)
	}
	hits := readHits(t, p.out)
	tcp := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), ports[0]).String()
	udp := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), ports[1]).String()
	for _, pr := range []struct{ proto, addr string }{{"tcp", tcp}, {"tcp", tcp}, {"udp", udp}} {
		probe(t, pr.proto, pr.addr)
		nextHit(t, hits) // counted once written
	}
	fams, err := metrics.Scrape(m[1])
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, s := range metrics.Samples(fams) {
		if s.Name == "portsentry_hits_total" && s.Value != 0 {
			got[s.Labels["mode"]+" "+s.Labels["scan"]] = s.Value
		}
	}
	want := map[string]float64{"tcp connect": 2, "udp udp": 1}
	if len(got) != len(want) || got["tcp connect"] != 2 || got["udp udp"] != 1 {
		t.Errorf("portsentry_hits_total = %v, want %v", got, want)
	}
	if _, ok := fams["portsentry_hits_total"]; !ok || !strings.Contains(fams["portsentry_hits_total"].GetHelp(), "ps-listen") {
		t.Errorf("portsentry_hits_total missing or its help does not name ps-listen: %v", fams["portsentry_hits_total"])
	}
}
