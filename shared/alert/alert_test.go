package alert

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestTagsAndRateLimit(t *testing.T) {
	var buf bytes.Buffer
	l := NewWriter("ps-test", &buf)
	clock := time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC)
	l.now = func() time.Time { return clock }
	l.perSecond = 3
	l.Admin("PortSentry is now active and listening.")
	l.Security("config %s", "x")
	for i := 0; i < 10; i++ {
		l.AttackLimited("Connect from host: %d", i)
	}
	l.Close() // writes the summary of the 7 held back
	clock = clock.Add(2 * time.Second)
	l.AttackLimited("later")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	want := []string{
		"adminalert: PortSentry is now active and listening.",
		"securityalert: config x",
		"attackalert: Connect from host: 0",
		"attackalert: Connect from host: 1",
		"attackalert: Connect from host: 2",
		"attackalert: 7 more alerts in the last second not shown (rate limit)",
		"attackalert: later",
	}
	if len(lines) != len(want) {
		t.Fatalf("got %d lines:\n%s", len(lines), buf.String())
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], "2026-11-2") || !strings.Contains(lines[i], " ps-test[") || !strings.HasSuffix(lines[i], w) {
			t.Errorf("line %d = %q, want suffix %q", i, lines[i], w)
		}
	}
}

func TestCount(t *testing.T) {
	for _, tc := range []struct {
		got, want string
	}{
		{Count(0, "port"), "0 ports"},
		{Count(1, "port"), "1 port"},
		{Count(uint64(1), "hit"), "1 hit"},
		{Count(uint64(2), "hit"), "2 hits"},
		{Count(1, "ignore entry"), "1 ignore entry"},
		{Count(3, "ignore entry"), "3 ignore entries"},
		{Count(2, "key"), "2 keys"},
		{Count(2, "address"), "2 addresses"},
		{Count(2, "gateway"), "2 gateways"},
		{Count(1, "name server"), "1 name server"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}

// With --syslog every stage writes as 1.2 did: identity portsentry, the
// pid, 1.2's tag; a syslog daemon's socket stands in for /dev/log.
func TestSyslogIdentity(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	daemon, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer daemon.Close()
	l, err := newLogger("ps-judge", true, "unixgram", path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	l.Attack("Host %s has been blocked via wrappers with string: %q", "198.18.0.1", "ALL: 198.18.0.1")
	daemon.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 4096)
	n, err := daemon.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	got := string(buf[:n])
	want := fmt.Sprintf(` portsentry[%d]: attackalert: Host 198.18.0.1 has been blocked via wrappers with string: "ALL: 198.18.0.1"`, os.Getpid())
	if !strings.HasPrefix(got, "<29>") || !strings.Contains(got, want) {
		t.Errorf("syslog datagram %q: want priority <29> (daemon.notice) and %q", got, want)
	}
}

// writes records each Write separately.
type writes struct{ calls []string }

func (w *writes) Write(p []byte) (int, error) {
	w.calls = append(w.calls, string(p))
	return len(p), nil
}

// TestHold: lines logged inside a Hold reach the writer whole, in order,
// with one write at the last Release; outside a Hold each line is its own
// write, and a Hold writes once it gathered holdMax bytes.
func TestHold(t *testing.T) {
	long := strings.Repeat("x", 1000)
	var many []string
	for i := 0; i < 100; i++ {
		many = append(many, fmt.Sprintf("%d %s", i, long))
	}
	for _, tc := range []struct {
		name   string
		run    func(l *Logger)
		writes []int // lines in each write; nil: each write but the last holds holdMax bytes or a line more
		msgs   []string
	}{
		{"no hold", func(l *Logger) { l.Attack("a"); l.Attack("b") }, []int{1, 1}, []string{"a", "b"}},
		{"one hold", func(l *Logger) {
			l.Hold()
			l.Attack("a")
			l.Admin("b")
			l.Attack("c")
			l.Release()
			l.Attack("d")
		}, []int{3, 1}, []string{"a", "b", "c", "d"}},
		{"nested", func(l *Logger) {
			l.Hold()
			l.Attack("a")
			l.Hold()
			l.Attack("b")
			l.Release()
			l.Attack("c")
			l.Release()
		}, []int{3}, []string{"a", "b", "c"}},
		{"release without hold", func(l *Logger) { l.Release(); l.Attack("a") }, []int{1}, []string{"a"}},
		{"close writes what is held", func(l *Logger) { l.Hold(); l.Attack("a"); l.Close() }, []int{1}, []string{"a"}},
		{"bounded", func(l *Logger) {
			l.Hold()
			for _, m := range many {
				l.Attack("%s", m)
			}
			l.Release()
		}, nil, many},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := &writes{}
			l := NewWriter("ps-test", w)
			tc.run(l)
			if tc.writes != nil && len(w.calls) != len(tc.writes) {
				t.Fatalf("%d writes, want %d: %q", len(w.calls), len(tc.writes), w.calls)
			}
			if tc.writes == nil && len(w.calls) < 2 {
				t.Fatalf("%d write(s) of %d bytes, want more than one of about %d", len(w.calls), len(w.calls[0]), holdMax)
			}
			var got []string
			pid := fmt.Sprintf(" ps-test[%d]: ", os.Getpid())
			for i, c := range w.calls {
				lines := strings.SplitAfter(c, "\n")
				if lines[len(lines)-1] != "" {
					t.Errorf("write %d ends inside a line: %q", i, c)
				}
				lines = lines[:len(lines)-1]
				switch {
				case tc.writes != nil && len(lines) != tc.writes[i]:
					t.Errorf("write %d holds %d lines, want %d", i, len(lines), tc.writes[i])
				case tc.writes == nil && i < len(w.calls)-1 && (len(c) < holdMax || len(c) >= holdMax+len(lines[0])):
					t.Errorf("write %d holds %d bytes, want %d or up to a line more", i, len(c), holdMax)
				}
				for _, line := range lines {
					if _, err := time.Parse(time.RFC3339, line[:20]); err != nil || !strings.HasPrefix(line[20:], pid) {
						t.Errorf("line %q: not TIME ps-test[PID]: ...", line)
						continue
					}
					_, msg, _ := strings.Cut(strings.TrimSuffix(line[20+len(pid):], "\n"), "alert: ")
					got = append(got, msg)
				}
			}
			if !slices.Equal(got, tc.msgs) {
				t.Errorf("messages %q, want %q", got, tc.msgs)
			}
		})
	}
}
