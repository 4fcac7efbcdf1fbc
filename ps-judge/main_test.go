package main

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portsentry/pipeline/shared/alert"
	"github.com/portsentry/pipeline/shared/transport"
)

// countingWriter records each write the output makes, safely for the
// goroutine that reads the input.
type countingWriter struct {
	mu     sync.Mutex
	writes int
	buf    bytes.Buffer
}

func (w *countingWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.writes++
	return w.buf.Write(p)
}

func (w *countingWriter) lines() (n, writes int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return strings.Count(w.buf.String(), "\n"), w.writes
}

func hitLine(i int) string {
	return fmt.Sprintf(`{"v":1,"kind":"hit","time":"2026-11-24T10:00:00Z","sensor":"ps-sniff","mode":"atcp","src":"198.19.%d.%d","sport":1,"dst":"198.18.0.2","dport":21,"scan":"syn"}`+"\n", i>>8&255, i&255)
}

// TestFirstDecisionLeavesAtOnce: a decision is written while the hits
// after it are still being read, with no clock involved; a flood of
// decisions in one read leaves in two writes, not one per line.
func TestFirstDecisionLeavesAtOnce(t *testing.T) {
	out := &countingWriter{}
	j := newStage(out, 0, 1000)
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- transport.Read(pr, "test", j) }()

	// One tripping hit, and the writer stays open: nothing more comes.
	if _, err := pw.Write([]byte(hitLine(1))); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for n, _ := out.lines(); n < 1; n, _ = out.lines() {
		if time.Now().After(deadline) {
			t.Fatal("the decision was not written while its input stayed open")
		}
		time.Sleep(5 * time.Millisecond)
	}

	// 200 tripping hits in one write: the first leaves at once, the rest
	// when the input has nothing more buffered.
	var flood strings.Builder
	for i := 2; i < 202; i++ {
		flood.WriteString(hitLine(i))
	}
	_, before := out.lines()
	if _, err := pw.Write([]byte(flood.String())); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	n, after := out.lines()
	if n != 201 {
		t.Fatalf("%d decisions written, want 201", n)
	}
	if w := after - before; w > 4 {
		t.Errorf("200 decisions read at once took %d writes, want at most 4", w)
	}
}

// TestHeldLineJudgedFirst: the stage reads one line ahead, and judges the
// line it holds before anything that comes after it: an Idle, an
// administrative line, a bad line's message.
func TestHeldLineJudgedFirst(t *testing.T) {
	var out, logs bytes.Buffer
	j := newStage(&out, 0, 1000)
	j.log = alert.NewWriter("ps-judge", &logs)
	line := func(s string) { j.Line("test", 1, []byte(strings.TrimSuffix(s, "\n")), nil) }

	line(hitLine(1))
	j.Idle()
	if !strings.Contains(out.String(), `"target":"198.19.0.1"`) {
		t.Fatalf("after Idle, the held hit's decision is not written: %q", out.String())
	}

	line(hitLine(2))
	adminSource{j}.Line("admin", 1, []byte(`{"v":1,"kind":"unblock","time":"2026-11-24T10:00:01Z","target":"198.19.0.2","mode":"atcp"}`), nil)
	j.Idle()
	block, unblock := strings.Index(out.String(), `"kind":"block","time":"2026-11-24T10:00:00Z","target":"198.19.0.2"`), strings.Index(out.String(), `"kind":"unblock"`)
	if block < 0 || unblock < 0 || block > unblock {
		t.Fatalf("the block of the hit read before the unblock must come first: %q", out.String())
	}

	line(hitLine(3))
	line("not json")
	j.Idle()
	tripped, bad := strings.Index(logs.String(), "198.19.0.3 tripped"), strings.Index(logs.String(), "(skipped)")
	if tripped < 0 || bad < 0 || tripped > bad {
		t.Fatalf("the hit read before the bad line must be logged first:\n%s", logs.String())
	}
}
