package tests

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

func writeFile(t *testing.T, dir, name, text string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func hitLine(src string, port int, at time.Time) string {
	return fmt.Sprintf(`{"v":1,"kind":"hit","time":"%s","sensor":"test","mode":"atcp","proto":"tcp","src":"%s","sport":40000,"dst":"198.18.0.2","dport":%d,"scan":"syn","flags":"S"}`+"\n",
		at.UTC().Format(time.RFC3339Nano), src, port)
}

// TestReplayDeterministic replays the same generated log three times: the
// decisions must be byte for byte the same.
func TestReplayDeterministic(t *testing.T) {
	dir := t.TempDir()
	conf := writeFile(t, dir, "p.conf", "SCAN_TRIGGER=\"2\"\nBLOCK_DURATION=\"10m\"\nSTATE_MAX_HOSTS=\"5000\"\nIGNORE_FILE=\""+dir+"/none\"\n")
	log, err := exec.Command(bin("hitgen"), "-n", "200000", "-sources", "20000", "-seed", "7").Output()
	if err != nil {
		t.Fatal(err)
	}
	var first []byte
	for i := 0; i < 3; i++ {
		cmd := exec.Command(bin("ps-judge"), "-c", conf)
		cmd.Stdin = bytes.NewReader(log)
		out, err := cmd.Output()
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = out
			if n := bytes.Count(out, []byte("\n")); n < 1000 {
				t.Fatalf("only %d decisions from 200,000 hits", n)
			}
			continue
		}
		if !bytes.Equal(out, first) {
			t.Fatalf("run %d decided differently from run 1", i+1)
		}
	}
}

// TestClosedStdout: when the next stage dies, ps-judge stops with a clear
// message and exit status 1, not a panic or a silent SIGPIPE.
func TestClosedStdout(t *testing.T) {
	dir := t.TempDir()
	conf := writeFile(t, dir, "p.conf", "")
	cmd := exec.Command(bin("ps-judge"), "-c", conf)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = w
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	r.Close() // the downstream stage is gone
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t0 := time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC)
	for i := 0; i < 1000; i++ { // a new host each line: each is a decision to write
		if _, err := stdin.Write([]byte(hitLine(fmt.Sprintf("198.18.1.%d", i%250+1), 1+i/250, t0))); err != nil {
			break // ps-judge has exited
		}
	}
	stdin.Close()
	select {
	case err = <-done:
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		t.Fatal("ps-judge did not stop after its output closed")
	}
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 1 {
		t.Fatalf("exit: %v\n%s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "standard output closed: the next stage has exited") || strings.Contains(stderr.String(), "panic") {
		t.Fatalf("stderr:\n%s", stderr.String())
	}
}

// TestHugeLine: a 1 MiB line is refused with its number; the next line is
// still judged.
func TestHugeLine(t *testing.T) {
	dir := t.TempDir()
	conf := writeFile(t, dir, "p.conf", "")
	t0 := time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC)
	input := hitLine("198.18.3.1", 1, t0) + strings.Repeat("A", 1<<20) + "\n" + hitLine("198.18.3.2", 1, t0)
	cmd := exec.Command(bin("ps-judge"), "-c", conf)
	cmd.Stdin = strings.NewReader(input)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr.String())
	}
	if bytes.Count(out, []byte(`"kind":"block"`)) != 2 || !bytes.Contains(out, []byte("198.18.3.2")) {
		t.Fatalf("decisions:\n%s", out)
	}
	if !strings.Contains(stderr.String(), "stdin line 2: line too long (more than 4096 bytes) (skipped)") {
		t.Fatalf("stderr:\n%s", stderr.String())
	}
}

// TestListenReloadKeepsState: several sensors write to one judge over its
// socket; a SIGHUP reload of the ignore file takes effect at once and keeps
// the counts already made.
func TestListenReloadKeepsState(t *testing.T) {
	dir := t.TempDir()
	ignore := writeFile(t, dir, "ignore", "198.18.50.0/24\n")
	conf := writeFile(t, dir, "p.conf", "SCAN_TRIGGER=\"1\"\nIGNORE_FILE=\""+ignore+"\"\n")
	sock := filepath.Join(dir, "judge.sock")
	cmd := exec.Command(bin("ps-judge"), "-c", conf, "--listen", sock)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	dial := func() net.Conn {
		for i := 0; i < 100; i++ {
			if c, err := net.Dial("unix", sock); err == nil {
				return c
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Fatalf("cannot reach %s\n%s", sock, stderr.String())
		return nil
	}
	t0 := time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC)
	a, b := dial(), dial()
	defer a.Close()
	defer b.Close()
	// First grace hit of 198.18.9.9 from sensor a; an ignored host from b.
	a.Write([]byte(hitLine("198.18.9.9", 1, t0)))
	b.Write([]byte(hitLine("198.18.50.7", 1, t0)))
	b.Write([]byte(hitLine("198.18.50.7", 2, t0)))
	time.Sleep(200 * time.Millisecond)
	// Stop ignoring 198.18.50.0/24 and reload.
	os.WriteFile(ignore, []byte("# nothing\n"), 0o644)
	cmd.Process.Signal(syscall.SIGHUP)
	time.Sleep(300 * time.Millisecond)
	// The second port of 198.18.9.9 (counted before the reload) trips it;
	// 198.18.50.7 now counts from its first hit after the reload.
	b.Write([]byte(hitLine("198.18.9.9", 2, t0.Add(time.Second))))
	a.Write([]byte(hitLine("198.18.50.7", 3, t0.Add(time.Second))))
	a.Write([]byte(hitLine("198.18.50.7", 4, t0.Add(2*time.Second))))
	sc := bufio.NewScanner(stdout)
	var got []string
	deadline := time.AfterFunc(10*time.Second, func() { cmd.Process.Kill() })
	defer deadline.Stop()
	for len(got) < 2 && sc.Scan() {
		got = append(got, sc.Text())
	}
	slices.Sort(got) // two writers, either order; sorted, the earlier event time comes first
	if len(got) != 2 || !strings.Contains(got[0], `"target":"198.18.9.9"`) || !strings.Contains(got[0], `"hits":2`) ||
		!strings.Contains(got[1], `"target":"198.18.50.7"`) || !strings.Contains(got[1], `"port":4`) {
		t.Fatalf("decisions %q\nstderr:\n%s", got, stderr.String())
	}
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Wait()
	if !strings.Contains(stderr.String(), "guard (SIGHUP)") {
		t.Fatalf("no reload logged:\n%s", stderr.String())
	}
}
