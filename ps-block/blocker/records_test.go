package blocker

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// logBook keeps the administrator's log lines.
type logBook struct {
	mu    sync.Mutex
	lines []string
}

func (l *logBook) add(f string, a ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, fmt.Sprintf(f, a...))
}
func (l *logBook) Admin(f string, a ...any)         { l.add(f, a...) }
func (l *logBook) Security(f string, a ...any)      { l.add(f, a...) }
func (l *logBook) Attack(f string, a ...any)        { l.add(f, a...) }
func (l *logBook) AttackLimited(f string, a ...any) { l.add(f, a...) }

func (l *logBook) has(s string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, x := range l.lines {
		if strings.Contains(x, s) {
			return true
		}
	}
	return false
}

// A FIFO planted where HISTORY_FILE goes must not hang ps-block (before,
// the open waited for a writer for ever, with the blocker's lock held); the
// block is carried out and the refusal said.
func TestRecordFIFONoHang(t *testing.T) {
	log := &logBook{}
	dir := t.TempDir()
	hist := filepath.Join(dir, "portsentry.history")
	if err := syscall.Mkfifo(hist, 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan *rig, 1)
	go func() {
		done <- newRig(t, func(c *Config) { c.HistoryFile, c.Log = hist, log })
	}()
	var r *rig
	select {
	case r = <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Restore hangs")
	}
	fed := make(chan struct{})
	go func() { r.feed(block("198.18.0.1", "tcp", 21, "")); close(fed) }()
	select {
	case <-fed:
	case <-time.After(5 * time.Second):
		t.Fatal("a block hangs on the FIFO at HISTORY_FILE")
	}
	if !log.has(hist + " is not a regular file") {
		t.Errorf("the FIFO was not reported: %q", log.lines)
	}
	if b, err := os.ReadFile(r.b.cfg.BlockedFile + ".tcp"); err != nil || !strings.Contains(string(b), "198.18.0.1") {
		t.Errorf("blocked file: %q %v", b, err)
	}
}

// A blocked file another user planted is not restored as root's blocks.
func TestRecordForeignOwnerRefused(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give a file to another user")
	}
	log := &logBook{}
	dir := t.TempDir()
	base := filepath.Join(dir, "portsentry.blocked")
	line := "1795613385 - 11/24/2026 14:29:45 Host: 198.18.0.7/198.18.0.7 Port: 21 TCP Blocked\n"
	if err := os.WriteFile(base+".tcp", []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(base+".tcp", 65534, 65534); err != nil {
		t.Fatal(err)
	}
	r := newRig(t, func(c *Config) { c.BlockedFile, c.Log = base, log })
	if len(*r.c) != 0 {
		t.Errorf("restored another user's blocks: %q", *r.c)
	}
	if !log.has("owned by uid 65534") {
		t.Errorf("not reported: %q", log.lines)
	}
}
