// Package metrics serves a stage's counters to Prometheus (--metrics ADDR,
// off by default) and reads them back (Scrape), for the `stats`
// subcommands and the tests. Names are portsentry_*, counters end in
// _total. Each stage registers its own metrics in its own registry: no
// global state.
package metrics

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/portsentry/pipeline/shared/admin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/urfave/cli/v2"
)

// FlagName is --metrics.
const FlagName = "metrics"

// Flag is --metrics ADDR.
func Flag() cli.Flag {
	return &cli.StringFlag{Name: FlagName, Usage: "serve Prometheus metrics (portsentry_*) over HTTP on `ADDR` (host:port, e.g. 127.0.0.1:9101; off by default) at /metrics"}
}

// Server serves a registry's metrics.
type Server struct {
	srv *http.Server
	ln  net.Listener
}

// Serve listens on addr and serves reg at /metrics until Close.
func Serve(addr string, reg *prometheus.Registry) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	// Bounded: a scraper that never sends its request holds no goroutine
	// for long.
	s := &Server{ln: ln, srv: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second, MaxHeaderBytes: 8 << 10}}
	go func() { _ = s.srv.Serve(ln) }()
	return s, nil
}

// Addr is the address served, with the port chosen when ADDR named 0.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Close stops serving.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	return s.srv.Shutdown(ctx)
}

// NewRegistry is a registry with the Go runtime's and the process's
// collectors beside the stage's.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// Scrape fetches addr's /metrics with an HTTP client and parses it with
// Prometheus' own text parser.
func Scrape(addr string) (map[string]*dto.MetricFamily, error) {
	return ScrapeWith(&http.Client{Timeout: 5 * time.Second}, addr)
}

// ScrapeWith is Scrape through client (a test's, dialing into a network
// namespace).
func ScrapeWith(client *http.Client, addr string) (map[string]*dto.MetricFamily, error) {
	url := addr
	if !strings.Contains(url, "://") {
		url = "http://" + addr + "/metrics"
	}
	resp, err := client.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", url, resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", url, err)
	}
	return fams, nil
}

// Sample is one value of a scraped family: its labels and value (a
// histogram's count of observations).
type Sample struct {
	Name   string            `json:"name"`
	Labels map[string]string `json:"labels"`
	Value  float64           `json:"value"`
}

// Samples lists the portsentry_* samples of fams.
func Samples(fams map[string]*dto.MetricFamily) []Sample {
	var out []Sample
	for name, f := range fams {
		if !strings.HasPrefix(name, "portsentry_") {
			continue
		}
		for _, m := range f.GetMetric() {
			s := Sample{Name: name, Labels: map[string]string{}}
			for _, l := range m.GetLabel() {
				s.Labels[l.GetName()] = l.GetValue()
			}
			switch {
			case m.Counter != nil:
				s.Value = m.GetCounter().GetValue()
			case m.Gauge != nil:
				s.Value = m.GetGauge().GetValue()
			case m.Histogram != nil:
				s.Value = float64(m.GetHistogram().GetSampleCount())
			default:
				continue
			}
			out = append(out, s)
		}
	}
	return out
}

// StatsCommand is a program's `stats` subcommand: the counters of the
// running stage, scraped from its --metrics address; without one, what
// offline reads from the files and the kernel (nil: --metrics is needed),
// with its own flags.
func StatsCommand(prog string, offline func(*cli.Context) ([]Sample, error), flags ...cli.Flag) *cli.Command {
	usage := "show the counters of the running " + prog + " (hits, decisions, results, blocks in force, held back, dropped, bad lines), read from its --metrics address"
	usageText := prog + " stats --metrics ADDR [--json]"
	if offline != nil {
		usage += "; without --metrics, what the records and the kernel hold"
		usageText = prog + " stats [--metrics ADDR] [--json]"
	}
	return &cli.Command{
		Name:      "stats",
		Usage:     usage,
		UsageText: usageText,
		Flags:     append([]cli.Flag{&cli.StringFlag{Name: FlagName, Required: offline == nil, Usage: "the running " + prog + "'s --metrics `ADDR` (host:port)"}, admin.JSONFlag()}, flags...),
		Action: func(c *cli.Context) error {
			var samples []Sample
			if addr := c.String(FlagName); addr != "" {
				fams, err := Scrape(addr)
				if err != nil {
					return cli.Exit(fmt.Sprintf("%s stats: %v (is %s running with --metrics %s?)", prog, err, prog, addr), 1)
				}
				samples = Samples(fams)
			} else {
				var err error
				if samples, err = offline(c); err != nil {
					return cli.Exit(fmt.Sprintf("%s stats: %v", prog, err), 1)
				}
			}
			slices.SortFunc(samples, func(a, b Sample) int {
				return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(labelText(a.Labels), labelText(b.Labels)))
			})
			rows := [][]string{{"COUNTER", "LABELS", "VALUE"}}
			for _, s := range samples {
				rows = append(rows, []string{s.Name, cmp.Or(labelText(s.Labels), "-"), strconv.FormatFloat(s.Value, 'f', -1, 64)})
			}
			return admin.Print(os.Stdout, c.Bool(admin.FlagJSON), samples, rows)
		},
	}
}

func labelText(l map[string]string) string {
	keys := slices.Sorted(maps.Keys(l))
	var parts []string
	for _, k := range keys {
		parts = append(parts, k+"="+l[k])
	}
	return strings.Join(parts, ",")
}
