package transport

import (
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/portsentry/pipeline/shared/logtest"
	"github.com/portsentry/pipeline/shared/netlab"
)

// waitFor polls cond for up to 15 s.
func waitFor(cond func() bool) bool {
	for end := time.Now().Add(15 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return cond()
}

// TestIdleWritersCannotLockOut: 64 writers that each send one byte and
// then nothing (issue 11 item 8) do not keep a sensor out: with the
// defaults, the sensor takes the place of one idle for IdleGrace, and every
// half-written line is closed after LineTimeout.
func TestIdleWritersCannotLockOut(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for IdleGrace and LineTimeout (15 s)")
	}
	path := filepath.Join(t.TempDir(), "judge.sock")
	var r record
	l, err := Listen(path, &r, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var idle []net.Conn
	for range MaxWriters {
		c, err := net.Dial("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		// One byte of a line never finished; past its user's share the
		// listener has closed the connection already, and the write fails.
		_, _ = c.Write([]byte("{"))
		idle = append(idle, c)
	}
	sensor := Connect(path, t.Logf)
	defer sensor.Close()
	if err := sensor.Write([]byte("hit from the sensor\n")); err != nil {
		t.Fatal(err)
	}
	_ = sensor.Flush()
	delivered := func() bool {
		return slices.ContainsFunc(r.snapshot(), func(l string) bool { return strings.HasSuffix(l, " hit from the sensor") })
	}
	if !waitFor(delivered) {
		t.Fatalf("the sensor's line never arrived past %d idle writers: %q", MaxWriters, r.snapshot())
	}
	// Every half-written connection ends, by eviction or by LineTimeout.
	for _, c := range idle {
		_ = c.SetReadDeadline(time.Now().Add(15 * time.Second)) // LineTimeout and more
	}
	for i, c := range idle {
		if _, err := c.Read(make([]byte, 1)); !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("idle writer %d still open after LineTimeout: %v", i, err)
		}
	}
	for _, l := range r.snapshot() {
		if strings.Contains(l, "{") {
			t.Errorf("a half-written line reached the handler: %q", l)
		}
	}
}

// TestHalfLineTimeout: a begun line must end within LineTimeout; a writer
// silent between whole lines is not closed.
func TestHalfLineTimeout(t *testing.T) {
	path := filepath.Join(t.TempDir(), "judge.sock")
	var r record
	var logs logtest.Book
	l, err := ListenWith(path, &r, logs.Logf, Options{LineTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	quiet, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer quiet.Close()
	half, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer half.Close()
	if _, err := quiet.Write([]byte("whole\n")); err != nil {
		t.Fatal(err)
	}
	if _, err := half.Write([]byte("begun")); err != nil {
		t.Fatal(err)
	}
	_ = half.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := half.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("half-written writer: %v, want closed", err)
	}
	if !waitFor(func() bool { return logs.Has("half-written line: a line begun 200ms ago was not finished") }) {
		t.Errorf("not reported: %q", logs.Lines())
	}
	time.Sleep(400 * time.Millisecond) // twice LineTimeout: a silent whole-line writer stays
	if _, err := quiet.Write([]byte("again\n")); err != nil {
		t.Fatal(err)
	}
	if !waitFor(func() bool { return len(r.snapshot()) == 2 }) {
		t.Fatalf("lines %q, want whole and again", r.snapshot())
	}
}

// TestPerPeerLimit: one user id holds at most MaxPerPeer writers, so a
// user that is not the sensors' (here uid 65534) cannot fill the socket,
// however long its writers stay.
func TestPerPeerLimit(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to connect as another user")
	}
	dir := t.TempDir()
	for d := dir; d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(dir, "judge.sock")
	var r record
	var logs logtest.Book
	l, err := ListenWith(path, &r, logs.Logf, Options{Mode: 0o666, IdleGrace: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	other, err := netlab.DialUnixAs(path, 65534, MaxWriters)
	if err != nil {
		t.Fatal(err)
	}
	open := 0
	time.Sleep(300 * time.Millisecond) // the listener refuses and closes
	for _, c := range other {
		defer c.Close()
		_ = c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		if _, err := c.Read(make([]byte, 1)); errors.Is(err, os.ErrDeadlineExceeded) {
			open++
		}
	}
	if open != MaxPerPeer {
		t.Errorf("uid 65534 holds %d writers, want %d", open, MaxPerPeer)
	}
	if !logs.Has("uid 65534 already has 16 writers") {
		t.Errorf("refusals not reported: %q", logs.Lines())
	}
	sensor := Connect(path, t.Logf)
	defer sensor.Close()
	_ = sensor.Write([]byte("hit\n"))
	_ = sensor.Flush()
	if !waitFor(func() bool { return len(r.snapshot()) == 1 }) {
		t.Fatalf("the sensor's line did not arrive: %q", r.snapshot())
	}
}

// TestAdmit: Options.Admit refuses a writer by its credentials.
func TestAdmit(t *testing.T) {
	path := filepath.Join(t.TempDir(), "admin.sock")
	var r record
	var logs logtest.Book
	l, err := ListenWith(path, &r, logs.Logf, Options{Mode: 0o600, Admit: func(p Peer) error {
		if p.UID == uint32(os.Geteuid()) {
			return errors.New("not this one")
		}
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode %v, %v", fi.Mode(), err)
	}
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, _ = c.Write([]byte("line\n"))
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("refused writer: %v, want closed", err)
	}
	if !waitFor(func() bool { return logs.Has("refused: not this one") }) || len(r.snapshot()) != 0 {
		t.Fatalf("logs %q, lines %q", logs.Lines(), r.snapshot())
	}
}
