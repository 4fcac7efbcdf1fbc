// Package alert writes the human-readable log of every stage, with
// PortSentry 1.2's tags (adminalert:, securityalert:, attackalert:), to
// stderr or to syslog. Lines an attacker can cause are rate limited and
// summarised, so a flood cannot turn into a flood of log lines.
package alert

import (
	"fmt"
	"io"
	"log/syslog"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Logger is safe for concurrent use.
type Logger struct {
	prog string
	mu   sync.Mutex
	w    io.Writer      // stderr, when sys is nil
	sys  *syslog.Writer // with --syslog
	now  func() time.Time
	pid  int
	// Lines to w gathered by Hold, written at the last Release.
	held int
	buf  []byte

	// limited lines: at most perSecond in a window of one second
	perSecond  int
	window     time.Time
	shown      int
	suppressed int
	summary    *time.Timer
	// While a summary is due, Allow only counts, without the lock or a
	// clock read: under a flood it is called for every probe.
	quiet      atomic.Bool
	quietCount atomic.Int64
}

// DefaultPerSecond is how many rate-limited lines a second a Logger shows.
const DefaultPerSecond = 20

// SyslogTag is every stage's identity in syslog: 1.2's, which log watchers
// look for (logwatch's portsentry service, `grep portsentry`). The syslog
// daemon still knows the program: journald keeps it as _COMM
// (`journalctl _COMM=ps-judge`), and the pid tells stages apart.
const SyslogTag = "portsentry"

// New returns a Logger for the program prog, writing to stderr or, with
// useSyslog, to the local syslog (facility daemon) as SyslogTag.
func New(prog string, useSyslog bool) (*Logger, error) {
	return newLogger(prog, useSyslog, "", "")
}

// newLogger is New with the syslog daemon at network and raddr ("", "":
// the local one), for tests.
func newLogger(prog string, useSyslog bool, network, raddr string) (*Logger, error) {
	l := &Logger{prog: prog, w: os.Stderr, now: time.Now, pid: os.Getpid(), perSecond: DefaultPerSecond}
	if useSyslog {
		s, err := syslog.Dial(network, raddr, syslog.LOG_DAEMON|syslog.LOG_NOTICE, SyslogTag)
		if err != nil {
			return nil, fmt.Errorf("syslog: %w", err)
		}
		l.sys = s
	}
	return l, nil
}

// NewWriter returns a Logger writing to w, for tests and tools.
func NewWriter(prog string, w io.Writer) *Logger {
	return &Logger{prog: prog, w: w, now: time.Now, pid: os.Getpid(), perSecond: DefaultPerSecond}
}

// Admin logs the program's own state.
func (l *Logger) Admin(format string, args ...any) { l.emit("adminalert: ", format, args) }

// Security logs a security-relevant event that is not an attack.
func (l *Logger) Security(format string, args ...any) { l.emit("securityalert: ", format, args) }

// Attack logs an attack seen or acted upon.
func (l *Logger) Attack(format string, args ...any) { l.emit("attackalert: ", format, args) }

// AttackLimited is Attack for lines that arrive at the rate of the traffic:
// past the limit in one second they are counted, and one summary line
// follows at the end of that second.
func (l *Logger) AttackLimited(format string, args ...any) {
	if l.Allow() {
		l.emit("attackalert: ", format, args)
	}
}

// Allow takes one place of the rate limit, or counts one line held back
// and returns false. Hot paths call it before building a line's arguments.
func (l *Logger) Allow() bool {
	if l.quiet.Load() {
		l.quietCount.Add(1)
		return false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if now.Sub(l.window) >= time.Second {
		l.window, l.shown = now, 0
	}
	if l.shown >= l.perSecond {
		l.suppressed++
		if l.summary == nil {
			l.summary = time.AfterFunc(time.Second, l.flushSuppressed)
			l.quiet.Store(true)
		}
		return false
	}
	l.shown++
	return true
}

func (l *Logger) flushSuppressed() {
	l.mu.Lock()
	l.quiet.Store(false)
	n := l.suppressed + int(l.quietCount.Swap(0))
	l.suppressed, l.summary = 0, nil
	l.mu.Unlock()
	if n > 0 {
		l.emit("attackalert: ", "%d more alerts in the last second not shown (rate limit)", []any{n})
	}
}

// Close writes any pending summary and closes syslog.
func (l *Logger) Close() {
	l.mu.Lock()
	t := l.summary
	l.mu.Unlock()
	if t != nil && t.Stop() {
		l.flushSuppressed()
	}
	l.mu.Lock()
	l.held = 0
	l.writeHeld()
	l.mu.Unlock()
	if l.sys != nil {
		l.sys.Close()
	}
}

// holdMax bounds what a Hold gathers: past it the lines are written at once.
const holdMax = 64 << 10

// Hold gathers the lines written to stderr until the matching Release,
// which writes them with one system call: ps-block logs each block of a
// batch of thousands, and a write each was a tenth of a fleet member's
// CPU. Holds nest; lines to syslog are sent at once as ever.
func (l *Logger) Hold() {
	l.mu.Lock()
	l.held++
	l.mu.Unlock()
}

// Release ends a Hold; the last one writes what was gathered.
func (l *Logger) Release() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.held > 0 {
		l.held--
	}
	if l.held == 0 {
		l.writeHeld()
	}
}

// writeHeld writes the gathered lines; the caller holds l.mu. A failed
// write to stderr has nowhere to be said.
func (l *Logger) writeHeld() {
	if len(l.buf) > 0 {
		_, _ = l.w.Write(l.buf)
		l.buf = l.buf[:0]
	}
}

func (l *Logger) emit(tag, format string, args []any) {
	msg := fmt.Sprintf(format, args...)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.sys != nil {
		l.sys.Notice(tag + msg)
		return
	}
	l.buf = l.now().UTC().AppendFormat(l.buf, time.RFC3339)
	l.buf = append(append(append(l.buf, ' '), l.prog...), '[')
	l.buf = strconv.AppendInt(l.buf, int64(l.pid), 10)
	l.buf = append(append(append(append(l.buf, "]: "...), tag...), msg...), '\n')
	if l.held == 0 || len(l.buf) >= holdMax {
		l.writeHeld()
	}
}

// Count is n and the noun, plural unless n is 1 ("1 port", "2 ports",
// "3 entries"), for the counts in log lines.
func Count[N ~int | ~int64 | ~uint64](n N, noun string) string {
	if n != 1 {
		switch {
		case strings.HasSuffix(noun, "y") && !strings.ContainsAny(noun[len(noun)-2:len(noun)-1], "aeiou"):
			noun = noun[:len(noun)-1] + "ies"
		case strings.HasSuffix(noun, "s"):
			noun += "es"
		default:
			noun += "s"
		}
	}
	return fmt.Sprintf("%d %s", n, noun)
}
