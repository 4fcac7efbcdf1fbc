package main

import (
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"

	"github.com/portsentry/pipeline/ps-block/blocker"
	"github.com/prometheus/client_golang/prometheus"
)

// blockMetrics are ps-block's counters for Prometheus (--metrics); it is
// the blocker's Observer.
type blockMetrics struct {
	results       *prometheus.CounterVec
	reaction      *prometheus.HistogramVec
	held, dropped prometheus.Counter
}

func newBlockMetrics(reg prometheus.Registerer) *blockMetrics {
	m := &blockMetrics{
		results: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "portsentry_results_total",
			Help: "Result lines of ps-block, by action (nft, hosts.deny, route, run, block, input) and outcome (ok, failed)."}, []string{"action", "outcome"}),
		// From 1 ms to about 65 s: a pipeline answers in milliseconds; a
		// rate-limited flood's last blocks wait far longer.
		reaction: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "portsentry_reaction_seconds",
			Help:    "Time from the hit that tripped a decision (its time) to ps-block's result for it, by action.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 17)}, []string{"action"}),
		held: prometheus.NewCounter(prometheus.CounterOpts{Name: "portsentry_held_back_total",
			Help: "New blocks held back by the rate limit (BLOCK_RATE)."}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{Name: "portsentry_dropped_total",
			Help: "Held-back blocks dropped: more waited than the queue keeps."}),
	}
	reg.MustRegister(m.results, m.reaction, m.held, m.dropped)
	return m
}

// watch registers what is read from the blocker and the kernel at each
// scrape; table is NFT_TABLE ("": no nftables action).
func (m *blockMetrics) watch(reg prometheus.Registerer, b *blocker.Blocker, table string) {
	if table != "" {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "portsentry_kernel_drops_total",
			Help: "Packets dropped by the rules of ps-block's block sets (the counters of table inet NFT_TABLE)."}, kernelDrops(table)))
	}
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "portsentry_blocks_in_force",
			Help: "Records in force in ps-block (blocks, runs, alerts), one per host and mode."}, func() float64 { return float64(b.InForce()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "portsentry_bad_lines_total",
			Help: "Input lines ps-block could not read (refused).", ConstLabels: prometheus.Labels{"stage": "ps-block"}}, func() float64 { return float64(b.BadLines()) }),
	)
}

func (m *blockMetrics) Result(action string, ok bool) {
	m.results.WithLabelValues(action, map[bool]string{true: "ok", false: "failed"}[ok]).Inc()
}

func (m *blockMetrics) Reaction(action string, d time.Duration) {
	m.reaction.WithLabelValues(action).Observe(d.Seconds())
}

// kernelDrops is the packets the block sets' drop rules dropped, read from
// their counters in ps-block's table (its input and forward chains) at each
// scrape; 0 while the table does not exist.
func kernelDrops(table string) func() float64 {
	return func() float64 {
		conn, err := nftables.New()
		if err != nil {
			return 0
		}
		defer conn.CloseLasting()
		t := &nftables.Table{Name: table, Family: nftables.TableFamilyINet}
		var n uint64
		for _, chain := range []string{"input", "forward"} {
			rules, err := conn.GetRules(t, &nftables.Chain{Name: chain, Table: t})
			if err != nil {
				continue
			}
			for _, r := range rules {
				for _, e := range r.Exprs {
					if c, ok := e.(*expr.Counter); ok {
						n += c.Packets
					}
				}
			}
		}
		return float64(n)
	}
}
