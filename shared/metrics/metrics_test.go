package metrics

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// A registry served on loopback is scraped by a real HTTP client and read
// back with Prometheus' text parser: counters, labels, a histogram's count.
func TestServeScrape(t *testing.T) {
	reg := NewRegistry()
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "portsentry_test_total", Help: "t"}, []string{"mode"})
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "portsentry_test_seconds", Help: "t"})
	reg.MustRegister(c, h)
	c.WithLabelValues("atcp").Add(3)
	h.Observe(0.002)
	h.Observe(0.5)
	srv, err := Serve("127.0.0.1:0", reg)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	fams, err := Scrape(srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := fams["go_goroutines"]; !ok {
		t.Error("no go_goroutines: the runtime's collector is missing")
	}
	got := map[string]float64{}
	for _, s := range Samples(fams) {
		got[s.Name+"/"+s.Labels["mode"]] = s.Value
	}
	want := map[string]float64{"portsentry_test_total/atcp": 3, "portsentry_test_seconds/": 2}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v (all: %v)", k, got[k], v, got)
		}
	}
	if len(got) != len(want) {
		t.Errorf("samples %v, want only %v", got, want)
	}
	if _, err := Scrape("127.0.0.1:1"); err == nil {
		t.Error("scraping a closed port: no error")
	}
}
