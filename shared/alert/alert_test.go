package alert

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
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
