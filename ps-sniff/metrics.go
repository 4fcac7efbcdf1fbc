package main

import (
	"github.com/portsentry/pipeline/shared/metrics"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/urfave/cli/v2"
)

// sniffMetrics are ps-sniff's counters for Prometheus (--metrics); nil
// without it, and then counts nothing.
type sniffMetrics struct {
	hits             *metrics.Hits
	packets, dropped prometheus.Counter
}

// serveMetrics serves ps-sniff's counters on --metrics ADDR, if given.
func serveMetrics(c *cli.Context) (*sniffMetrics, *metrics.Server, error) {
	addr := c.String(metrics.FlagName)
	if addr == "" {
		return nil, nil, nil
	}
	reg := metrics.NewRegistry()
	m := &sniffMetrics{
		hits: metrics.NewHits(reg, "Hits written by ps-sniff, by mode and scan type."),
		packets: prometheus.NewCounter(prometheus.CounterOpts{Name: "portsentry_capture_packets_total",
			Help: "Packets that passed ps-sniff's kernel filter, the dropped ones included (PACKET_STATISTICS)."}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{Name: "portsentry_capture_drops_total",
			Help: "Packets the kernel dropped for want of room in ps-sniff's socket buffer (PACKET_STATISTICS): probes that may have gone unseen."}),
	}
	reg.MustRegister(m.packets, m.dropped)
	srv, err := metrics.Serve(addr, reg)
	if err != nil {
		return nil, nil, err
	}
	return m, srv, nil
}

// hitsOf is m's hits counter, nil (counting nothing) without --metrics.
func (m *sniffMetrics) hitsOf() *metrics.Hits {
	if m == nil {
		return nil
	}
	return m.hits
}

// capture adds a reading of the kernel's counters (they reset on reading).
func (m *sniffMetrics) capture(received, dropped uint32) {
	if m == nil {
		return
	}
	m.packets.Add(float64(received))
	m.dropped.Add(float64(dropped))
}
