package main

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

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

// TestBatchKeepsOrder: the hits a batch holds are judged before any line
// that comes after them, a bad line or an administrator's unblock, so the
// output is what judging line by line gives.
func TestBatchKeepsOrder(t *testing.T) {
	out := &countingWriter{}
	j := newStage(out, 0, 1000)
	j.Line("in", 1, []byte(hitLine(1)), nil)
	j.Line("in", 2, []byte(hitLine(2)), nil)
	unblock := `{"v":1,"kind":"unblock","time":"2026-11-24T10:00:01Z","target":"198.19.0.1","mode":"atcp"}`
	adminSource{j}.Line("admin", 1, []byte(unblock), nil)
	j.Line("in", 3, []byte("not json"), nil)
	j.Line("in", 4, []byte(hitLine(1)), nil)
	j.Idle()
	var got []string
	for _, l := range strings.Split(strings.TrimSpace(out.buf.String()), "\n") {
		e := l[strings.Index(l, `"kind":"`)+8:]
		got = append(got, e[:strings.IndexByte(e, '"')]+" "+l[strings.Index(l, `"target":"`)+10:][:10])
	}
	want := []string{"block 198.19.0.1", "block 198.19.0.2", "unblock 198.19.0.1", "block 198.19.0.1"}
	if strings.Join(got, ", ") != strings.Join(want, ", ") {
		t.Fatalf("decisions %q, want %q", got, want)
	}
	if j.bad != 1 || j.hits != 3 {
		t.Fatalf("%d bad lines, %d hits; want 1, 3", j.bad, j.hits)
	}
}
