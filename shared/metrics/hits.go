package metrics

import (
	"github.com/portsentry/pipeline/shared/event"
	"github.com/prometheus/client_golang/prometheus"
)

// Hits is portsentry_hits_total{mode,scan}, the hits a stage wrote (the
// sensors) or read (ps-judge). The children are resolved once, so a hit
// costs one atomic add, no lookup.
type Hits struct {
	c [event.ModeAUDP + 1][event.ScanOther + 1]prometheus.Counter
}

// NewHits registers the hits counter of stage (its Help names it).
func NewHits(reg prometheus.Registerer, help string) *Hits {
	h := &Hits{}
	vec := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "portsentry_hits_total", Help: help}, []string{"mode", "scan"})
	for _, mode := range event.Modes {
		for s := event.ScanConnect; s <= event.ScanOther; s++ {
			h.c[mode][s] = vec.WithLabelValues(mode.String(), s.String())
		}
	}
	reg.MustRegister(vec)
	return h
}

// Hit counts ev; a nil Hits (no --metrics) counts nothing.
func (h *Hits) Hit(ev *event.Event) {
	if h == nil || int(ev.Mode) >= len(h.c) || int(ev.Scan) >= len(h.c[0]) {
		return
	}
	if c := h.c[ev.Mode][ev.Scan]; c != nil {
		c.Inc()
	}
}
