package main

import (
	"github.com/portsentry/pipeline/shared/event"
	"github.com/portsentry/pipeline/shared/metrics"
	"github.com/prometheus/client_golang/prometheus"
)

// judgeMetrics are ps-judge's counters for Prometheus (--metrics). The
// children are resolved once, so a hit costs one atomic add, no lookup.
type judgeMetrics struct {
	hits                                         *metrics.Hits
	decisions                                    [event.KindRun + 1]prometheus.Counter
	bad, protected, adminRefused, unblocksPassed prometheus.Counter
}

func newJudgeMetrics(reg prometheus.Registerer) *judgeMetrics {
	m := &judgeMetrics{}
	m.hits = metrics.NewHits(reg, "Hits read by ps-judge, by the sensor's mode and the scan type.")
	decisions := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "portsentry_decisions_total",
		Help: "Decisions written by ps-judge, by kind (alert, block, run)."}, []string{"kind"})
	for _, k := range []event.Kind{event.KindAlert, event.KindBlock, event.KindRun} {
		m.decisions[k] = decisions.WithLabelValues(k.String())
	}
	m.bad = prometheus.NewCounter(prometheus.CounterOpts{Name: "portsentry_bad_lines_total",
		Help: "Input lines ps-judge could not read (skipped).", ConstLabels: prometheus.Labels{"stage": "ps-judge"}})
	m.protected = prometheus.NewCounter(prometheus.CounterOpts{Name: "portsentry_hits_protected_total",
		Help: "Hits from hosts the guard protects (the ignore file, this host's own addresses): never decided."})
	m.adminRefused = prometheus.NewCounter(prometheus.CounterOpts{Name: "portsentry_admin_lines_refused_total",
		Help: "Administrative lines (unblock) refused because they came from the sensors' input."})
	m.unblocksPassed = prometheus.NewCounter(prometheus.CounterOpts{Name: "portsentry_unblocks_total",
		Help: "Unblocks taken from the --admin socket and passed on to ps-block."})
	reg.MustRegister(decisions, m.bad, m.protected, m.adminRefused, m.unblocksPassed)
	return m
}

func (m *judgeMetrics) decision(k event.Kind) {
	if int(k) < len(m.decisions) && m.decisions[k] != nil {
		m.decisions[k].Inc()
	}
}
