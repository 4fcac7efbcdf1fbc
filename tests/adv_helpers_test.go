package tests

// Helpers of the adversarial suite (issue 7). Unlike the lab's pipeline,
// which passes every line through the test process to record it, these
// stages are joined by real pipes: a flood must meet the programs at full
// speed, and kill -9 must hit the very process that holds the pipe.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/portsentry/pipeline/shared/metrics"
	"github.com/portsentry/pipeline/shared/netlab"
)

// advStage is one running program; its stderr goes to a file so that the
// test can count and search log lines while it runs.
type advStage struct {
	name   string
	cmd    *exec.Cmd
	stderr string // path of the stderr file
	done   chan struct{}
	err    error // Wait's result, once done is closed
}

// advCommand is prog run in namespace ns ("" for the test's own). ip netns
// exec execs the program, so the process is the program itself, and bind
// mounts /etc/netns/NS/resolv.conf over /etc/resolv.conf when it exists.
func advCommand(ns, prog string, args ...string) *exec.Cmd {
	if ns == "" {
		return exec.Command(bin(prog), args...)
	}
	return exec.Command("ip", append([]string{"netns", "exec", ns, bin(prog)}, args...)...)
}

// advStart starts cmd, whose stdin and stdout the caller has set, with its
// stderr in dir/name.err, and kills it in t.Cleanup.
func advStart(t *testing.T, dir, name string, cmd *exec.Cmd) *advStage {
	t.Helper()
	s := &advStage{name: name, cmd: cmd, stderr: filepath.Join(dir, name+".err"), done: make(chan struct{})}
	f, err := os.OpenFile(s.stderr, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = f
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	f.Close()
	go func() { s.err = cmd.Wait(); close(s.done) }()
	t.Cleanup(func() { s.kill() })
	return s
}

// kill sends SIGKILL and waits for the process to be gone.
func (s *advStage) kill() {
	_ = s.cmd.Process.Signal(syscall.SIGKILL)
	<-s.done
}

// stop sends SIGTERM and waits at most limit before SIGKILL.
func (s *advStage) stop(t *testing.T, limit time.Duration) {
	t.Helper()
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(limit):
		t.Errorf("%s did not stop on SIGTERM within %v", s.name, limit)
		s.kill()
	}
}

func (s *advStage) running() bool {
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

// log is the stage's stderr so far.
func (s *advStage) log(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(s.stderr)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// waitLog waits until the stage's stderr contains want.
func (s *advStage) waitLog(t *testing.T, want string, limit time.Duration) {
	t.Helper()
	for end := time.Now().Add(limit); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if strings.Contains(s.log(t), want) {
			return
		}
		if !s.running() {
			break
		}
	}
	t.Fatalf("%s: no %q within %v (running: %v, exit: %v)\n%s", s.name, want, limit, s.running(), s.err, s.log(t))
}

// vmHWM is the stage's peak resident memory in KiB, from /proc.
func (s *advStage) vmHWM() (int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			return strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
		}
	}
	return 0, fmt.Errorf("no VmHWM in /proc/%d/status", s.cmd.Process.Pid)
}

// advPipe joins two stages with a real pipe and returns its ends; the
// caller closes its copies once both processes are started.
func advPipe(t *testing.T) (r, w *os.File) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(); w.Close() })
	return r, w
}

// advConf writes a configuration of the given keys (values quoted, as 1.2
// wrote them) into dir.
func advConf(t *testing.T, dir, name string, keys map[string]string) string {
	t.Helper()
	var b strings.Builder
	for k, v := range keys {
		fmt.Fprintf(&b, "%s=\"%s\"\n", k, v)
	}
	if _, ok := keys["FAST_PATH"]; !ok {
		b.WriteString("FAST_PATH=\"0\"\n") // these tests measure the pipeline
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// advNFT lists the elements of the table's set in namespace ns ("" when
// the table does not exist yet: nothing was ever blocked).
func advNFT(t *testing.T, ns, table, set string) []string {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", ns, "nft", "-j", "list", "set", "inet", table, set).CombinedOutput()
	if err != nil {
		if bytes.Contains(out, []byte("No such file or directory")) {
			return nil
		}
		t.Fatalf("nft list set inet %s %s: %v: %s", table, set, err, out)
	}
	var doc struct {
		Nftables []struct {
			Set *struct {
				Elem []json.RawMessage `json:"elem"`
			} `json:"set"`
		} `json:"nftables"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		t.Fatalf("nft -j output: %v: %s", err, out)
	}
	var addrs []string
	for _, o := range doc.Nftables {
		if o.Set == nil {
			continue
		}
		for _, e := range o.Set.Elem {
			// An element is a plain string, or {"elem":{"val":...,"timeout":...}}.
			var s string
			if json.Unmarshal(e, &s) == nil {
				addrs = append(addrs, s)
				continue
			}
			var w struct {
				Elem struct {
					Val string `json:"val"`
				} `json:"elem"`
			}
			if err := json.Unmarshal(e, &w); err != nil {
				t.Fatalf("nft element %s: %v", e, err)
			}
			addrs = append(addrs, w.Elem.Val)
		}
	}
	return addrs
}

// advNFTAll is both sets of the table.
func advNFTAll(t *testing.T, ns, table string) []string {
	return append(advNFT(t, ns, table, "portsentry4"), advNFT(t, ns, table, "portsentry6")...)
}

// advLines is the lines of a file (none when it does not exist).
func advLines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 2<<20)
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	return out
}

// advDecision is a decision line as ps-judge writes it.
func advDecision(kind, target string, port int) string {
	return fmt.Sprintf(`{"v":1,"kind":"%s","time":"%s","target":"%s","mode":"atcp","proto":"tcp","port":%d,"scan":"syn","hits":1}`+"\n",
		kind, time.Now().UTC().Format(time.RFC3339Nano), target, port)
}

// advRun runs a command with a time limit and fails the test on error.
func advRun(t *testing.T, limit time.Duration, name string, args ...string) string {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		netlab.SkipOrFail(t, "no %s: %v", name, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.WaitDelay = time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v (limit %v): %s", name, strings.Join(args, " "), err, limit, out)
	}
	return string(out)
}

// scrapeIn scrapes a stage's --metrics at addr inside namespace ns with an
// HTTP client whose one connection was dialed there.
func scrapeIn(t *testing.T, ns, addr string) []metrics.Sample {
	t.Helper()
	var conn net.Conn
	var err error
	netlab.InNamespace(t, ns, func() { conn, err = net.DialTimeout("tcp", addr, 5*time.Second) })
	if err != nil {
		t.Fatalf("dial %s in %s: %v", addr, ns, err)
	}
	defer conn.Close()
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext:       func(context.Context, string, string) (net.Conn, error) { return conn, nil },
	}}
	fams, err := metrics.ScrapeWith(client, addr)
	if err != nil {
		t.Fatalf("scrape %s in %s: %v", addr, ns, err)
	}
	return metrics.Samples(fams)
}
